"""Re-run one ablation run on N GPUs of one host (data parallel), to check that EER holds with world size.

    python -m experiments.rerun_multi_gpu --output results/ablation --run ecapa-row4-seed0 --processes 4

The run's own command (OUTPUT/json/<run>.json) is launched with `accelerate launch --multi_gpu`,
the per-GPU batch unchanged (so the global batch is N times larger and an epoch N times fewer
steps) and the learning rate scaled by sqrt(N) (`--lr_scaling`; the square-root rule suits Adam).
Writes OUTPUT/json/<run>-<N>gpu.json in the ablation's format, with stage "multi_gpu".
"""

import argparse
import json
import math
import shlex
import subprocess
import sys
from pathlib import Path

from experiments import ablation

REPO = Path(__file__).resolve().parents[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="results/ablation")
    parser.add_argument("--run", required=True, help="id of a finished run, e.g. ecapa-row4-seed0")
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--lr_scaling", choices=["sqrt", "linear", "none"], default="sqrt")
    parser.add_argument("--workers", type=int, default=None, help="data workers per process (default: the run's)")
    args = parser.parse_args(argv)
    output = Path(args.output).resolve()
    source = output / "json" / f"{args.run}.json"
    if not source.exists():
        raise SystemExit(f"rerun_multi_gpu: {source} does not exist; run python -m experiments.ablation first")
    original = json.loads(source.read_text())
    train_args = shlex.split(original["command"])[2:]  # drop "python train_eisv.py"
    factor = {"sqrt": math.sqrt(args.processes), "linear": float(args.processes), "none": 1.0}[args.lr_scaling]
    position = train_args.index("--learning_rate") + 1
    learning_rate = float(train_args[position]) * factor
    train_args[position] = f"{learning_rate:g}"
    if args.workers is not None:
        train_args[train_args.index("--num_workers") + 1] = str(args.workers)
    run_id = f"{args.run}-{args.processes}gpu"
    run_dir = output / "runs" / run_id
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
               str(args.processes), "--num_machines", "1", "--mixed_precision", "bf16", "--dynamo_backend", "no",
               str(REPO / "train_eisv.py"), *train_args, "--output_dir", str(run_dir)]
    subprocess.run(command, check=True, cwd=REPO)
    settings = dict(original["settings"], learning_rate=learning_rate)
    run = ablation.Run(run_id, original["encoder"], "multi_gpu", original["row"], original["seed"], settings,
                       ["accelerate", "launch", "--multi_gpu", "--num_processes", str(args.processes),
                        "train_eisv.py", *train_args])
    summary = ablation.summarize(run, run_dir)
    summary["command"] = " ".join(run.args)
    ablation.write_json(output / "json" / f"{run_id}.json", summary)
    test = summary["test"]["overall"]["eer"] if summary["test"] else float("nan")
    print(f"{run_id}: test EER {test:.2f}% (1 GPU: {original['test']['overall']['eer']:.2f}%), "
          f"{summary['stats']['samples_per_s']:.0f} samples/s on {args.processes} processes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
