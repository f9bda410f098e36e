"""`eisv-embed`: embed many audio files into one matrix + index, resumably.

Usage:
    eisv-embed --model DIR_OR_ID --input DIR_OR_CSV --output FILE.safetensors|FILE.npy
               [--root DIR] [--column-mapping JSON] [--device auto|cpu|cuda] [--backend torch|onnxruntime]
               [--batch-size 16] [--num-workers 0]
               [--window-s 10] [--hop-s 5] [--max-batch-s 80] [--min-speech-s 0.3] [--save-every 500]
               [--overwrite] [--no-progress]

`--input` is a folder (every audio file below it; keys relative to it) or a CSV with a `path`
or `file_name` column (relative to `--root`, default the CSV's folder; `--column-mapping
'{"wav": "path"}'` renames your columns to ours, as in train_eisv.py). Keys are normalised
(`./a.wav` and `a.wav` are one file); duplicates are embedded once and counted on stderr.
Output format: see `eisv_evaluation.embedding_store`.

A `.safetensors` output is one file replaced atomically every `--save-every` files, holding the
index and the model's identity: a rerun skips the files already there, recovers from whatever a
kill left (stale temporaries, a missing or old `.index.csv`), and refuses an output made by
another model or with other windows (pass --overwrite or another --output). While it runs the
output is locked (`OUTPUT.lock`): a second eisv-embed on the same output stops at once. A `.npy`
output is written once at the end and is not resumable (an existing one needs --overwrite).
A file with too little active signal (see --min-speech-s) is an error naming it.
`--backend onnxruntime` embeds on the CPU with the model exported to ONNX (`eisv_evaluation.onnx_backend`:
cached per model identity, exported on the first use); the output records the same model identity.
`--num-workers N` decodes and windows files in N DataLoader worker processes (same output as 0).
Under `accelerate launch` (e.g. `accelerate launch --num_processes 8 -m eisv_tools.embed ...`)
each process embeds its share of the files (every N-th of them, shortest first, so the shares hold
about the same audio) on its own device, and the main process alone locks and writes the output:
the same rows in the same order as one process, the values equal within float tolerance (batches
differ). With several processes the output is written once all have finished (or one met a bad
file), not every `--save-every` files.
Exit codes: 0 done, 1 bad input (message names the file or row) or output in use, 2 bad command line.
"""

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from eisv_evaluation.embedding_store import check_suffix, index_path, load_embeddings, save_embeddings, write_index_csv
from eisv_evaluation.loading import load_for_backend
from eisv_evaluation.trials import normalise_key
from eisv_evaluation.windowed_embedding import WindowedEmbedder, probe_audio
from eisv_io.atomic_files import remove_stale_temporaries
from eisv_io.errors import ToolError
from modeling_eisv.audio_io import AUDIO_SUFFIXES

from .cli_options import add_embedding_options, add_flag, non_negative_int, positive_int

PATH_COLUMNS = ("path", "file_name")


def parse_column_mapping(text) -> dict:
    """JSON `{"their column": "our column"}` -> dict; `None` -> `{}`. Raises `ToolError`."""
    if text is None:
        return {}
    try:
        mapping = json.loads(text)
    except json.JSONDecodeError as error:
        raise ToolError(f"--column-mapping: not valid JSON ({error})") from None
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise ToolError(f"--column-mapping: needs a JSON object of column names, e.g. '{{\"wav\": \"path\"}}'; "
                        f"got {text}")
    return mapping


