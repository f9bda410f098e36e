"""metrics/speaker_verification: loads offline with evaluate.load, hand-worked cases, stands alone, and gives
numbers identical to eisv_evaluation.scoring (its copy of the same definitions)."""

import sys
from pathlib import Path

import numpy as np
import pytest

from eisv_evaluation.scoring import compute_eer, compute_min_dcf, error_rates

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


def test_metric_script_imports_only_numpy_datasets_evaluate():
    """Why the metric keeps its own copy: evaluate.load treats each import of the script as a pip dependency."""
    from evaluate.loading import get_imports

    imports = get_imports(str(METRIC_DIR / "speaker_verification.py"))
    assert {(kind, name) for kind, name, _, _ in imports} == {("library", "datasets"), ("library", "evaluate"),
                                                              ("library", "numpy")}


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("decimals", [2, None], ids=["ties", "no-ties"])
def test_agrees_with_modeling_eisv_scoring(metric, seed, decimals):
    """Identical numbers (==, not approx) to eisv_evaluation.scoring on random scores, curve included."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 400)
    scores = rng.normal(labels * 0.8, 1.0)
    if decimals is not None:
        scores = np.round(scores, decimals)
    module = sys.modules[type(metric).__module__]  # the script as evaluate imported it
    for ours, theirs in zip(module.error_rates(scores, labels), error_rates(scores, labels)):
        np.testing.assert_array_equal(ours, theirs)
    for p_target, c_miss, c_fa in ((0.01, 1.0, 1.0), (0.05, 1.0, 1.0), (0.5, 1.0, 1.0), (0.01, 10.0, 1.0)):
        result = metric.compute(predictions=scores, references=labels, p_target=p_target, c_miss=c_miss, c_fa=c_fa)
        assert (result["eer"], result["eer_threshold"]) == compute_eer(scores, labels)
        assert (result["min_dcf"], result["min_dcf_threshold"]) == compute_min_dcf(scores, labels, p_target,
                                                                                   c_miss, c_fa)
