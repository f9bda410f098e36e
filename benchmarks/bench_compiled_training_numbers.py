"""Does `--torch_compile` change the numbers? Whole ECAPA-512 trainings, eager against compiled, same seeds (issue #16).

    python -m benchmarks.bench_compiled_training_numbers --shared_data shared/data [--seeds 0 1 2] [--jobs 6]
        [--modes eager reduce-overhead] [--output results/h200-DATE/compiled_training_numbers.json]

Each run is the ablation's ECAPA-TDNN C=512 row 4 (full recipe, the sweep's settings in
results/ablation/chosen.json, from scratch, epoch picked on the validation speakers), run by
experiments/ablation.py's scheduler side by side on one GPU; a mode other than eager adds
`--torch_compile --torch_compile_mode MODE`. Prints dev EER / minDCF(0.01) per seed and mode, the mean
and spread of each mode, and the machine. Speed is not measured here (the runs share the GPU and CPUs):
that is bench_train_loop_gpu.py.
"""

import argparse
import json
import os
import statistics
from pathlib import Path

from benchmarks.bench_train_step_gpu import machine
from eisv_io.atomic_files import write_text_atomic
from experiments.ablation import Run, Scheduler, common_args, encoder_args, row_args

REPO = Path(__file__).resolve().parents[1]


def runs_for(modes, seeds, settings, shared_data, workers) -> list:
    """-> [(mode, Run)], every mode with every seed."""
    runs = []
    for mode in modes:
        compile_flags = [] if mode == "eager" else ["--torch_compile", "--torch_compile_mode", mode]
        for seed in seeds:
            run = Run(f"ecapa-row4-{mode}-seed{seed}", "ecapa", "compile-check", 4, seed, dict(settings),
                      extra=compile_flags)
            run.args = (common_args("ecapa", shared_data, workers) + encoder_args("ecapa", None)
                        + row_args(4, settings) + ["--seed", str(seed)] + compile_flags)
            runs.append((mode, run))
    return runs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared_data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--settings", default=str(REPO / "results" / "ablation" / "chosen.json"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--modes", nargs="+", default=["eager", "reduce-overhead"],
                        choices=["eager", "default", "reduce-overhead", "max-autotune-no-cudagraphs"])
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--runs_dir", default=str(REPO / "outputs" / "compiled-training-numbers"))
    parser.add_argument("--output", type=Path, help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    import torch

    info = machine(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    for key, value in info.items():
        print(f"{key + ':':<16} {value}")
    settings = json.loads(Path(args.settings).read_text())["ecapa"]["settings"]
    output = Path(args.runs_dir).resolve()
    (output / "json").mkdir(parents=True, exist_ok=True)
    workers = max(0, (os.cpu_count() or 2) // args.jobs - 1)
    runs = runs_for(args.modes, args.seeds, settings, str(Path(args.shared_data).resolve()), workers)
    gpus = [str(i) for i in range(torch.cuda.device_count())] or ["0"]
    Scheduler(output, gpus, args.jobs, float("inf")).run([run for _, run in runs])
    results = {}
    for mode, run in runs:
        path = output / "json" / f"{run.id}.json"
        if not path.exists():
            continue
        test = json.loads(path.read_text())["test"]["overall"]
        results.setdefault(mode, {})[run.seed] = {
            "eer": test["eer"], "min_dcf_0.01": test["min_dcf_0.01"]}
    print("\n| mode | " + " | ".join(f"seed {s} EER / minDCF" for s in args.seeds) + " | mean EER ± sd |")
    print("|---|" + "---:|" * (len(args.seeds) + 1))
    for mode, by_seed in results.items():
        eers = [by_seed[s]["eer"] for s in args.seeds if s in by_seed]
        spread = statistics.stdev(eers) if len(eers) > 1 else 0.0
        cells = " | ".join(f"{by_seed[s]['eer']:.2f} / {by_seed[s]['min_dcf_0.01']:.3f}" if s in by_seed else "-"
                           for s in args.seeds)
        print(f"| {mode} | {cells} | {statistics.mean(eers):.2f} ± {spread:.2f} |")
    if args.output:
        write_text_atomic(args.output, json.dumps({"machine": info, "settings": settings, "results": results},
                                                  indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
