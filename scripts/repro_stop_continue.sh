#!/usr/bin/env bash
# Reproduces a fixed defect: a SIGSTOP + SIGCONT of a training (what Ctrl-Z and `fg` do to its process
# group) sometimes aborted it later with glibc's "corrupted size vs. prev_size while consolidating" (exit 134)
# or a segfault (139): 3 of 19 tries with --num_workers 1, 0 of 10 with --num_workers 0, 0 of 15 with
# --num_workers 1 and no signal (2026-12-01, 2-core CI machine).
# Cause (core dumps: every abort is in free() inside oneDNN's AVX-512 nocopy SGEMM, under the GE2E LSTM's
# backward): that kernel points the stack pointer at a malloc'd workspace when K > 2048, so a signal that has
# a handler, arriving meanwhile, writes its frame over the heap. The stop is not needed, only a handled signal:
# a stopped or continued DataLoader worker sends SIGCHLD to the main process, where PyTorch's DataLoader
# installs a handler (no worker, no handler: why --num_workers 0 never crashed). SIGCHLD sent to the main
# process every 50 ms crashed 8 of 8 runs; SIGUSR1 with a Python handler and --num_workers 0, 3 of 3.
# PYTHONFAULTHANDLER=1 hid it because faulthandler gives the main thread an alternate signal stack.
# Fix: eisv_training/interrupt.py protect_signal_frames() (the same, for every training): an alternate signal
# stack for the main thread, OpenMP threads started with asynchronous signals blocked. Upstream: oneDNN #4845
# (fixed in #4855, backport #4859 to v3.11; torch 2.11 bundles v3.10.2). After the fix: 0 of 15 with
# `1 15`, 0 of 15 with `1 15 0`; the 50 ms SIGCHLD stream 0 of 4; the default's EER and weights unchanged.
#   bash scripts/repro_stop_continue.sh [WORKERS=1] [TRIES=10] [SIGNALS=1]
# SIGNALS=0 runs the same tries without the stop and continue: the baseline.
# Prints one line per crash and a summary; each try runs the built-in default (~25 s) into /tmp.
set -u
workers=${1:-1}; tries=${2:-10}; signals=${3:-1}; crashes=0
cd "$(dirname "$0")/.."
for i in $(seq 1 "$tries"); do
  out=$(mktemp -d /tmp/eisv-stopcont-XXXXXX)/run
  python train_eisv.py --output_dir "$out" --overwrite_output_dir --num_workers "$workers" --no_test_on_trials \
    > "$out.log" 2>&1 &
  pid=$!
  if [ "$signals" -ne 0 ]; then
    sleep $((10 + i % 6)); pkill -STOP -f -- "--output_dir $out "; sleep 15; pkill -CONT -f -- "--output_dir $out "
  fi
  wait "$pid"; code=$?
  if [ "$code" -ne 0 ]; then crashes=$((crashes + 1)); echo "try $i: exit $code ($(tail -1 "$out.log"))"; fi
done
echo "workers=$workers tries=$tries signals=$signals crashes=$crashes"
