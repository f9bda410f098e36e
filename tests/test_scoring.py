"""eisv_evaluation.scoring: EER, minDCF, cosine, AS-norm on hand-worked cases and against scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from eisv_evaluation.scoring import (ScoringError, as_norm, balanced_threshold_band, compute_eer, compute_min_dcf,
                                   cosine_scores, error_rates)


def sklearn_eer(scores, labels):
    """EER in percent by linear interpolation of scikit-learn's ROC where miss = false alarm."""
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1 - tpr
    i = np.flatnonzero(fnr - fpr <= 0)[0]  # fnr falls, fpr rises along the ROC
    if fnr[i] == fpr[i]:
        return 100 * fnr[i]
    a = (fnr[i - 1] - fpr[i - 1]) / ((fnr[i - 1] - fpr[i - 1]) - (fnr[i] - fpr[i]))
    return 100 * (fnr[i - 1] + a * (fnr[i] - fnr[i - 1]))


def test_perfect_separation_gives_zero_and_a_separating_threshold():
    eer, threshold = compute_eer([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])
    assert eer == 0.0 and 0.2 < threshold <= 0.8
    assert compute_min_dcf([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])[0] == 0.0


def test_inverted_scores_give_hundred():
    assert compute_eer([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1])[0] == 100.0
    assert compute_min_dcf([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1])[0] == 1.0


def test_all_tied_scores_give_fifty_whatever_the_order():
    assert compute_eer([0.5] * 4, [0, 1, 0, 1])[0] == 50.0
    assert compute_eer([0.5] * 4, [1, 1, 0, 0])[0] == 50.0


def test_hand_worked_interpolation():
    # targets 0.4, 0.6, 0.8; non-targets 0.1, 0.5, 0.7. Rejecting <= 0.4: miss 1/3, fa 2/3;
    # rejecting <= 0.5: miss 1/3, fa 1/3 -> the curves meet exactly at 33.33 %.
    eer, threshold = compute_eer([0.4, 0.6, 0.8, 0.1, 0.5, 0.7], [1, 1, 1, 0, 0, 0])
    assert eer == pytest.approx(100 / 3) and threshold == pytest.approx(0.6)
    # minDCF p=0.5: min over points of 0.5 * (miss + fa) / 0.5 -> 2/3 (e.g. miss 1/3, fa 1/3)
    assert compute_min_dcf([0.4, 0.6, 0.8, 0.1, 0.5, 0.7], [1, 1, 1, 0, 0, 0], p_target=0.5)[0] == pytest.approx(2 / 3)


@pytest.mark.parametrize("seed", range(5))
def test_eer_matches_sklearn_roc(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.normal(labels * 1.0, 1.0), 2)  # rounding makes ties
    assert compute_eer(scores, labels)[0] == pytest.approx(sklearn_eer(scores, labels), abs=1e-9)


def test_error_rates_run_from_accept_all_to_reject_all():
    miss, fa, thresholds = error_rates([0.3, 0.3, 0.9], [1, 0, 1])
    assert (miss[0], fa[0], miss[-1], fa[-1]) == (0, 1, 1, 0)
    assert np.all(np.diff(thresholds) > 0)


def test_min_dcf_is_normalised_and_at_most_one():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    assert compute_min_dcf(rng.normal(size=200), labels, p_target=0.01)[0] <= 1.0


@pytest.mark.parametrize("labels, message", [([1, 1, 1], "no non-target"), ([0, 0, 0], "no target")])
def test_one_class_missing_says_which(labels, message):
    with pytest.raises(ScoringError, match=message):
        compute_eer([0.1, 0.2, 0.3], labels)


def test_nan_scores_and_bad_labels_raise():
    with pytest.raises(ScoringError, match="NaN"):
        compute_eer([0.1, float("nan"), 0.3], [0, 1, 1])
    with pytest.raises(ScoringError, match="0 or 1"):
        compute_eer([0.1, 0.2, 0.3], [0, 1, 2])
    with pytest.raises(ScoringError, match="differ in length"):
        compute_eer([0.1, 0.2], [0, 1, 1])


def test_cosine_scores_rowwise():
    a = np.array([[1.0, 0.0], [1.0, 1.0]])
    b = np.array([[2.0, 0.0], [-1.0, -1.0]])
    np.testing.assert_allclose(cosine_scores(a, b), [1.0, -1.0])


def test_as_norm_matches_its_formula():
    """0.5 * ((s - mean_e) / std_e + (s - mean_t) / std_t) over each side's top-N cohort cosines."""
    rng = np.random.default_rng(0)
    cohort, enroll, test = rng.normal(size=(50, 8)), rng.normal(size=(3, 8)), rng.normal(size=(3, 8))
    raw = cosine_scores(enroll, test)

    def top_stats(x):
        top = np.sort(cosine_scores(np.repeat(x[None], 50, 0), cohort))[-10:]
        return top.mean(), top.std()

    expected = []
    for e, t, s in zip(enroll, test, raw):
        (me, se), (mt, st) = top_stats(e), top_stats(t)
        expected.append(0.5 * ((s - me) / se + (s - mt) / st))
    np.testing.assert_allclose(as_norm(enroll, test, cohort, top_n=10), expected, rtol=1e-10)
    with pytest.raises(ScoringError, match="-d"):
        as_norm(np.ones((1, 4)), np.ones((1, 4)), np.ones((3, 5)))


def error_gap(scores, labels, threshold):
    return abs(np.mean(scores[labels == 1] < threshold) - np.mean(scores[labels == 0] >= threshold))


def test_the_balanced_band_holds_the_equal_error_point_and_ends_where_the_gap_is_passed():
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(0.7, 0.1, 4000), rng.normal(0.3, 0.1, 4000)])
    labels = np.repeat([1, 0], 4000)
    low, high = balanced_threshold_band(scores, labels, max_gap=0.10)
    assert low < 0.5 < high  # the equal-error threshold of N(0.7, 0.1) against N(0.3, 0.1)
    # at t = 0.5 +- d, |miss - FA| = Phi(-2 + 10 d) - Phi(-2 - 10 d), which is 0.10 at d = 0.0736
    assert low == pytest.approx(0.5 - 0.0736, abs=0.01) and high == pytest.approx(0.5 + 0.0736, abs=0.01)
    assert error_gap(scores, labels, np.nextafter(low, 1)) <= 0.10 and error_gap(scores, labels, high) <= 0.10
    assert error_gap(scores, labels, low - 0.005) > 0.10 and error_gap(scores, labels, high + 0.005) > 0.10
    wider = balanced_threshold_band(scores, labels, max_gap=0.30)
    assert wider[0] < low and wider[1] > high


def test_no_band_where_every_threshold_leaves_the_errors_apart():
    # targets 0.3 and 0.6, one non-target 0.5: |miss - FA| is 1, 0.5, 0.5, 1 at the four decisions
    scores, labels = np.array([0.3, 0.6, 0.5]), np.array([1, 1, 0])
    assert balanced_threshold_band(scores, labels, max_gap=0.10) is None
    assert balanced_threshold_band(scores, labels, max_gap=0.5) == (0.3, 0.6)  # any t in (0.3, 0.6]: 0.4 too
    assert error_gap(scores, labels, 0.4) == 0.5 and error_gap(scores, labels, 0.3) == 1.0
    assert balanced_threshold_band(scores, labels, max_gap=1.0)[0] == float("-inf")  # accepting all keeps a gap of 1
