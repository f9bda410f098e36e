"""Embedding files written by `eisv-embed` and read by `eisv-eval --cohort`.

An embedding file is a pair, written atomically (embeddings first, index last):

- `NAME.safetensors` (tensor `"embeddings"`, float32 (files, dim), unit-norm rows; string
  metadata `format`, `model`, `window_s`, `hop_s`) or `NAME.npy` (the same matrix only);
- `NAME.index.csv` with columns `row, path, duration_s, num_windows`: `row` is the matrix row,
  `path` the file's key (relative to the input folder or as written in the input CSV).
"""

import csv
import io
from pathlib import Path

import numpy as np

from .atomic_files import atomic_path, write_text_atomic
from .errors import ToolError

FORMAT = "eisv-embeddings/1"
INDEX_COLUMNS = ("row", "path", "duration_s", "num_windows")
SUFFIXES = (".safetensors", ".npy")


def index_path(path) -> Path:
    """`emb.safetensors` -> `emb.index.csv`."""
    path = Path(path)
    return path.with_name(path.stem + ".index.csv")


def check_suffix(path) -> Path:
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ToolError(f"{path}: output must end in .safetensors or .npy")
    return path


def save_embeddings(path, embeddings: np.ndarray, rows: list, metadata: dict = None):
    """Write (files, dim) `embeddings` and their index `rows` (dicts with `path`, `duration_s`, `num_windows`)."""
    path = check_suffix(path)
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or len(embeddings) != len(rows):
        raise ValueError(f"embeddings {embeddings.shape} do not match {len(rows)} index rows")
    with atomic_path(path) as temporary:
        if path.suffix == ".safetensors":
            from safetensors.numpy import save_file

            info = {"format": FORMAT, **{key: str(value) for key, value in (metadata or {}).items()}}
            save_file({"embeddings": embeddings}, str(temporary), metadata=info)
        else:
            with open(temporary, "wb") as handle:
                np.save(handle, embeddings)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=INDEX_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for number, row in enumerate(rows):
        writer.writerow({"row": number, "path": row["path"], "duration_s": f"{float(row['duration_s']):.3f}",
                         "num_windows": int(row["num_windows"])})
    write_text_atomic(index_path(path), text.getvalue())


def load_embeddings(path):
    """-> (embeddings (files, dim) float32, index rows as dicts, metadata dict). Raises `ToolError`."""
    path = check_suffix(path)
    index = index_path(path)
    for needed in (path, index):
        if not needed.is_file():
            raise ToolError(f"{needed}: no such file (embedding files come as NAME{path.suffix} + NAME.index.csv)")
    metadata = {}
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="numpy") as handle:
                metadata = dict(handle.metadata() or {})
                embeddings = handle.get_tensor("embeddings")
        else:
            embeddings = np.load(path, allow_pickle=False)
    except Exception as error:
        raise ToolError(f"{path}: cannot read embeddings ({error})") from None
    with open(index, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in INDEX_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise ToolError(f"{index}: missing column(s) {', '.join(missing)}")
        rows = list(reader)
    if embeddings.ndim != 2 or len(embeddings) != len(rows):
        raise ToolError(f"{path}: {embeddings.shape[0] if embeddings.ndim else 0} embeddings but {len(rows)} "
                        f"rows in {index.name}; the pair is inconsistent, delete both and embed again")
    return np.asarray(embeddings, dtype=np.float32), rows, metadata
