"""Training throughput on 1, 2, 4 ... GPUs of one host, the same per-GPU batch, through `accelerate launch`.

    python -m benchmarks.bench_training_scaling --processes 1 2 4 --shared_data DIR --output scaling.json

Each configuration is a real `train_eisv.py` run on the shared protocol (ECAPA-TDNN C=512 from
scratch or the GE2E fine-tune, full recipe: CopyPaste + ERL + energy EM, 2 s crops, P=32 speakers
x K=4 per GPU, bf16), with the same data workers per process. Throughput is train_eisv's own
figure: samples per second of training-loop time (evaluation excluded), with the fraction of it
spent waiting for data. Prints a table with the speed-up against the first configuration.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks import machine
from eisv_io.atomic_files import write_text_atomic

REPO = Path(__file__).resolve().parents[1]


def run(processes, args, output_dir, workers):
    launcher = [sys.executable, str(REPO / "train_eisv.py")]
    if processes > 1:
        launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                    str(processes), "--num_machines", "1", "--mixed_precision", "bf16", "--dynamo_backend", "no",
                    "--main_process_port", str(29500 + processes), str(REPO / "train_eisv.py")]
    encoder = (["--init_from", args.ge2e_init] if args.encoder == "ge2e" else
               ["--init_from", "scratch", "--encoder_type", "ecapa_tdnn", "--ecapa_channels", "512"])
    command = launcher + ["--protocol", "shared", "--shared_data", args.shared_data, *encoder,
                          "--num_epochs", str(args.epochs), "--eval_max_trials", "500",
                          "--speakers_per_batch", "32", "--utterances_per_speaker", "4",
                          "--num_workers", str(workers), "--seed", "0", "--output_dir", str(output_dir),
                          *args.extra]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL if args.quiet else None)
    results = json.loads((output_dir / "model" / "training_results.json").read_text())
    return {"processes": processes, "workers_per_process": workers, "wall_s": time.perf_counter() - started,
            "command": " ".join(command[1:]), **results["stats"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--encoder", choices=["ecapa", "ge2e"], default="ecapa")
    parser.add_argument("--ge2e_init", default="resemblyzer", help="for --encoder ge2e: a converted GE2E folder")
    parser.add_argument("--shared_data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--workers", type=int, default=None,
                        help="data workers per process (default: CPUs / largest process count - 1)")
    parser.add_argument("--runs_dir", default="outputs/bench-scaling")
    parser.add_argument("--output", default=None, help="write the figures as JSON here")
    parser.add_argument("--quiet", action="store_true", help="hide the training runs' output")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="further train_eisv.py flags")
    args = parser.parse_args(argv)
    if max(args.processes) > max(1, torch.cuda.device_count()):
        raise SystemExit(f"bench_training_scaling: {max(args.processes)} processes need as many GPUs; "
                         f"this machine has {torch.cuda.device_count()}")
    workers = args.workers if args.workers is not None else max(1, (os.cpu_count() or 2) // max(args.processes) - 1)
    rows = [run(n, args, Path(args.runs_dir) / f"{args.encoder}-{n}gpu", workers) for n in args.processes]
    base = rows[0]["samples_per_s"] / rows[0]["processes"]
    for row in rows:
        row["speedup_vs_first"] = row["samples_per_s"] / rows[0]["samples_per_s"]
        row["scaling_efficiency"] = row["samples_per_s"] / (base * row["processes"])
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    header = (f"{args.encoder} training, full recipe, 32x4 per GPU, {workers} workers per process; "
              f"{gpu} x{torch.cuda.device_count()}; {machine.cpu_model()}, {os.cpu_count()} CPUs; "
              f"torch {torch.__version__}; {time.strftime('%Y-%m-%d')}")
    print(header)
    print("| GPUs | samples/s | speed-up | efficiency | data wait | peak GPU memory (GiB) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        memory = row["peak_gpu_memory_gib"]
        print(f"| {row['processes']} | {row['samples_per_s']:,.0f} | {row['speedup_vs_first']:.2f}x | "
              f"{100 * row['scaling_efficiency']:.0f}% | {100 * row['data_wait_fraction']:.1f}% | "
              f"{'–' if memory is None else f'{memory:.2f}'} |")
    if args.output:
        write_text_atomic(args.output, json.dumps({"machine": header, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
