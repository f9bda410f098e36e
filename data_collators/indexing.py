"""Validate and index a source Dataset with one deterministic `Dataset.map` (no randomness: its cache
would freeze it).

Added columns:

- `num_samples` (int): samples at `sampling_rate` after mixing to mono and resampling,
- `duration_s` (float): `num_samples / sampling_rate`, in seconds,
- `source_sampling_rate` (int), `source_channels` (int): as stored in the file,
- `speaker_id`, `emotion_id` (`ClassLabel`): ids in sorted-name order; `features[...].names` holds the names,
- `is_neutral` (bool): the emotion is one of `neutral_emotions` (case-insensitive),
- `row_index` (int): the row's position in the indexed dataset (what the collator looks audio up by).

A bad row (missing label, missing / undecodable / empty / silent / NaN / too short audio) raises
`BadRowError` naming every bad row and file, or with `skip_bad_rows=True` is dropped, counted and
listed (logged, and written as CSV to `bad_rows_log` when given). Source files are only read.
"""

import csv
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import soundfile

from modeling_eisv.audio_io import AudioError, load_audio
from modeling_eisv.speech_activity import MIN_SPEECH_S, active_seconds

logger = logging.getLogger(__name__)


class BadRowError(ValueError):
    """Rows of a dataset that cannot be trained on; the message names each row, file and problem."""


@dataclass
class IndexReport:
    """What `index_dataset` kept and dropped. `bad_rows`: (source row, path, reason) tuples."""

    num_source_rows: int
    num_rows: int
    speakers: list
    emotions: list
    neutral_emotions: tuple
    bad_rows: list = field(default_factory=list)

    @property
    def num_bad_rows(self) -> int:
        return len(self.bad_rows)


def index_dataset(dataset: datasets.Dataset, sampling_rate: int = 16000, neutral_emotions=("neutral",),
                  skip_bad_rows: bool = False, min_seconds: float = 0.1, bad_rows_log=None, num_proc=None,
                  skip_hint: str = "skip_bad_rows=True"):
    """Validate every row of a `sources.load_source` Dataset and add the index columns.

    Args:
        dataset: rows with `path`, `speaker`, `emotion` (strings; None for a missing label).
        sampling_rate: rate the audio is measured at, in Hz.
        neutral_emotions: emotion label(s) counted as neutral (a str or a collection of str).
        skip_bad_rows: drop bad rows (counted, logged) instead of raising `BadRowError`.
        min_seconds: clips shorter than this (after resampling) are bad, in seconds.
        bad_rows_log: optional CSV path listing dropped rows (written to a temporary name, then renamed).
        num_proc: processes for `Dataset.map` (decoding is the slow part).
        skip_hint: how the error message tells the caller to skip bad rows (a CLI passes its flag).
    Bad rows are named by their `where` column (the user's file and line, from `load_source`) when
    the dataset has one, else by row number. Repeated rows, and files listed under several speakers,
    are counted and logged (a warning), not dropped.
    Returns:
        (indexed Dataset, IndexReport)
    """
    missing = [c for c in ("path", "speaker", "emotion") if c not in dataset.column_names]
    if missing:
        raise ValueError(f"index_dataset: dataset lacks column(s) {missing}; build it with data_collators.load_source")
    if isinstance(neutral_emotions, str):
        neutral_emotions = (neutral_emotions,)
    neutral_emotions = tuple(neutral_emotions)
    min_samples = max(1, int(round(min_seconds * sampling_rate)))
    checked = dataset.map(_check_row, with_indices=True, num_proc=num_proc, desc="Checking audio",
                          fn_kwargs={"sampling_rate": sampling_rate, "min_samples": min_samples})
    reasons = checked["bad_reason"]
    where = dataset["where"] if "where" in dataset.column_names else [f"row {i}" for i in range(len(dataset))]
    bad = [(row, dataset[row]["path"], reason) for row, reason in enumerate(reasons) if reason]
    if bad and not skip_bad_rows:
        listed = "\n".join(f"  {where[row]} ({path}): {reason}" for row, path, reason in bad[:20])
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise BadRowError(f"{len(bad)} of {len(dataset)} rows cannot be used:\n{listed}{more}\n"
                          f"Fix them, or pass {skip_hint} to drop them (they are then listed in the log).")
    if bad:
        logger.warning("index_dataset: dropped %d of %d bad rows: %s", len(bad), len(dataset),
                       "; ".join(f"row {r} ({p}): {why}" for r, p, why in bad))
        if bad_rows_log is not None:
            _write_bad_rows(Path(bad_rows_log), bad)
        checked = checked.select([row for row, reason in enumerate(reasons) if not reason])
    if len(checked) == 0:
        raise BadRowError("index_dataset: no usable rows left")
    checked = checked.remove_columns("bad_reason")
    _warn_repeats(checked)

    speakers = sorted(set(checked["speaker"]))
    emotions = sorted(set(checked["emotion"]))
    speaker_ids = {name: i for i, name in enumerate(speakers)}
    emotion_ids = {name: i for i, name in enumerate(emotions)}
    neutral = {name.lower() for name in neutral_emotions}
    indexed = checked.map(
        lambda row, index: {"speaker_id": speaker_ids[row["speaker"]], "emotion_id": emotion_ids[row["emotion"]],
                            "is_neutral": row["emotion"].lower() in neutral, "row_index": index},
        with_indices=True, desc="Indexing")
    indexed = indexed.cast_column("speaker_id", datasets.ClassLabel(names=speakers))
    indexed = indexed.cast_column("emotion_id", datasets.ClassLabel(names=emotions))
    if not any(indexed["is_neutral"]):
        logger.warning("index_dataset: no row has a neutral emotion (%s); emotions present: %s",
                       ", ".join(neutral_emotions), ", ".join(emotions))
    report = IndexReport(len(dataset), len(indexed), speakers, emotions, neutral_emotions, bad)
    return indexed, report


