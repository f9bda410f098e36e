"""Where recordings come from: an AudioFolder, a CSV/JSON table, a `datasets.Dataset` or a Hub id.

Every source becomes a `datasets.Dataset` with the columns

- `path` (str): absolute path of an audio file,
- `speaker` (str), `emotion` (str): free labels, surrounding whitespace removed,
- `corpus` (str): the corpus column where the source has one, else the folder / file name.

Nothing here decodes audio or judges a row; `indexing.index_dataset` does that.
"""

import hashlib
import os
import tempfile
from pathlib import Path

import datasets
import pandas

COLUMNS = ("path", "speaker", "emotion", "corpus")
WHERE = "where"  # each row's origin as its user would find it: "table.csv, line 7" or "Hub dataset 'x', row 6"

# The train / dev-test protocol of shared/data/README.md (speaker names are corpus-prefixed).
_RAVDESS_TRAIN = [f"ravdess_Actor_{i:02d}" for i in range(1, 19)]
_RAVDESS_DEV = [f"ravdess_Actor_{i:02d}" for i in range(19, 25)]


def load_source(source, column_mapping=None, split="train", audio_cache_dir=None) -> datasets.Dataset:
    """Read recordings from `source` into a Dataset with `path`, `speaker`, `emotion`, `corpus`.

    Args:
        source: one of
            - a folder with `metadata.csv` (AudioFolder layout; `file_name` relative to the folder),
            - a folder whose sub-folders are AudioFolders (each is read; e.g. `shared/data`),
            - a `.csv`, `.json` or `.jsonl` file of rows with a path (relative to the file's folder
              or absolute), speaker and emotion,
            - a `datasets.Dataset` (an `audio` column of type `Audio` may stand in for `path`),
            - a Hub dataset id (any other string), loaded with `datasets.load_dataset(id, split=split)`,
            - a list of any of these, concatenated.
        column_mapping: {their column: our column}, e.g. `{"wav": "path", "spk": "speaker"}`.
        split: split of a Hub dataset.
        audio_cache_dir: where audio held only as bytes (Hub parquet) is written, one file per clip
            named by its content hash; defaults to `~/.cache/eisv/audio`.
    """
    if isinstance(source, (list, tuple)):
        if not source:
            raise ValueError("load_source: the list of sources is empty")
        parts = [load_source(s, column_mapping, split, audio_cache_dir) for s in source]
        return datasets.concatenate_datasets(parts)
    if isinstance(source, datasets.DatasetDict):
        raise ValueError(f"load_source: got a DatasetDict with splits {list(source)}; pass one split, e.g. source['train']")
    if isinstance(source, datasets.Dataset):
        return _from_dataset(source, column_mapping, audio_cache_dir, where="the given Dataset")
    path = Path(source)
    if path.is_dir():
        if (path / "metadata.csv").is_file():
            return _from_table(path / "metadata.csv", column_mapping, default_corpus=path.name)
        children = sorted(p for p in path.iterdir() if (p / "metadata.csv").is_file())
        if not children:
            raise FileNotFoundError(f"{path}: no metadata.csv here or in any sub-folder (AudioFolder layout expected)")
        return datasets.concatenate_datasets([_from_table(c / "metadata.csv", column_mapping, c.name) for c in children])
    if path.suffix.lower() in (".csv", ".json", ".jsonl"):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such table")
        return _from_table(path, column_mapping, default_corpus=path.stem)
    if os.path.exists(str(source)):
        raise ValueError(f"{source}: not a folder, .csv, .json or .jsonl file")
    text = str(source)
    if path.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1 or path.suffix:
        raise FileNotFoundError(f"{source}: no such file or folder (and not a Hub dataset id, which is 'owner/name')")
    dataset = datasets.load_dataset(str(source), split=split)
    return _from_dataset(dataset, column_mapping, audio_cache_dir, where=f"Hub dataset {source!r}")


def load_protocol_split(data_root, split: str) -> datasets.Dataset:
    """The README protocol of `shared/data`: `train` (ased + RAVDESS actors 1-18, 83 speakers) or
    `dev` (RAVDESS actors 19-24 + emodb, 16 speakers)."""
    root = Path(data_root)
    if split == "train":
        ased, ravdess = load_source(root / "ased"), load_source(root / "ravdess")
        ravdess = ravdess.filter(lambda s: s in _RAVDESS_TRAIN, input_columns="speaker")
        return datasets.concatenate_datasets([ased, ravdess])
    if split == "dev":
        ravdess, emodb = load_source(root / "ravdess"), load_source(root / "emodb")
        ravdess = ravdess.filter(lambda s: s in _RAVDESS_DEV, input_columns="speaker")
        return datasets.concatenate_datasets([ravdess, emodb])
    raise ValueError(f"load_protocol_split: split={split!r}; choose 'train' or 'dev'")


