"""The whole `train_eisv.py` loop against the pure training step, on one GPU, in one run (issue #16 item 1).

    python -m benchmarks.bench_train_loop_gpu --shared_data shared/data [--before REF | --before_dir DIR]
        [--steps 60] [--workers 15] [--output FILE.json] [--profile_output FILE.txt]

ECAPA-TDNN C=512 from scratch, full recipe (CopyPaste + ERL 1.0 + energy EM, 2 s crops, 32 speakers x 4
utterances, bf16, features on the GPU), the shared protocol.
  (a) pure step: one fixed batch of 128 already on the GPU (benchmarks/bench_train_step_gpu.py's `ours_full`),
      zero_grad + forward + loss + backward + clipping + fused AdamW, as the loop does; eager, with the
      encoder compiled as `--torch_compile` does, and compiled with CUDA graphs (`--torch_compile_mode
      reduce-overhead`). Timed with CUDA events around all timed steps.
  (b) loop: `train_eisv.py --max_steps STEPS` four times: `before` (the code of REF, default e9aa72a, the
      last commit before this loop; eager), `eager`, `compiled` (--torch_compile) and `compiled-cudagraphs`
      of this tree. The data wait in the window comes from the logged cumulative `data_wait_fraction`. Loop
      samples/s = samples between logging steps 20 and 45 over the training time between them, from each
      run's TensorBoard `samples_per_s` (cumulative over training time, evaluation excluded), so compile
      and warm-up are left out. The losses logged every 5 steps are compared (same seed).
  (c) profile: the compiled run profiles 8 steps after step 48 with torch.profiler: top ops by device
      time and the host synchronisations (cudaStreamSynchronize / cudaDeviceSynchronize /
      cudaEventSynchronize calls, aten::_local_scalar_dense = a tensor read on the host) per step,
      written to --profile_output.
Prints the machine, a table and the ratios; --output writes everything as JSON.
"""

import argparse
import glob
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from benchmarks.bench_train_step_gpu import make_batch, machine
from eisv_io.atomic_files import write_text_atomic

REPO = Path(__file__).resolve().parents[1]
BEFORE_REF = "e9aa72a"
WINDOW = (20, 45)  # logging steps between which the loop's pace is taken
PROFILE = (48, 8)  # first profiled step (1-based call of TrainingLoop.step) and how many
CODE = ("train_eisv.py", "eisv_training", "modeling_eisv", "data_collators", "eisv_evaluation", "eisv_tools", "eisv_io",
        "model_cards", "metrics")  # what a train_eisv.py run imports
MODE_NAMES = {"eager": "eager", "default": "compiled", "reduce-overhead": "compiled-cudagraphs"}
SYNC_OPS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "aten::_local_scalar_dense")


def pure_step(mode: str, batch_size: int, steps: int, warmup: int, device) -> dict:
    """ms per step, samples/s and peak MiB of the loop's step on a fixed batch; `mode` "eager", or a
    torch.compile mode of the encoder ("default", "reduce-overhead") as --torch_compile_mode takes it."""
    from eisv_training.step import build_optimizer, compile_encoders
    from modeling_eisv import EISVConfig, EISVForSpeakerVerification

    torch._dynamo.reset()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    model = EISVForSpeakerVerification(EISVConfig(encoder_type="ecapa_tdnn", ecapa_channels=512, num_speakers=71,
                                                  erl_weight=1.0)).to(device).train()
    if mode != "eager":
        compile_encoders(model, None, mode=mode)
    optimizer = build_optimizer(model.parameters(), SimpleNamespace(optimizer="adamw", learning_rate=1e-3,
                                                                    weight_decay=1e-4))
    batch = make_batch("ours_full", batch_size, device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()

    started = time.perf_counter()
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    warmup_s = time.perf_counter() - started
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for _ in range(steps):
        step()
    end.record()
    end.synchronize()
    ms = begin.elapsed_time(end) / steps
    return {"mode": MODE_NAMES[mode], "step_ms": ms, "samples_per_s": batch_size / ms * 1e3,
            "warmup_s": warmup_s, "peak_mib": torch.cuda.max_memory_allocated() / 2**20}


def before_tree(args) -> Path:
    """A folder holding REF's train_eisv.py and packages: --before_dir (a folder, or a `git archive` .tar of
    one, unpacked), else `git archive REF` of this repository (which needs its .git)."""
    if args.before_dir and not args.before_dir.endswith(".tar"):
        return Path(args.before_dir)
    folder = Path(tempfile.mkdtemp(prefix="eisv-before-"))
    archive = Path(args.before_dir) if args.before_dir else folder / "tree.tar"
    if not args.before_dir:
        subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), args.before, *CODE], check=True,
                       capture_output=True, text=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    return folder