def _warn_repeats(dataset):
    """Log repeated (path, speaker, emotion) rows and files listed under more than one speaker."""
    paths, speakers, emotions = dataset["path"], dataset["speaker"], dataset["emotion"]
    rows = list(zip(paths, speakers, emotions))
    repeated = len(rows) - len(set(rows))
    owners = {}
    for path, speaker in zip(paths, speakers):
        owners.setdefault(path, set()).add(speaker)
    shared = sorted(p for p, names in owners.items() if p and len(names) > 1)
    if repeated:
        logger.warning("index_dataset: %d repeated row(s) (same file, speaker and emotion) are kept, so those clips "
                       "weigh more in training; remove them if that is not intended", repeated)
    if shared:
        logger.warning("index_dataset: %d file(s) are listed under more than one speaker, e.g. %s (%s)", len(shared),
                       shared[0], ", ".join(sorted(owners[shared[0]])))
    return repeated, len(shared)


def _check_row(row, index, sampling_rate, min_samples):
    """One row -> its audio facts and `bad_reason` ('' when usable). Deterministic."""
    out = {"num_samples": 0, "duration_s": 0.0, "source_sampling_rate": 0, "source_channels": 0, "bad_reason": ""}
    for name in ("speaker", "emotion"):
        if row[name] is None or not str(row[name]).strip():
            out["bad_reason"] = f"missing {name}"
            return out
    if not row["path"]:
        out["bad_reason"] = "missing audio path"
        return out
    try:
        waveform = load_audio(row["path"], sampling_rate)
        info = soundfile.info(row["path"])
    except AudioError as error:
        out["bad_reason"] = str(error).split(": ", 1)[-1]
        return out
    out.update(num_samples=int(waveform.size), duration_s=waveform.size / sampling_rate,
               source_sampling_rate=int(info.samplerate), source_channels=int(info.channels))
    if waveform.size < min_samples:
        out["bad_reason"] = f"too short ({waveform.size} samples < {min_samples} at {sampling_rate} Hz)"
    elif not np.any(waveform):
        out["bad_reason"] = "digital silence (every sample is 0)"
    else:  # the tools' rule (modeling_eisv.speech_activity), so a clip they refuse is never trained on
        active = active_seconds(waveform, sampling_rate)
        if active < MIN_SPEECH_S:
            out["bad_reason"] = f"too little speech ({active:.2f} s of active signal < {MIN_SPEECH_S} s)"
    return out


def _write_bad_rows(path: Path, bad):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "path", "reason"])
        writer.writerows(bad)
    os.replace(handle.name, path)
