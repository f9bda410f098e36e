"""Helpers of the eisv_tools tests: a tiny saved model and a small real trial list."""

import csv
from pathlib import Path

import numpy as np
import torch

from _tiny import tiny_config
from modeling_eisv import EISVFeatureExtractor, EISVModel


def save_tiny_model(directory: Path, threshold=None, seed=0) -> Path:
    """A seeded, randomly initialised tiny ECAPA model + feature extractor saved to `directory`."""
    torch.manual_seed(seed)
    model = EISVModel(tiny_config(verification_threshold=threshold))
    model.save_pretrained(directory)
    EISVFeatureExtractor().save_pretrained(directory)
    return directory


def small_trials(shared_data: Path, output: Path, num_files=60, seed=0) -> Path:
    """The dev trials between a seeded sample of `num_files` files, written to `output` (~120 trials)."""
    with open(shared_data / "dev_trials.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    files = sorted({row["enroll"] for row in rows} | {row["test"] for row in rows})
    chosen = set(np.random.default_rng(seed).choice(files, num_files, replace=False))
    kept = [row for row in rows if row["enroll"] in chosen and row["test"] in chosen]
    with open(output, "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["corpus", "enroll", "test", "label", "condition"])
        writer.writeheader()
        writer.writerows(kept)
    return output


def some_clips(shared_data: Path, count=4) -> list:
    """`count` real clips: two speakers of EmoDB, two clips each (sorted paths)."""
    speakers = sorted((shared_data / "emodb" / "audio").iterdir())[:2]
    clips = []
    for speaker in speakers:
        clips += sorted(speaker.glob("*.flac"))[: count // 2]
    return clips