def before_run(args, runs_dir) -> dict:
    try:
        tree = before_tree(args)
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", None) or error
        return {"run": "before", "error": f"no code of {args.before} ({str(detail).strip()}); pass --before_dir"}
    return loop_run("before", tree, [], args, runs_dir)


def train_arguments(args, output_dir: Path) -> list:
    return ["--protocol", "shared", "--shared_data", str(Path(args.shared_data).resolve()), "--init_from", "scratch",
            "--encoder_type", "ecapa_tdnn", "--ecapa_channels", "512", "--speakers_per_batch", "32",
            "--utterances_per_speaker", "4", "--num_workers", str(args.workers), "--seed", "0",
            "--max_steps", str(args.steps), "--logging_steps", "5", "--eval_max_trials", "100",
            "--validation_trials", "none", "--no_test_on_trials", "--output_dir", str(output_dir),
            "--overwrite_output_dir"]


def loop_run(name: str, tree: Path, extra: list, args, runs_dir: Path, profile_output=None) -> dict:
    """One train_eisv.py run -> its stats, the pace in the window and the logged losses."""
    output_dir = runs_dir / name
    command = [sys.executable, str(tree / "train_eisv.py"), *train_arguments(args, output_dir), *extra]
    if profile_output:  # the same run inside a child that profiles a few of its steps
        command = [sys.executable, "-m", "benchmarks.bench_train_loop_gpu", "--profile_child", str(profile_output),
                   "--", *command[2:]]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=tree, capture_output=True, text=True)
    if result.returncode != 0:
        return {"run": name, "error": result.stderr[-1500:]}
    stats = json.loads((output_dir / "model" / "training_results.json").read_text())["stats"]
    scalars = tensorboard_scalars(output_dir)
    pace = {step: value for step, value in scalars.get("samples_per_s", [])}
    first, last = WINDOW
    out = {"run": name, "wall_s": time.perf_counter() - started, "stats": stats,
           "losses": [value for _, value in scalars.get("loss", [])]}
    if first in pace and last in pace:  # cumulative rate r(s) = samples(s) / time(s)
        # samples(s) = s batches; the code before this loop logged before counting the current batch: s - 1
        batch, counted = 32 * 4, (lambda step: step - 1) if name == "before" else (lambda step: step)
        time_at = {step: counted(step) * batch / pace[step] for step in (first, last)}
        out["window_samples_per_s"] = (last - first) * batch / (time_at[last] - time_at[first])
        # data_wait_fraction(s) = wait(s) / time(s), cumulative like the pace (absent in the code before)
        wait = {step: value for step, value in scalars.get("data_wait_fraction", [])}
        if first in wait and last in wait:
            out["window_data_wait_fraction"] = ((wait[last] * time_at[last] - wait[first] * time_at[first])
                                                / (time_at[last] - time_at[first]))
    return out