def _from_table(table: Path, column_mapping, default_corpus: str) -> datasets.Dataset:
    """A metadata.csv / CSV / JSON table -> the standard columns, paths made absolute."""
    if table.suffix.lower() == ".csv":
        frame = pandas.read_csv(table, dtype=str, keep_default_na=False)
    else:
        frame = pandas.read_json(table, lines=table.suffix.lower() == ".jsonl", dtype=False)
    frame = frame.rename(columns=dict(column_mapping or {}))
    if "path" not in frame.columns and "file_name" in frame.columns:
        frame = frame.rename(columns={"file_name": "path"})
    _require_columns(frame.columns, f"{table}", column_mapping)
    base = table.parent.resolve()
    frame["path"] = [_absolute(base, p) for p in frame["path"]]
    if "corpus" not in frame.columns:
        frame["corpus"] = default_corpus
    # A CSV's first data row is its line 2 (after the header); JSON Lines count from line 1.
    first = 2 if table.suffix.lower() == ".csv" else 1
    frame[WHERE] = [f"{table}, line {first + i}" if table.suffix.lower() != ".json" else f"{table}, record {i}"
                    for i in range(len(frame))]
    return _standardise(frame[[*COLUMNS, WHERE]])


def _from_dataset(dataset: datasets.Dataset, column_mapping, audio_cache_dir, where: str) -> datasets.Dataset:
    """A Dataset (local or from the Hub) -> the standard columns; `audio` becomes `path`."""
    if column_mapping:
        dataset = dataset.rename_columns({k: v for k, v in column_mapping.items() if k in dataset.column_names})
    for name in ("speaker", "emotion"):  # class-label ints -> their names
        feature = dataset.features.get(name)
        if isinstance(feature, datasets.ClassLabel):
            dataset = dataset.cast_column(name, datasets.Value("string"))
    if "path" not in dataset.column_names and "audio" in dataset.column_names:
        if isinstance(dataset.features["audio"], datasets.Audio):
            dataset = dataset.cast_column("audio", datasets.Audio(decode=False))
        cache = Path(audio_cache_dir or Path.home() / ".cache" / "eisv" / "audio")
        paths = [_audio_path(value, cache, row, where) for row, value in enumerate(dataset["audio"])]
        dataset = dataset.add_column("path", paths)
    _require_columns(dataset.column_names, where, column_mapping)
    frame = dataset.select_columns([c for c in COLUMNS if c in dataset.column_names]).to_pandas()
    if "corpus" not in frame.columns:
        frame["corpus"] = ""
    frame["path"] = [None if p is None else str(Path(p).resolve()) for p in frame["path"]]
    frame[WHERE] = [f"{where}, row {i}" for i in range(len(frame))]
    return _standardise(frame[[*COLUMNS, WHERE]])


def _audio_path(value, cache: Path, row: int, where: str):
    """An undecoded `Audio` value {"path", "bytes"} -> a local file path (bytes written once to `cache`)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"{where}: row {row}: audio value of type {type(value).__name__}; expected a path or dict")
    if value.get("path") and os.path.isfile(value["path"]):
        return value["path"]
    data = value.get("bytes")
    if not data:
        raise ValueError(f"{where}: row {row}: audio {value.get('path')!r} is neither a local file nor bytes")
    suffix = Path(value.get("path") or "clip.wav").suffix or ".wav"
    target = cache / f"{hashlib.sha1(data).hexdigest()}{suffix}"
    if not target.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache, suffix=".tmp", delete=False) as handle:
            handle.write(data)
        os.replace(handle.name, target)  # rename: readers never see a half-written file
    return str(target)


def _require_columns(columns, where, column_mapping):
    missing = [c for c in ("path", "speaker", "emotion") if c not in columns]
    if missing:
        raise ValueError(
            f"{where}: missing column(s) {missing} (has {sorted(columns)}); map yours with "
            f"column_mapping={{'your_name': 'speaker', ...}} (given: {column_mapping})")


def _absolute(base: Path, path) -> str:
    if path is None or (isinstance(path, float)) or str(path).strip() == "":
        return ""
    path = Path(str(path).strip())
    return str(path if path.is_absolute() else (base / path).resolve())


def _standardise(frame: pandas.DataFrame) -> datasets.Dataset:
    """Labels to stripped strings; a missing label stays None so that indexing reports the row."""
    for name in ("speaker", "emotion", "corpus"):
        frame[name] = [_label(v) for v in frame[name]]
    frame["path"] = [None if p in (None, "") else str(p) for p in frame["path"]]
    features = datasets.Features({c: datasets.Value("string") for c in frame.columns})
    return datasets.Dataset.from_pandas(frame.reset_index(drop=True), features=features, preserve_index=False)


def _label(value):
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    return text or None
