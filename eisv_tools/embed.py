"""`eisv-embed`: embed many audio files into one matrix + index CSV, resumably.

Usage:
    eisv-embed --model DIR_OR_ID --input DIR_OR_CSV --output FILE.safetensors|FILE.npy
               [--root DIR] [--device auto|cpu|cuda] [--batch-size 16] [--window-s 10] [--hop-s 5]
               [--max-batch-s 80] [--save-every 500] [--overwrite] [--no-progress]

`--input` is a folder (every audio file below it; keys relative to it) or a CSV with a `path`
or `file_name` column (relative to `--root`, default the CSV's folder). Output format: see
`eisv_tools.embedding_store`. A rerun with the same output skips the files already there; the
output is rewritten atomically every `--save-every` files, so an interrupted run loses little.
Exit codes: 0 done, 1 bad input (message names the file or row), 2 bad command line.
"""

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from .cli_options import add_embedding_options
from .embedding_store import check_suffix, index_path, load_embeddings, save_embeddings
from .errors import ToolError
from .loading import load_model
from .windowed_embedding import WindowedEmbedder, probe_audio

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif", ".au"}


def list_inputs(input_path, root=None) -> list:
    """Folder or CSV -> list of `(key, absolute Path)`, keys unique, in a stable order."""
    input_path = Path(input_path)
    if input_path.is_dir():
        files = sorted(p for p in input_path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        if not files:
            raise ToolError(f"{input_path}: no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) below this folder")
        return [(p.relative_to(input_path).as_posix(), p) for p in files]
    if not input_path.is_file():
        raise ToolError(f"{input_path}: no such file or folder")
    base = Path(root) if root is not None else input_path.parent
    with open(input_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        column = next((c for c in ("path", "file_name") if c in (reader.fieldnames or [])), None)
        if column is None:
            raise ToolError(f"{input_path}: needs a 'path' or 'file_name' column; found {reader.fieldnames}")
        seen, entries = set(), []
        for line, row in enumerate(reader, start=2):
            key = (row.get(column) or "").strip()
            if not key:
                raise ToolError(f"{input_path}, line {line}: empty {column}")
            if key not in seen:
                seen.add(key)
                entries.append((key, base / key))
    if not entries:
        raise ToolError(f"{input_path}: no rows")
    return entries


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eisv-embed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model folder or Hub id")
    parser.add_argument("--input", required=True, help="folder of audio, or CSV with a path/file_name column")
    parser.add_argument("--output", required=True, help="FILE.safetensors or FILE.npy (+ FILE.index.csv)")
    parser.add_argument("--root", help="folder the CSV paths are relative to (default: the CSV's folder)")
    add_embedding_options(parser)
    parser.add_argument("--save-every", type=int, default=500, help="rewrite the output every N new files")
    parser.add_argument("--overwrite", action="store_true", help="ignore an existing output instead of resuming")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run(args) -> dict:
    """Embed what is missing from `args.output`; returns counts `{"total", "skipped", "embedded"}`."""
    output = check_suffix(args.output)
    entries = list_inputs(args.input, args.root)
    settings = {"model": str(args.model), "window_s": args.window_s, "hop_s": args.hop_s}
    embeddings, rows = np.zeros((0, 0), np.float32), []
    if output.exists() and not args.overwrite:
        embeddings, rows, metadata = load_embeddings(output)
        for key in ("window_s", "hop_s"):
            if key in metadata and float(metadata[key]) != float(settings[key]):
                raise ToolError(f"{output}: was written with {key}={metadata[key]}, not {settings[key]}; "
                                f"pass --overwrite to start again")
    done = {row["path"] for row in rows}
    todo = [(key, path) for key, path in entries if key not in done]
    print(f"eisv-embed: {len(entries)} files, {len(entries) - len(todo)} already in {output}, {len(todo)} to embed",
          file=sys.stderr)
    if not todo:
        if not index_path(output).exists():
            save_embeddings(output, embeddings, rows, settings)
        return {"total": len(entries), "skipped": len(entries), "embedded": 0}
    infos = [probe_audio(path) for _, path in todo]  # fails on a missing/unreadable file before any work
    model, feature_extractor = load_model(args.model, args.device)
    embedder = WindowedEmbedder(model, feature_extractor, args.batch_size, args.window_s, args.hop_s,
                                max_batch_s=args.max_batch_s)
    new = []  # (input position, vector, index row); files finish shortest first, rows are kept in input order

    def save():
        if not new:
            return
        new.sort(key=lambda item: item[0])
        stacked = np.stack([vector for _, vector, _ in new])
        merged = stacked if len(rows) == 0 else np.concatenate([embeddings, stacked])
        save_embeddings(output, merged, rows + [row for _, _, row in new], settings)

    try:
        for position, vector, info, num_windows in embedder.embed_files(
                [p for _, p in todo], progress=not args.no_progress, infos=infos):
            if len(rows) and vector.size != embeddings.shape[1]:
                raise ToolError(f"{output}: holds {embeddings.shape[1]}-d embeddings, this model gives {vector.size}-d; "
                                f"pass --overwrite or choose another output")
            new.append((position, vector,
                        {"path": todo[position][0], "duration_s": info.duration_s, "num_windows": num_windows}))
            if len(new) % max(1, args.save_every) == 0:
                save()
    finally:
        save()  # what is complete is kept, so a rerun resumes after an error or Ctrl-C
    return {"total": len(entries), "skipped": len(entries) - len(todo), "embedded": len(new)}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        counts = run(args)
    except ToolError as error:
        print(f"eisv-embed: error: {error}", file=sys.stderr)
        return 1
    print(f"eisv-embed: wrote {args.output} and {index_path(args.output)} "
          f"({counts['embedded']} embedded, {counts['skipped']} skipped)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
