"""Bench: `eisv-embed` throughput in hours of audio per minute, workers + big batches vs the old path.

    python -m benchmarks.bench_embed_gpu [--data shared/data] [--corpora ased emodb librispeech ravdess]
        [--repeat 1] [--device cuda] [--num-workers 15] [--batch-size 256] [--max-batch-s 1280]
        [--old-every 8] [--models ge2e ecapa512]

Over every audio file of the shared corpora (ASED, EmoDB, LibriSpeech, RAVDESS: ~4.1 h, 4353
files), for the shipped GE2E (`models/eisv-ge2e`) and a randomly initialised ECAPA-TDNN C=512
(192-d, seed 0), each through `eisv-embed`'s own code (`eisv_tools.embed.main`, a fresh
`.safetensors` output; the time includes probing the headers, loading the model and writing):

  new  --num-workers N --batch-size B --max-batch-s S over all files
  old  --num-workers 0 --batch-size 1 (one file per forward pass, decoded in the main process) and
       --num-workers 0 --batch-size 16 (today's defaults), over every `--old-every`-th file, so the
       whole run stays under 3 minutes on an H200

and the largest |difference| between the new and the old embeddings of the files both embedded
(batching changes only float rounding). A short untimed run first warms the device up. Prints
the machine. `--repeat N` lists every file N times under N names (folders of symbolic links to
the corpora), for a machine that holds only part of the corpora: `--corpora emodb librispeech
--repeat 9` is 4.2 h (files read again come from the page cache). `--device cpu --data ... --old-every 1 --num-workers 1` compares on a small CPU box.
"""

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
CORPORA = ("ased", "emodb", "librispeech", "ravdess")


def find_data(given, corpora) -> Path:
    """`--data`, else `shared/data` under the repository, else `../shared/data` beside it: the first
    that holds every corpus folder."""
    for candidate in ([Path(given)] if given else [REPO / "shared" / "data", REPO.parent / "shared" / "data"]):
        if all((candidate / corpus).is_dir() for corpus in corpora):
            return candidate
    sys.exit(f"no {', '.join(corpora)} folders in {given or 'shared/data or ../shared/data'}; pass --data")