def tensorboard_scalars(output_dir: Path) -> dict:
    """{tag: [(step, value), ...]} from the run's TensorBoard event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = {}
    for events in sorted(glob.glob(str(output_dir / "**" / "events.out.tfevents.*"), recursive=True)):
        accumulator = EventAccumulator(events)
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in accumulator.Scalars(tag))
    return {tag: sorted(values) for tag, values in scalars.items()}


def profile_child(output: Path, argv: list) -> int:
    """Run train_eisv.main(argv) with steps PROFILE[0] .. PROFILE[0] + PROFILE[1] - 1 under torch.profiler."""
    sys.path.insert(0, str(REPO))
    import train_eisv
    from eisv_training.loop import TrainingLoop

    original, calls, holder = TrainingLoop.step, [0], {}
    synchronize = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    start, count = PROFILE

    def step(self, batch):
        calls[0] += 1
        if calls[0] == start:
            synchronize()
            holder["profile"] = torch.profiler.profile(
                activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA])
            holder["profile"].__enter__()
        result = original(self, batch)
        if calls[0] == start + count - 1:
            synchronize()
            holder["profile"].__exit__(None, None, None)
            write_profile(holder["profile"], output, count)
        return result

    TrainingLoop.step = step
    return train_eisv.main(argv)


def write_profile(profile, output: Path, steps: int):
    averages = profile.key_averages()
    counts = {name: 0 for name in SYNC_OPS}
    for event in averages:
        if event.key in counts:
            counts[event.key] += event.count
    lines = [f"torch.profiler over {steps} training steps of the compiled loop (bench_train_loop_gpu)", "",
             "host synchronisations per step: " + ", ".join(f"{k} {v / steps:.2f}" for k, v in counts.items()), "",
             averages.table(sort_by="self_device_time_total", row_limit=30)]
    write_text_atomic(output, "\n".join(lines))


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--profile_child":
        return profile_child(Path(argv[1]), argv[3:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared_data", default=str(REPO / "shared" / "data"))
    parser.add_argument("--before", default=BEFORE_REF, help="git ref of the code to compare against")
    parser.add_argument("--before_dir",
                        help="a checkout of that code, or a `git archive` .tar of it, where there is no .git")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per loop run (> 56)")
    parser.add_argument("--workers", type=int, default=15, help="data workers of the loop runs")
    parser.add_argument("--runs_dir", default=str(REPO / "outputs" / "bench-train-loop"))
    parser.add_argument("--output", type=Path, help="write all figures to this JSON file")
    parser.add_argument("--profile_output", type=Path, default=REPO / "outputs" / "train_loop_profile.txt")
    args = parser.parse_args(argv)
    device = torch.device("cuda")
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()

    info = machine(device)
    for key, value in info.items():
        print(f"{key + ':':<16} {value}")
    print(f"{'setup:':<16} ECAPA-512 from scratch, full recipe, batch 32 x 4 x 2 s, bf16, fused AdamW; loop "
          f"{args.steps} steps, {args.workers} workers, pace between logging steps {WINDOW[0]} and {WINDOW[1]}",
          flush=True)
    pure = [pure_step(mode, 128, 30, 10, device) for mode in MODE_NAMES]
    for result in pure:
        print(f"pure step {result['mode']}: {result['step_ms']:.2f} ms, {result['samples_per_s']:.0f} samples/s, "
              f"peak {result['peak_mib']:.0f} MiB, warm-up {result['warmup_s']:.1f} s", flush=True)
    runs_dir = Path(args.runs_dir)
    args.profile_output.parent.mkdir(parents=True, exist_ok=True)
    loops = [before_run(args, runs_dir),
             loop_run("eager", REPO, [], args, runs_dir),
             loop_run("compiled", REPO, ["--torch_compile"], args, runs_dir, profile_output=args.profile_output),
             loop_run("compiled-cudagraphs", REPO, ["--torch_compile", "--torch_compile_mode", "reduce-overhead"],
                      args, runs_dir)]

    print("\n| run | loop samples/s (window) | data wait (window) | whole-run samples/s | data wait | gpu step ms "
          "| peak GiB | wall s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for run in loops:
        if "error" in run:
            print(f"| {run['run']} | failed: {run['error'][-300:]!r} | | | | | |")
            continue
        s = run["stats"]
        fmt = lambda v, f: format(v, f) if v is not None else "-"  # noqa: E731
        wait = run.get("window_data_wait_fraction")
        print(f"| {run['run']} | {fmt(run.get('window_samples_per_s'), '.0f')} | "
              f"{fmt(None if wait is None else 100 * wait, '.1f')}% | {s['samples_per_s']:.0f} | "
              f"{100 * s['data_wait_fraction']:.1f}% | {fmt(s.get('gpu_step_ms'), '.1f')} | "
              f"{fmt(s.get('peak_gpu_memory_gib'), '.2f')} | {run['wall_s']:.0f} |")
    by = {run["run"]: run for run in loops}
    pace = {name: run.get("window_samples_per_s") for name, run in by.items()}
    ratios = {}
    if pace.get("before"):
        ratios.update({f"{name} / before": pace[name] / pace["before"]
                       for name in MODE_NAMES.values() if pace.get(name)})
    for result in pure:
        name = result["mode"]
        if pace.get(name):
            ratios[f"loop {name} / pure step {result['mode']}"] = pace[name] / result["samples_per_s"]
    print("\n" + "\n".join(f"{k}: {v:.3f}" for k, v in ratios.items()))
    losses = {name: run.get("losses", []) for name, run in by.items()}
    for name in ("before", "compiled", "compiled-cudagraphs"):
        pairs = list(zip(losses.get("eager", []), losses.get(name, [])))
        if pairs:
            worst = max(abs(a - b) / max(abs(a), 1e-6) for a, b in pairs)
            print(f"losses eager vs {name}: {len(pairs)} logged steps, largest relative difference {worst:.2e} "
                  f"(eager {[round(a, 4) for a, _ in pairs[:4]]}, {name} {[round(b, 4) for _, b in pairs[:4]]})")
    if args.profile_output.is_file():
        print(f"\nprofile ({args.profile_output}):\n" + "\n".join(args.profile_output.read_text().splitlines()[:3]))
    if args.output:
        write_text_atomic(args.output, json.dumps({"machine": info, "pure_step": pure, "loops": loops,
                                                   "ratios": ratios}, indent=2, default=str))
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
