"""One `train_eisv.py` run from a random-weight WavLM-base (transformers' `WavLMConfig()` sizes, 94M
parameters), full recipe, to measure the `ssl_backbone` encoder's training speed and memory on a GPU.

    python -m benchmarks.bench_train_wavlm_gpu --shared_data shared/data [--max_steps 100] [--freeze_layers 0]
        [--runs_dir outputs/bench-wavlm] [--output FILE.json] [--tiny]

The folder is what a user gets from the Hub for a WavLM backbone (`WavLMModel.save_pretrained` +
`Wav2Vec2FeatureExtractor`), so the run also exercises `--init_from` on a transformers folder. The
run: the shared protocol (ASED + RAVDESS training speakers), CopyPaste + ERL (1.0) + energy EM,
2 s crops, P=32 speakers x K=4 (128 clips a step), bf16 on a GPU, `--eval_max_trials 500`.
Figures are train_eisv's own (training_results.json): samples per second of training-loop time
(evaluation excluded), the share of it spent waiting for data, and peak GPU memory. `--tiny` swaps
in a 2-layer WavLM of hidden size 32 (for a check on a CPU).
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
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16),
            conv_kernel=(10, 64), conv_stride=(5, 64), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)


def write_random_wavlm(folder: Path, tiny: bool = False) -> int:
    """A random WavLM-base (or tiny) transformers folder; returns its parameter count."""
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

    torch.manual_seed(0)
    model = WavLMModel(WavLMConfig(**(TINY if tiny else {})))
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared_data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--max_steps", type=int, default=100)
    parser.add_argument("--freeze_layers", type=int, default=0, help="1 = the CNN feature encoder frozen")
    parser.add_argument("--workers", type=int, default=None, help="data workers (default: CPUs - 2)")
    parser.add_argument("--runs_dir", default="outputs/bench-wavlm")
    parser.add_argument("--output", default=None, help="write the figures as JSON here")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer WavLM of hidden size 32 (CPU check)")
    args = parser.parse_args(argv)
    runs = Path(args.runs_dir)
    folder = runs / ("wavlm-tiny-random" if args.tiny else "wavlm-base-random")
    parameters = write_random_wavlm(folder, args.tiny)
    workers = args.workers if args.workers is not None else max(1, (os.cpu_count() or 2) - 2)
    command = [sys.executable, str(REPO / "train_eisv.py"), "--init_from", str(folder), "--protocol", "shared",
               "--shared_data", args.shared_data, "--max_steps", str(args.max_steps), "--freeze_layers",
               str(args.freeze_layers), "--speakers_per_batch", "32", "--utterances_per_speaker", "4",
               "--crop_seconds", "2.0", "--copypaste", "--erl_weight", "1.0", "--em_select", "energy",
               "--eval_max_trials", "500", "--num_workers", str(workers), "--logging_steps", "10", "--seed", "0",
               "--output_dir", str(runs / "run"), "--overwrite_output_dir"]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO)
    stats = json.loads((runs / "run" / "model" / "training_results.json").read_text())["stats"]
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    print(f"WavLM-{'tiny' if args.tiny else 'base'} (random, {parameters / 1e6:.1f}M backbone parameters), "
          f"attentive head, full recipe, 32x4 clips of 2 s, --freeze_layers {args.freeze_layers}, "
          f"{args.max_steps} steps, {workers} workers; {gpu}; {machine.cpu_model()}, {os.cpu_count()} CPUs; "
          f"torch {torch.__version__}; {time.strftime('%Y-%m-%d')}")
    memory = stats.get("peak_gpu_memory_gib")
    print(f"samples/s {stats['samples_per_s']:,.1f} | data wait {100 * stats['data_wait_fraction']:.1f}% | "
          f"peak GPU memory {'n/a' if memory is None else f'{memory:.1f} GiB'} | precision {stats['mixed_precision']} | "
          f"skipped steps {stats['skipped_non_finite_steps']} | run wall {time.perf_counter() - started:.0f} s")
    if args.output:
        write_text_atomic(args.output, json.dumps({"command": " ".join(command[1:]), "parameters": parameters,
                                                   **stats}, indent=2))


if __name__ == "__main__":
    main()
