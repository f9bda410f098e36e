"""Trial lists: reading and validating `corpus, enroll, test, label, condition` CSVs.

`label` is 1 for a target trial (same speaker) and 0 for a non-target; `enroll` and `test` are
audio paths relative to a root folder. Extra columns are ignored. Every error names the file and
the CSV line as an editor numbers it (the header is line 1; blank lines count). Refused: a row
with fewer or more fields than the header, a missing label or path, and a pair of files labelled
both 1 and 0 (in either order).
"""

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eisv_io.trial_schema import TRIAL_COLUMNS

from eisv_io.errors import ToolError

_LABELS = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1}


@dataclass
class Trials:
    """Columns of a trial list as arrays of equal length (trials,); `line` is each trial's CSV line."""

    corpus: np.ndarray
    enroll: np.ndarray
    test: np.ndarray
    label: np.ndarray  # int64 in {0, 1}
    condition: np.ndarray
    line: np.ndarray
    source: str

    def __len__(self):
        return len(self.label)

    def subset(self, index) -> "Trials":
        return Trials(*(getattr(self, f)[index] for f in ("corpus", "enroll", "test", "label", "condition", "line")),
                      source=self.source)


def _rows_from_csv(path: Path):
    if not path.is_file():
        raise ToolError(f"{path}: no such trial file")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in (reader.fieldnames or [])]
        missing = [column for column in TRIAL_COLUMNS if column not in header]
        if missing:
            raise ToolError(f"{path}: missing column(s) {', '.join(missing)}; a trial CSV needs {', '.join(TRIAL_COLUMNS)}")
        reader.fieldnames = header
        rows = []
        for row in reader:
            rows.append((reader.line_num, row))  # the record's last physical line: its line unless it spans several
        return rows


def _rows_from_frame(frame):
    missing = [column for column in TRIAL_COLUMNS if column not in frame.columns]
    if missing:
        raise ToolError(f"trial table: missing column(s) {', '.join(missing)}")
    records = frame[list(TRIAL_COLUMNS)].astype(str).to_dict("records")
    return [(line, row) for line, row in enumerate(records, start=2)]


def read_trials(trials) -> Trials:
    """CSV path, pandas DataFrame or `Trials` -> validated `Trials`. Raises `ToolError` naming the line."""
    if isinstance(trials, Trials):
        return trials
    if isinstance(trials, (str, Path)):
        source = str(trials)
        rows = _rows_from_csv(Path(trials))
    else:
        source = "trial table"
        rows = _rows_from_frame(trials)
    if not rows:
        raise ToolError(f"{source}: no trials")
    columns = {name: [] for name in TRIAL_COLUMNS}
    lines = []
    for line, row in rows:
        if None in row:
            raise ToolError(f"{source}, line {line}: more fields than the header has")
        if any(value is None for value in row.values()):
            given = sum(value is not None for value in row.values())
            raise ToolError(f"{source}, line {line}: {given} field(s), the header has {len(row)}")
        for name in TRIAL_COLUMNS:
            value = row.get(name)
            value = "" if value is None else str(value).strip()
            if name == "label":
                if value.lower() not in _LABELS:
                    raise ToolError(f"{source}, line {line}: label must be 0 or 1, got {value!r}")
                value = _LABELS[value.lower()]
            elif not value and name in ("enroll", "test"):
                raise ToolError(f"{source}, line {line}: empty {name} path")
            columns[name].append(value)
        lines.append(line)
    _check_consistent_labels(columns, lines, source)
    return Trials(*(np.asarray(columns[name], dtype=np.int64 if name == "label" else object) for name in TRIAL_COLUMNS),
                  line=np.asarray(lines), source=source)


def normalise_key(key: str) -> str:
    """A file key as trial lists and eisv-embed compare them: `./a//b.wav` -> `a/b.wav`.

    Drops `.` and empty path components; keeps `..` (which may cross a symbolic link) and a leading `/`.
    """
    absolute = key.startswith("/")
    parts = [part for part in key.split("/") if part not in ("", ".")]
    return ("/" if absolute else "") + "/".join(parts)


def _check_consistent_labels(columns: dict, lines: list, source: str):
    """Raises `ToolError` naming both lines when one pair of files (in either order) is labelled 1 and 0."""
    first = {}  # (file, file) sorted -> (label, line)
    for enroll, test, label, line in zip(columns["enroll"], columns["test"], columns["label"], lines):
        enroll, test = normalise_key(enroll), normalise_key(test)
        pair = (enroll, test) if enroll <= test else (test, enroll)
        seen = first.setdefault(pair, (label, line))
        if seen[0] != label:
            raise ToolError(f"{source}, line {line}: the pair {enroll}, {test} is labelled {label} here but "
                            f"{seen[0]} on line {seen[1]}; a pair is either the same speaker or not")


def sample_trials(trials: Trials, max_trials=None, seed=0) -> Trials:
    """A seeded random subset of at most `max_trials` trials (kept in file order); all when None."""
    if max_trials is None or max_trials >= len(trials):
        return trials
    if max_trials < 2:
        raise ToolError(f"max_trials must be at least 2; got {max_trials}")
    chosen = np.sort(np.random.default_rng(seed).choice(len(trials), size=int(max_trials), replace=False))
    return trials.subset(chosen)
