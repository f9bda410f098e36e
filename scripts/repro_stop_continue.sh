#!/usr/bin/env bash
# Reproduces an open defect: a SIGSTOP + SIGCONT of a training (what Ctrl-Z and `fg` do to its process
# group) sometimes aborts it later with glibc's "corrupted size vs. prev_size while consolidating" (exit 134)
# or a segfault (139). Seen on 2026-12-01 in 3 of 19 tries with --num_workers 1 and 0 of 10 with
# --num_workers 0, on the 2-core CI machine; the crash comes epochs after the continue.
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
