"""The validation split of training speakers and its trial list (eisv_training/validation_split.py)."""

import pytest
from datasets import Dataset

from eisv_training.validation_split import carve_validation_speakers, make_validation_trials


def _rows():
    rows = {"path": [], "speaker": [], "emotion": [], "corpus": []}
    for corpus, num_speakers in (("big", 20), ("small", 5)):
        for s in range(num_speakers):
            for i, emotion in enumerate(["neutral", "angry", "sad", "angry", "happy"]):
                rows["path"].append(f"/{corpus}/spk{s}/{i}.flac")
                rows["speaker"].append(f"{corpus}_spk{s}")
                rows["emotion"].append(emotion)
                rows["corpus"].append(corpus)
    return Dataset.from_dict(rows)


def test_split_is_disjoint_spread_over_corpora_and_fixed_by_its_seed():
    data = _rows()
    training, validation, names = carve_validation_speakers(data, 6, seed=0)
    assert set(training["speaker"]).isdisjoint(validation["speaker"])
    assert len(training) + len(validation) == len(data)
    assert sorted(set(validation["speaker"])) == names and len(names) == 6
    per_corpus = {c: len({s for s, k in zip(validation["speaker"], validation["corpus"]) if k == c})
                  for c in ("big", "small")}
    assert per_corpus == {"big": 4, "small": 2}  # proportional, and >= 2 where any (non-targets need two)
    assert carve_validation_speakers(data, 6, seed=0)[2] == names
    assert carve_validation_speakers(data, 6, seed=1)[2] != names


def test_split_refuses_sizes_that_leave_too_few_speakers():
    with pytest.raises(ValueError, match="validation_speakers=24"):
        carve_validation_speakers(_rows(), 24)


def test_trials_pair_one_speaker_for_targets_and_one_corpus_for_non_targets():
    _, validation, _ = carve_validation_speakers(_rows(), 6, seed=0)
    trials = make_validation_trials(validation, max_targets=40, seed=0)
    speaker = {p: s for p, s in zip(validation["path"], validation["speaker"])}
    emotion = {p: e for p, e in zip(validation["path"], validation["emotion"])}
    corpus = {p: c for p, c in zip(validation["path"], validation["corpus"])}
    targets, non_targets = trials[trials.label == 1], trials[trials.label == 0]
    assert len(targets) == 40 and len(non_targets) == 40
    assert all(speaker[a] == speaker[b] and a != b for a, b in zip(targets.enroll, targets.test))
    assert all(speaker[a] != speaker[b] and corpus[a] == corpus[b] for a, b in zip(non_targets.enroll, non_targets.test))
    for a, b, condition in zip(targets.enroll, targets.test, targets.condition):
        expected = ("same_emotion" if emotion[a] == emotion[b] else
                    "neutral_vs_emotional" if "neutral" in (emotion[a], emotion[b]) else "emotional_vs_emotional")
        assert condition == expected
    assert set(non_targets.condition) <= {"nontarget_same_emotion", "nontarget_cross_emotion"}
    again = make_validation_trials(validation, max_targets=40, seed=0)
    assert again.equals(trials)
