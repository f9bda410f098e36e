"""experiments/emotion_leakage.py: the probe on synthetic embeddings, and the script on a tiny synthetic shared_data."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from _tiny import voice_like
from _tools import save_tiny_model
from eisv_io.errors import ToolError
from experiments import emotion_leakage

# Per corpus: emotion -> files per speaker; 3 speakers each. emodb: 12 files, majority 6/12, 3 classes;
# ravdess: 12 files, 4 balanced classes.
PLAN = {"emodb": {"neutral": 2, "angry": 1, "sad": 1}, "ravdess": {"neutral": 1, "calm": 1, "happy": 1, "sad": 1}}


def write_csv(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def shared_data(tmp_path_factory) -> Path:
    """dev_trials.csv over 24 one-second FLAC clips, with <corpus>/metadata.csv as in shared/data."""
    root = tmp_path_factory.mktemp("shared_data")
    trials, seed = [], 0
    for corpus, emotions in PLAN.items():
        metadata, paths = [], []
        for speaker in (f"{corpus}_{i}" for i in range(3)):
            (root / corpus / "audio" / speaker).mkdir(parents=True)
            for emotion, count in emotions.items():
                for take in range(count):
                    seed += 1
                    name = f"audio/{speaker}/{emotion}_{take}.flac"
                    soundfile.write(root / corpus / name, voice_like(1.0, seed), 16000)
                    metadata.append({"file_name": name, "corpus": corpus, "speaker": speaker, "gender": "F",
                                     "emotion": emotion, "text": "t", "duration_s": 1.0})
                    paths.append(f"{corpus}/{name}")
        write_csv(root / corpus / "metadata.csv", metadata)
        trials += [{"corpus": corpus, "enroll": path, "test": paths[i - 1], "label": 0, "condition": "x"}
                   for i, path in enumerate(paths)]
    write_csv(root / "dev_trials.csv", trials)
    return root


@pytest.fixture(scope="module")
def leakage(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    models = [save_tiny_model(folder / "a", seed=0), save_tiny_model(folder / "b", seed=1)]
    out = folder / "out"
    assert emotion_leakage.main(["--model", f"no fine-tuning={models[0]}", "--model", f"full recipe={models[1]}",
                                 "--shared_data", str(shared_data), "--output_dir", str(out), "--device", "cpu"]) == 0
    return out


def test_json_has_every_model_and_corpus_with_correct_chance(leakage):
    results = json.loads((leakage / "leakage.json").read_text())
    assert list(results["models"]) == ["no fine-tuning", "full recipe"] and results["num_files"] == 24
    for result in results["models"].values():
        emodb, ravdess, pooled = result["by_corpus"]["emodb"], result["by_corpus"]["ravdess"], result["pooled"]
        assert (emodb["num_files"], emodb["num_speakers"], emodb["num_classes"]) == (12, 3, 3)
        assert (ravdess["num_files"], ravdess["num_speakers"], ravdess["num_classes"]) == (12, 3, 4)
        assert emodb["chance_majority"] == pytest.approx(0.5) and emodb["chance_uniform"] == pytest.approx(1 / 3)
        assert ravdess["chance_majority"] == ravdess["chance_uniform"] == pytest.approx(0.25)
        assert pooled["chance_majority"] == pytest.approx(0.375) and pooled["num_files"] == 24
        for metrics in (emodb, ravdess, pooled):
            assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["balanced_accuracy"] <= 1
        assert pooled["accuracy"] == pytest.approx((emodb["accuracy"] + ravdess["accuracy"]) / 2)


def test_writes_table_and_figures(leakage):
    table = (leakage / "leakage.md").read_text()
    assert "| model | emodb acc (bal.) | ravdess acc (bal.) | pooled acc (bal.) |" in table
    assert "| full recipe |" in table
    assert "| *chance: majority class (1/classes)* | 50.0 (33.3) | 25.0 (25.0) |" in table
    for name in ("leakage.png", "projection.png"):
        assert (leakage / name).read_bytes()[:4] == b"\x89PNG" and (leakage / name).stat().st_size > 10_000


def test_a_trial_file_missing_from_metadata_is_named(shared_data, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    for corpus in PLAN:
        rows = list(csv.DictReader((shared_data / corpus / "metadata.csv").read_text().splitlines()))
        (broken / corpus).mkdir()
        write_csv(broken / corpus / "metadata.csv", [r for r in rows if r["file_name"] != "audio/emodb_1/sad_0.flac"])
    (broken / "dev_trials.csv").write_text((shared_data / "dev_trials.csv").read_text())
    with pytest.raises(ToolError, match="emodb/audio/emodb_1/sad_0.flac: trial file not listed"):
        emotion_leakage.read_test_files(broken)
    assert emotion_leakage.main(["--model", "m=unused", "--shared_data", str(broken), "--output_dir",
                                 str(tmp_path / "out")]) == 1
    assert "emodb_1/sad_0.flac" in capsys.readouterr().err


def test_subset_is_seeded_and_capped_per_speaker(shared_data):
    files = emotion_leakage.read_test_files(shared_data, max_files_per_speaker=2, seed=3)
    assert len(files) == 12 and all((files.speaker == s).sum() == 2 for s in set(files.speaker))
    again = emotion_leakage.read_test_files(shared_data, max_files_per_speaker=2, seed=3)
    assert list(files.path) == list(again.path)


def synthetic_embeddings(signal, seed=0, speakers=6, emotions=4, takes=5, size=16):
    """(files, size) embeddings = speaker offset + `signal` x emotion direction + noise; labels."""
    rng = np.random.default_rng(seed)
    speaker_offsets, emotion_directions = rng.normal(size=(speakers, size)), rng.normal(size=(emotions, size))
    speaker, emotion = np.meshgrid(np.arange(speakers), np.repeat(np.arange(emotions), takes), indexing="ij")
    speaker, emotion = speaker.ravel(), emotion.ravel()
    noise = 0.3 * rng.normal(size=(speaker.size, size))
    embeddings = speaker_offsets[speaker] + signal * emotion_directions[emotion] + noise
    return embeddings, emotion.astype(str), speaker.astype(str)


def test_probe_reads_linearly_encoded_emotion_and_not_noise():
    encoded = emotion_leakage.probe_emotion(*synthetic_embeddings(signal=2.0))
    assert encoded["accuracy"] > 0.95 and encoded["balanced_accuracy"] > 0.95
    assert (encoded["num_files"], encoded["num_speakers"], encoded["num_classes"]) == (120, 6, 4)
    noise = emotion_leakage.probe_emotion(*synthetic_embeddings(signal=0.0))
    assert noise["chance_uniform"] == noise["chance_majority"] == 0.25
    assert abs(noise["accuracy"] - 0.25) < 0.12


def test_probe_needs_two_speakers():
    embeddings, emotions, _ = synthetic_embeddings(signal=1.0)
    with pytest.raises(ToolError, match="2 speakers"):
        emotion_leakage.probe_emotion(embeddings, emotions, np.zeros(len(emotions)))
