"""metrics/speaker_verification: loads offline with evaluate.load, hand-worked cases, agrees with scoring.py."""

from pathlib import Path

import numpy as np
import pytest

from modeling_eisv.scoring import compute_eer, compute_min_dcf

evaluate = pytest.importorskip("evaluate")
METRIC_DIR = Path(__file__).resolve().parents[1] / "metrics" / "speaker_verification"


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(str(METRIC_DIR))


def test_perfect_inverted_and_tied(metric):
    assert metric.compute(predictions=[0.1, 0.2, 0.8, 0.9], references=[0, 0, 1, 1])["eer"] == 0.0
    inverted = metric.compute(predictions=[0.9, 0.8, 0.2, 0.1], references=[0, 0, 1, 1])
    assert inverted["eer"] == 100.0 and inverted["min_dcf"] == 1.0
    assert metric.compute(predictions=[0.5] * 4, references=[1, 0, 1, 0])["eer"] == 50.0


def test_hand_worked_threshold(metric):
    result = metric.compute(predictions=[0.4, 0.6, 0.8, 0.1, 0.5, 0.7], references=[1, 1, 1, 0, 0, 0], p_target=0.5)
    assert result["eer"] == pytest.approx(100 / 3)
    assert result["eer_threshold"] == pytest.approx(0.6)
    assert result["min_dcf"] == pytest.approx(2 / 3)


def test_one_class_missing_is_a_clear_error(metric):
    with pytest.raises(ValueError, match="no non-target"):
        metric.compute(predictions=[0.1, 0.2], references=[1, 1])
    with pytest.raises(ValueError, match="no target"):
        metric.compute(predictions=[0.1, 0.2], references=[0, 0])


def test_nan_is_an_error(metric):
    with pytest.raises(ValueError, match="NaN"):
        metric.compute(predictions=[0.1, float("nan")], references=[0, 1])


@pytest.mark.parametrize("seed", range(3))
def test_agrees_with_modeling_eisv_scoring(metric, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 400)
    scores = np.round(rng.normal(labels * 0.8, 1.0), 2)
    for p_target in (0.01, 0.05):
        result = metric.compute(predictions=scores, references=labels, p_target=p_target)
        eer, threshold = compute_eer(scores, labels)
        assert result["eer"] == pytest.approx(eer, abs=1e-9)
        assert result["eer_threshold"] == pytest.approx(threshold, abs=1e-9)
        assert result["min_dcf"] == pytest.approx(compute_min_dcf(scores, labels, p_target)[0], abs=1e-9)