def list_files(data: Path, corpora) -> list:
    from modeling_eisv.audio_io import AUDIO_SUFFIXES

    return sorted(p for corpus in corpora for p in (data / corpus).rglob("*")
                  if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def write_listing(files, data: Path, path: Path) -> Path:
    path.write_text("path\n" + "".join(f"{f.relative_to(data).as_posix()}\n" for f in files))
    return path


def repeated(files, data: Path, corpora, repeat: int, folder: Path) -> tuple:
    """`files` under `repeat` names each: `folder/CORPUS_i` links to `data/CORPUS`. Returns (files, root)."""
    if repeat == 1:
        return files, data
    for corpus in corpora:
        for copy in range(repeat):
            (folder / f"{corpus}_{copy}").symlink_to((data / corpus).resolve(), target_is_directory=True)
    renamed = []
    for copy in range(repeat):
        for f in files:
            corpus, *rest = f.relative_to(data).parts
            renamed.append(folder.joinpath(f"{corpus}_{copy}", *rest))
    return renamed, folder


def timed_embed(model: Path, listing: Path, data: Path, output: Path, device: str, *options) -> float:
    """Seconds `eisv-embed` takes for the listing (fresh output); exits on failure."""
    from eisv_tools.embed import main as embed_main

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    code = embed_main(["--model", str(model), "--input", str(listing), "--root", str(data), "--output", str(output),
                       "--device", device, "--no-progress", "--overwrite", *options])
    elapsed = time.perf_counter() - start
    if code != 0:
        sys.exit(f"eisv-embed failed (exit {code}) on {listing}")
    return elapsed


def random_ecapa(folder: Path) -> Path:
    from modeling_eisv import EISVConfig, EISVFeatureExtractor, EISVModel

    torch.manual_seed(0)
    EISVModel(EISVConfig(encoder_type="ecapa_tdnn", ecapa_channels=512)).save_pretrained(folder)
    EISVFeatureExtractor().save_pretrained(folder)
    return folder


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="folder holding ased/ emodb/ librispeech/ ravdess/ (default: shared/data)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--num-workers", type=int, default=max(1, len(os.sched_getaffinity(0)) - 1))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-batch-s", type=float, default=1280.0)
    parser.add_argument("--old-every", type=int, default=8, help="the old path embeds every N-th file")
    parser.add_argument("--models", nargs="+", choices=("ge2e", "ecapa512"), default=["ge2e", "ecapa512"])
    parser.add_argument("--corpora", nargs="+", default=list(CORPORA))
    parser.add_argument("--repeat", type=int, default=1, help="list every file this many times (see above)")
    args = parser.parse_args(argv)

    from eisv_evaluation.embedding_store import load_embeddings
    from modeling_eisv.audio_io import probe_audio

    data = find_data(args.data, args.corpora)
    links = tempfile.TemporaryDirectory()
    files, data = repeated(list_files(data, args.corpora), data, args.corpora, args.repeat, Path(links.name))
    seconds = {f: probe_audio(f).duration_s for f in files}
    hours = sum(seconds.values()) / 3600
    old_files = files[::args.old_every]
    old_hours = sum(seconds[f] for f in old_files) / 3600
    new_options = ["--num-workers", str(args.num_workers), "--batch-size", str(args.batch_size),
                   "--max-batch-s", str(args.max_batch_s)]
    runs = {"old b1": (["--num-workers", "0", "--batch-size", "1"], True),
            "old b16": (["--num-workers", "0", "--batch-size", "16"], True),
            f"new w{args.num_workers} b{args.batch_size}": (new_options, False)}
    print(f"data: {data}: {len(files)} files, {hours:.2f} h ({', '.join(args.corpora)} x {args.repeat}); old paths over "
          f"every {args.old_every}-th file: {len(old_files)} files, {old_hours:.2f} h", flush=True)
    start_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        listing = write_listing(files, data, folder / "all.csv")
        old_listing = write_listing(old_files, data, folder / "old.csv")
        warm_listing = write_listing(files[:64], data, folder / "warm.csv")
        models = {"ge2e": REPO / "models" / "eisv-ge2e", "ecapa512": None}
        for name in args.models:
            model = models[name] or random_ecapa(folder / "ecapa512")
            timed_embed(model, warm_listing, data, folder / "warm.safetensors", args.device, *new_options)
            results = {}
            for label, (options, old) in runs.items():
                output = folder / f"{name}-{label.replace(' ', '_')}.safetensors"
                seconds = timed_embed(model, old_listing if old else listing, data, output, args.device, *options)
                results[label] = (seconds, (old_hours if old else hours) * 60 / seconds, output)
                print(f"{name:9s} {label:16s} {seconds:7.1f} s  {results[label][1]:6.1f} h of audio per minute",
                      flush=True)
            new_label = list(runs)[-1]
            new, new_rows, _ = load_embeddings(results[new_label][2])
            position = {row["path"]: number for number, row in enumerate(new_rows)}
            for label in list(runs)[:-1]:
                old, old_rows, _ = load_embeddings(results[label][2])
                same = new[[position[row["path"]] for row in old_rows]]
                print(f"{name:9s} {new_label} vs {label}: {results[new_label][1] / results[label][1]:.1f}x faster, "
                      f"max |embedding difference| {np.abs(same - old).max():.2e}", flush=True)
    links.cleanup()
    print(f"total {time.perf_counter() - start_all:.0f} s")
    gpu = ""
    if args.device.startswith("cuda") and torch.cuda.is_available():
        gpu = f", {torch.cuda.get_device_name(torch.device(args.device))}"
    print(f"machine: {cpu_model()} ({len(os.sched_getaffinity(0))} usable of {os.cpu_count()} logical cores){gpu}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