def list_inputs(input_path, root=None, column_mapping=None, counts=None) -> list:
    """Folder or CSV -> list of `(key, absolute Path)`, keys unique and normalised, in a stable order.

    `column_mapping` ({their column: our column}) renames CSV columns first. Repeated keys are kept
    once; with a `counts` dict, `counts["duplicates"]` is set to how many were dropped.
    """
    input_path = Path(input_path)
    mapping = dict(column_mapping or {})
    counts = counts if counts is not None else {}
    counts["duplicates"] = 0
    if input_path.is_dir():
        if mapping:
            raise ToolError(f"{input_path}: --column-mapping applies to a CSV --input, not to a folder")
        files = sorted(p for p in input_path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        if not files:
            raise ToolError(f"{input_path}: no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) below this folder")
        return [(p.relative_to(input_path).as_posix(), p) for p in files]
    if not input_path.is_file():
        raise ToolError(f"{input_path}: no such file or folder")
    base = Path(root) if root is not None else input_path.parent
    with open(input_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in (reader.fieldnames or [])]
        absent = [name for name in mapping if name not in header]
        if absent:
            raise ToolError(f"{input_path}: --column-mapping names column(s) {', '.join(absent)}, which this CSV "
                            f"does not have (columns: {', '.join(header)})")
        reader.fieldnames = [mapping.get(name, name) for name in header]
        column = next((c for c in PATH_COLUMNS if c in reader.fieldnames), None)
        if column is None:
            raise ToolError(f"{input_path}: needs a 'path' or 'file_name' column (or --column-mapping "
                            f"'{{\"yours\": \"path\"}}'); found {header}")
        seen, entries = set(), []
        for row in reader:
            line = reader.line_num
            raw = (row.get(column) or "").strip()
            if not raw:
                raise ToolError(f"{input_path}, line {line}: empty {column}")
            key = normalise_key(raw)
            if key in seen:
                counts["duplicates"] += 1
                continue
            seen.add(key)
            entries.append((key, base / key))
    if not entries:
        raise ToolError(f"{input_path}: no rows")
    return entries


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eisv-embed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model folder or Hub id")
    parser.add_argument("--input", required=True, help="folder of audio, or CSV with a path/file_name column")
    parser.add_argument("--output", required=True, help="FILE.safetensors (resumable) or FILE.npy (+ FILE.index.csv)")
    parser.add_argument("--root", help="folder the CSV paths are relative to (default: the CSV's folder)")
    add_flag(parser, "--column-mapping", help='JSON renaming your CSV columns to ours, e.g. \'{"wav": "path"}\'')
    add_embedding_options(parser)
    add_flag(parser, "--num-workers", type=non_negative_int, default=0,
             help="DataLoader worker processes that decode and window the files (0: the main process)")
    add_flag(parser, "--save-every", type=positive_int, default=500,
             help="rewrite a .safetensors output every N new files")
    parser.add_argument("--overwrite", action="store_true", help="ignore an existing output instead of resuming")
    add_flag(parser, "--no-progress", action="store_true", help="no progress bar")
    return parser


def lock_output(output: Path):
    """An acquired exclusive `filelock` on `OUTPUT.lock`; raises `ToolError` at once when another process holds it."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(output.with_name(output.name + ".lock")))
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ToolError(f"{output}: another eisv-embed is writing this output (it holds {lock.lock_file}); wait for "
                        f"it to finish or choose another --output") from None
    return lock


def _check_resumable(output: Path, metadata: dict, settings: dict):
    """Refuses to add to an output written with other windows or by another (or an unrecorded) model."""
    for key in ("window_s", "hop_s"):
        if key in metadata and float(metadata[key]) != float(settings[key]):
            raise ToolError(f"{output}: was written with {key}={metadata[key]}, not {settings[key]}; "
                            f"pass --overwrite to start again, or choose another --output")
    recorded = metadata.get("model_sha256")
    if recorded is None:
        raise ToolError(f"{output}: records no model identity (written by an older eisv-embed), so it cannot be "
                        f"resumed safely; pass --overwrite to embed again, or choose another --output")
    if recorded != settings["model_sha256"]:
        raise ToolError(f"{output}: was embedded by another model ({metadata.get('model', '?')}, {recorded[:19]}...), "
                        f"not {settings['model']} ({settings['model_sha256'][:19]}...); pass --overwrite to start "
                        f"again, or choose another --output")


def run(args) -> dict:
    """Embed what is missing from `args.output`; returns counts `{"total", "skipped", "embedded", "duplicates"}`.

    Under `accelerate launch`, every process calls it; only the main one locks and writes the output.
    """
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    import torch

    state = PartialState(cpu=args.device == "cpu" or not torch.cuda.is_available())  # CPU processes join over gloo
    output = check_suffix(args.output)
    counts = {}
    entries = list_inputs(args.input, args.root, parse_column_mapping(getattr(args, "column_mapping", None)), counts)
    if counts["duplicates"] and state.is_main_process:
        print(f"eisv-embed: {counts['duplicates']} duplicate input path(s) dropped (each file is embedded once; "
              f"'./a.wav' and 'a.wav' are the same file)", file=sys.stderr)
    lock, refusal = None, None
    if state.is_main_process:
        try:
            lock = lock_output(output)
            for path in (output, index_path(output)):
                remove_stale_temporaries(path)  # of a killed run: we hold the lock, so no writer is alive
        except ToolError as error:
            refusal = str(error)
    if state.num_processes > 1:  # the other processes wait for the main one's lock and clean-up
        [refusal] = broadcast_object_list([refusal])
    try:
        if refusal is not None:
            raise ToolError(refusal)
        return _run_locked(args, output, entries, counts["duplicates"], state)
    finally:
        if lock is not None:
            lock.release()


def process_share(infos: list, process_index: int, num_processes: int) -> list:
    """The positions of `infos` one process embeds: every `num_processes`-th file, shortest first, so
    each share holds about the same audio (and the same padding) whatever the order of the input."""
    by_duration = sorted(range(len(infos)), key=lambda i: infos[i].duration_s)
    return sorted(by_duration[process_index::num_processes])


def _device(args, state):
    """`--device`; `auto` or `cuda` under `accelerate launch` with several processes is each process's own device."""
    if state.num_processes > 1 and args.device in (None, "auto", "cuda"):
        return str(state.device)
    return args.device


def _run_locked(args, output: Path, entries: list, duplicates: int, state) -> dict:
    from accelerate.utils import gather_object

    resumable = output.suffix == ".safetensors"
    embeddings, rows, metadata = np.zeros((0, 0), np.float32), [], {}
    if output.exists() and not args.overwrite:
        if not resumable:
            raise ToolError(f"{output}: exists, and a .npy output cannot be resumed (it records neither the model nor, "
                            f"atomically, its index); pass --overwrite to embed everything again, or write a "
                            f".safetensors output")
        embeddings, rows, metadata = load_embeddings(output)
    done = {normalise_key(row["path"]) for row in rows}
    todo = [(key, path) for key, path in entries if key not in done]
    infos = [probe_audio(path) for _, path in todo]  # fails on a missing/unreadable file before any work
    model, feature_extractor, _, identity = load_for_backend(args.model, _device(args, state),
                                                              getattr(args, "backend", "torch"))
    settings = {"model": str(args.model), "model_sha256": identity, "window_s": args.window_s, "hop_s": args.hop_s}
    if rows or metadata:
        _check_resumable(output, metadata, settings)
    if state.is_main_process:
        print(f"eisv-embed: {len(entries)} files, {len(entries) - len(todo)} already in {output}, {len(todo)} to "
              f"embed", file=sys.stderr)
    result = {"total": len(entries), "skipped": len(entries) - len(todo), "embedded": 0, "duplicates": duplicates}
    if not todo:  # only a resumed .safetensors output gets here
        if state.is_main_process:
            write_index_csv(output, rows)  # a kill may have left the CSV copy missing or old
        return result
    embedder = WindowedEmbedder(model, feature_extractor, args.batch_size, args.window_s, args.hop_s,
                                max_batch_s=args.max_batch_s, min_speech_s=args.min_speech_s,
                                num_workers=getattr(args, "num_workers", 0))
    share = process_share(infos, state.process_index, state.num_processes) if state.num_processes > 1 \
        else list(range(len(todo)))
    new = []  # (input position, vector, index row); files finish shortest first, rows are kept in input order

    def save():
        if not new:
            return
        new.sort(key=lambda item: item[0])
        stacked = np.stack([vector for _, vector, _ in new])
        merged = stacked if len(rows) == 0 else np.concatenate([embeddings, stacked])
        save_embeddings(output, merged, rows + [row for _, _, row in new], settings)

    def embed_share():
        for position, vector, info, num_windows in embedder.embed_files(
                [todo[i][1] for i in share], progress=not args.no_progress and state.is_main_process,
                infos=[infos[i] for i in share]):
            position = share[position]
            if len(rows) and vector.size != embeddings.shape[1]:
                raise ToolError(f"{output}: holds {embeddings.shape[1]}-d embeddings, this model gives "
                                f"{vector.size}-d; pass --overwrite or choose another output")
            new.append((position, vector,
                        {"path": todo[position][0], "duration_s": info.duration_s, "num_windows": num_windows}))
            yield

    if state.num_processes == 1:
        complete = False
        try:
            for _ in embed_share():
                if resumable and len(new) % args.save_every == 0:
                    save()
            complete = True
        finally:
            if resumable or complete:
                save()  # what is complete is kept, so a rerun resumes after an error or Ctrl-C
        result["embedded"] = len(new)
        return result
    # Several processes: each embeds its share; a bad file stops only its process, whose error is then
    # everyone's (a process that raised before the gather would leave the others waiting in it).
    error = None
    try:
        for _ in embed_share():
            pass
    except ToolError as failure:
        error = str(failure)
    gathered = gather_object([(new, error)])
    new[:] = [item for part, _ in gathered for item in part]
    errors = [message for _, message in gathered if message is not None]
    if state.is_main_process and (resumable or not errors):
        save()
    if errors:
        raise ToolError(errors[0])
    result["embedded"] = len(new)
    return result


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        counts = run(args)
    except ToolError as error:
        print(f"eisv-embed: error: {error}", file=sys.stderr)
        return 1
    from accelerate import PartialState

    if not PartialState().is_main_process:  # it wrote nothing; the main process says what was written
        return 0
    inside = " (index inside; copy in" if str(args.output).endswith(".safetensors") else " and"
    print(f"eisv-embed: wrote {args.output}{inside} {index_path(args.output)}"
          f"{')' if inside.startswith(' (') else ''} ({counts['embedded']} embedded, {counts['skipped']} skipped)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
