"""Embedding files written by `eisv-embed` and read by `eisv-eval --cohort`.

**`NAME.safetensors`** (format `eisv-embeddings/1`) is the whole output in one file, replaced
atomically (temporary name, then `os.replace`), so a reader or a kill never sees a matrix with the
wrong index:

- tensor `"embeddings"`: float32 (files, dim), unit-norm rows;
- string metadata `format`, `model` (as given), `model_sha256` (`eisv_evaluation.loading.model_identity`),
  `window_s`, `hop_s`, and `index`: JSON `{"path": [...], "duration_s": [...], "num_windows": [...]}`,
  one entry per matrix row; `path` is the file's key (relative to the input folder, or as written
  in the input CSV with `./` and doubled slashes removed).

`NAME.index.csv` (columns `row, path, duration_s, num_windows`) is written after it as a
convenience copy for people and spreadsheets; the reader ignores it, and a rerun rewrites it
when a kill left it missing or old. The metadata header of a safetensors file is limited to
100 MB, i.e. roughly a million files per output.

**`NAME.npy`** has no room for metadata, so it is the plain matrix plus `NAME.index.csv`, written
one after the other once, at the end of a complete run: it cannot be resumed or checked for its
model (eisv-embed refuses to resume into one). Use `.safetensors` for long or concurrent jobs.

Files of older eisv-embed versions (a `.safetensors` without `index` and `model_sha256`, its index
only in the CSV) are still read, as a pair, but not resumed into.
"""

import csv
import io
import json
from pathlib import Path

import numpy as np

from eisv_io.atomic_files import atomic_path, write_text_atomic
from eisv_io.errors import ToolError

FORMAT = "eisv-embeddings/1"
INDEX_COLUMNS = ("row", "path", "duration_s", "num_windows")
SUFFIXES = (".safetensors", ".npy")
MAX_INDEX_BYTES = 90_000_000  # safetensors refuses headers above 100 MB


def index_path(path) -> Path:
    """`emb.safetensors` -> `emb.index.csv`."""
    path = Path(path)
    return path.with_name(path.stem + ".index.csv")


def check_suffix(path) -> Path:
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ToolError(f"{path}: output must end in .safetensors or .npy")
    return path


def _clean_rows(rows) -> list:
    return [{"row": number, "path": str(row["path"]), "duration_s": round(float(row["duration_s"]), 3),
             "num_windows": int(row["num_windows"])} for number, row in enumerate(rows)]


def index_csv_text(rows) -> str:
    """The `NAME.index.csv` text of index `rows`."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=INDEX_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in _clean_rows(rows):
        writer.writerow({**row, "duration_s": f"{row['duration_s']:.3f}"})
    return text.getvalue()


def write_index_csv(path, rows) -> bool:
    """(Re)write `NAME.index.csv` of output `path` unless it already holds exactly `rows`; True when written."""
    index, text = index_path(path), index_csv_text(rows)
    try:
        if index.read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    write_text_atomic(index, text)
    return True


def save_embeddings(path, embeddings: np.ndarray, rows: list, metadata: dict = None):
    """Write (files, dim) `embeddings` and their index `rows` (dicts with `path`, `duration_s`, `num_windows`).

    `.safetensors`: one atomic file with the index in its metadata, then the CSV copy. `.npy`: the
    matrix, then the CSV (two files; see the module docstring).
    """
    path = check_suffix(path)
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or len(embeddings) != len(rows):
        raise ValueError(f"embeddings {embeddings.shape} do not match {len(rows)} index rows")
    clean = _clean_rows(rows)
    with atomic_path(path) as temporary:
        if path.suffix == ".safetensors":
            from safetensors.numpy import save_file

            index = json.dumps({key: [row[key] for row in clean] for key in ("path", "duration_s", "num_windows")},
                               ensure_ascii=False, separators=(",", ":"))
            if len(index.encode()) > MAX_INDEX_BYTES:
                raise ToolError(f"{path}: the index of {len(rows)} files is too large for safetensors metadata "
                                f"(100 MB); split the input into several outputs")
            info = {**{key: str(value) for key, value in (metadata or {}).items()}, "format": FORMAT, "index": index}
            save_file({"embeddings": embeddings}, str(temporary), metadata=info)
        else:
            with open(temporary, "wb") as handle:
                np.save(handle, embeddings)
    write_index_csv(path, clean)


def _rows_from_csv(index: Path, what: Path) -> list:
    if not index.is_file():
        raise ToolError(f"{index}: no such file ({what.name} keeps its index in {index.name})")
    with open(index, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in INDEX_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise ToolError(f"{index}: missing column(s) {', '.join(missing)}")
        return [{"row": int(row["row"]), "path": row["path"], "duration_s": float(row["duration_s"]),
                 "num_windows": int(row["num_windows"])} for row in reader]


def load_embeddings(path):
    """-> (embeddings (files, dim) float32, index rows as dicts, metadata dict without `index`). Raises `ToolError`.

    Rows are `{"row": int, "path": str, "duration_s": float, "num_windows": int}`.
    """
    path = check_suffix(path)
    if not path.is_file():
        raise ToolError(f"{path}: no such file")
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
        raise ToolError(f"{path}: cannot read embeddings ({str(error).splitlines()[0] if str(error) else error!r})") \
            from None
    index = metadata.pop("index", None)
    if index is not None:
        try:
            columns = json.loads(index)
            rows = [{"row": number, "path": str(key), "duration_s": float(duration), "num_windows": int(windows)}
                    for number, (key, duration, windows)
                    in enumerate(zip(columns["path"], columns["duration_s"], columns["num_windows"], strict=True))]
        except (ValueError, KeyError, TypeError) as error:
            raise ToolError(f"{path}: the index in its metadata is malformed ({error})") from None
        where = "its metadata index"
    else:
        rows = _rows_from_csv(index_path(path), path)
        where = index_path(path).name
    if embeddings.ndim != 2 or len(embeddings) != len(rows):
        raise ToolError(f"{path}: {embeddings.shape[0] if embeddings.ndim else 0} embeddings but {len(rows)} "
                        f"rows in {where}; the output is inconsistent, embed again with --overwrite")
    return np.asarray(embeddings, dtype=np.float32), rows, metadata
