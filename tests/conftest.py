"""Shared fixtures: the real corpora (or a skip) and a tiny synthetic emotional corpus on disk."""

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"

# Synthetic "emotions": each is a tone of its own pitch and loudness, so tests can tell them apart.
TONES = {"neutral": (200.0, 0.05), "angry": (700.0, 0.4), "sad": (1500.0, 0.1)}


@pytest.fixture
def shared_data() -> Path:
    """The real corpora next to the repository (`<repo>/../shared/data`), or skip."""
    if not (SHARED_DATA / "emodb" / "metadata.csv").is_file():
        pytest.skip(f"real emotional speech not found at {SHARED_DATA} (see shared/data/README.md)")
    return SHARED_DATA


def tone(emotion, seconds, seed, rate=16000):
    """(samples,) float32: the emotion's tone with a slow loudness wobble and a little noise."""
    freq, amp = TONES[emotion]
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(1, 3) * t + rng.uniform(0, 6))
    return (amp * envelope * np.sin(2 * np.pi * freq * t) + 0.002 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture
def synthetic_corpus(tmp_path) -> Path:
    """AudioFolder with 4 speakers: spk0-1 neutral/angry/sad, spk2 angry/sad (no neutral), spk3
    neutral only; 3 clips of 1.5-2.5 s per speaker and emotion."""
    plan = {"spk0": ["neutral", "angry", "sad"], "spk1": ["neutral", "angry", "sad"],
            "spk2": ["angry", "sad"], "spk3": ["neutral"]}
    root = tmp_path / "synthetic"
    rows, seed = [], 0
    for speaker, emotions in plan.items():
        (root / "audio" / speaker).mkdir(parents=True)
        for emotion in emotions:
            for take in range(3):
                seed += 1
                name = f"audio/{speaker}/{emotion}_{take}.wav"
                soundfile.write(root / name, tone(emotion, 1.5 + 0.5 * take, seed), 16000, subtype="PCM_16")
                rows.append({"file_name": name, "speaker": speaker, "emotion": emotion})
    with open(root / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["file_name", "speaker", "emotion"])
        writer.writeheader()
        writer.writerows(rows)
    return root
