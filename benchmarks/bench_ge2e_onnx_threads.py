"""Where the GE2E onnxruntime graph spends a clip's time, and one thread against `--threads` by batch.

    python -m benchmarks.bench_ge2e_onnx_threads [--threads 2] [--seconds 3] [--repeats 30]

Our GE2E with resemblyzer's weights (`modeling_eisv.convert_resemblyzer`, random weights if that
fails), exported as `--backend onnxruntime` exports it. Features are computed once, outside the
timings: this is `session.run` alone.
  1. onnxruntime's own profile of one clip, one thread: the LSTM nodes against everything else.
  2. batches of 1..8 clips on a one-thread session and a `--threads` session, interleaved run by run:
     median ms and the paired per-run ratio (the choice behind `onnx_backend.FEW_WINDOWS`).
"""

import argparse
import collections
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_inference_cpu import SR, load_average, make_clips, ours_ge2e


def ort_profile(onnx_model, feed: dict, runs: int) -> dict:
    """Mean microseconds per run of each op type (and of the whole run) on a one-thread session."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = 1, 1, 3
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "ge2e")
        session = onnxruntime.InferenceSession(str(onnx_model.path), options, providers=["CPUExecutionProvider"])
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    totals = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            totals[event["args"]["op_name"]] += event["dur"]
        elif event.get("cat") == "Session" and event["name"] == "model_run":
            totals["whole run"] += event["dur"]
    return {name: total / runs for name, total in totals.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--seconds", type=float, default=3.0, help="clip length in seconds")
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per batch size and session")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from eisv_evaluation.onnx_backend import onnx_model_for
    from modeling_eisv.ge2e_lstm import window_slots
    from modeling_eisv import EISVFeatureExtractor

    print(f"load average before: {load_average()}")
    with tempfile.TemporaryDirectory() as tmp:
        model = ours_ge2e(Path(tmp)).model
        fe = EISVFeatureExtractor("ge2e_mel")
        onnx_model, _ = onnx_model_for(model, fe, threads=args.threads, cache_path=Path(tmp) / "ge2e.onnx")
        clips = make_clips(8, args.seconds)

        def feed(n):
            inputs = fe(clips[:n], sampling_rate=SR, return_tensors="np", padding=True)
            return {"input_features": inputs["input_features"].astype(np.float32),
                    "attention_mask": inputs["attention_mask"].astype(np.int64)}

        one = feed(1)
        windows = window_slots(one["input_features"].shape[1], model.config.ge2e_partial_frames,
                               model.config.ge2e_partial_step)
        profile = ort_profile(onnx_model, one, args.repeats)
        lstm, whole = profile.pop("LSTM"), profile.pop("whole run")
        print(f"\n1. one {args.seconds:g} s clip ({windows} windows), one thread, onnxruntime profile (us per run):")
        print(f"   whole run {whole:8.0f}   LSTM nodes {lstm:8.0f} ({100 * lstm / whole:.0f}%)   "
              f"other {len(profile)} op types {sum(profile.values()):6.0f}")

        sessions = {"1 thread": onnx_model._session(1), f"{args.threads} threads": onnx_model._session(args.threads)}
        print(f"\n2. session.run, interleaved, median ms over {args.repeats} runs:")
        print(f"   {'clips':>5} {'windows':>7} " + " ".join(f"{name:>10}" for name in sessions) +
              f"   {'one thread / threads (paired)':>30}")
        for n in (1, 2, 4, 8):
            batch = feed(n)
            times = {name: [] for name in sessions}
            for session in sessions.values():
                session.run(None, batch)
            for _ in range(args.repeats):
                for name, session in sessions.items():
                    start = time.perf_counter()
                    session.run(None, batch)
                    times[name].append(time.perf_counter() - start)
            single, many = times.values()
            print(f"   {n:>5} {n * windows:>7} " + " ".join(f"{1e3 * statistics.median(t):>10.2f}" for t in times.values())
                  + f"   {statistics.median(a / b for a, b in zip(single, many)):>30.2f}")
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
