"""Bench: embed a one-hour file on CPU with bounded memory (eisv-embed's windowed path).

Writes 1 h of synthetic speech-like noise (16 kHz FLAC, ~55 MB) to a temporary folder, embeds
it with a default-size, randomly initialised ECAPA-TDNN (C=512, 192-d) through `eisv-embed`'s
code, and prints the peak resident memory of this process (ru_maxrss), the wall time and the
machine. The target is a peak under 2 GiB.

    python -m benchmarks.bench_embed_long [--hours 1] [--channels 512] [--batch-size 16]
"""

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch


def speech_like_noise(path: Path, seconds: float, rate=16000, chunk_s=60):
    """Pink-ish noise with a 4 Hz syllable envelope and pauses, written chunk by chunk (bounded memory)."""
    rng = np.random.default_rng(0)
    with soundfile.SoundFile(str(path), "w", samplerate=rate, channels=1, subtype="PCM_16", format="FLAC") as out:
        done = 0
        while done < seconds:
            n = int(min(chunk_s, seconds - done) * rate)
            t = (np.arange(n) + done * rate) / rate
            white = rng.standard_normal(n)
            coloured = np.convolve(white, np.ones(8) / 8, mode="same")  # low-pass: more speech-like tilt
            envelope = np.clip(np.sin(2 * np.pi * 4 * t) + 0.3 * np.sin(2 * np.pi * 0.3 * t), 0, None)
            out.write((0.1 * coloured * envelope).astype(np.float32))
            done += chunk_s


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--channels", type=int, default=512, help="ECAPA channels (512 = the paper's small model)")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    from eisv_tools.embed import main as embed_main
    from eisv_evaluation.embedding_store import load_embeddings
    from modeling_eisv import EISVConfig, EISVFeatureExtractor, EISVModel

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        audio_dir = folder / "audio"
        audio_dir.mkdir()
        start = time.perf_counter()
        speech_like_noise(audio_dir / "long.flac", args.hours * 3600)
        print(f"wrote {args.hours:g} h ({(audio_dir / 'long.flac').stat().st_size / 2**20:.0f} MiB FLAC) in "
              f"{time.perf_counter() - start:.1f} s")
        torch.manual_seed(0)
        EISVModel(EISVConfig(ecapa_channels=args.channels)).save_pretrained(folder / "model")
        EISVFeatureExtractor().save_pretrained(folder / "model")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
        start = time.perf_counter()
        code = embed_main(["--model", str(folder / "model"), "--input", str(audio_dir), "--output",
                           str(folder / "emb.safetensors"), "--device", "cpu", "--batch-size", str(args.batch_size)])
        elapsed = time.perf_counter() - start
        embeddings, rows, _ = load_embeddings(folder / "emb.safetensors")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # Linux: KiB -> MiB
    print(f"exit code {code}; embedding {embeddings.shape}, {rows[0]['num_windows']} windows of 10 s every 5 s")
    print(f"embed time {elapsed:.1f} s ({args.hours * 3600 / elapsed:.0f}x real time)")
    print(f"peak RSS {peak:.0f} MiB (before embedding {rss_before:.0f} MiB); limit 2048 MiB: "
          f"{'OK' if peak < 2048 else 'EXCEEDED'}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}")
    return 0 if code == 0 and peak < 2048 else 1


if __name__ == "__main__":
    sys.exit(main())
