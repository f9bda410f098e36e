import numpy as np
import pytest

from eisv_evaluation.calibration import actual_dcf, cllr, fit_linear_calibration, fit_quality_calibration, min_cllr
from modeling_eisv import EISVConfig
from modeling_eisv.calibration import apply_calibration, bayes_threshold


def gaussian_trials(n=4000, seed=0):
    """Target scores N(0.7, 0.1), non-targets N(0.3, 0.1): the true LLR is linear, 40 * s - 20."""
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(0.7, 0.1, n), rng.normal(0.3, 0.1, n)])
    labels = np.concatenate([np.ones(n, int), np.zeros(n, int)])
    return scores, labels


def test_the_fit_recovers_the_true_llr_and_improves_cllr():
    scores, labels = gaussian_trials()
    scale, offset = fit_linear_calibration(scores, labels)
    assert scale == pytest.approx(40, rel=0.1) and offset == pytest.approx(-20, rel=0.1)
    llr = apply_calibration(scores, scale, offset)
    assert cllr(llr, labels) == pytest.approx(min_cllr(scores, labels), abs=0.02)
    assert cllr(scores, labels) > cllr(llr, labels)  # raw cosines are no LLRs
    assert min_cllr(scores, labels) <= cllr(llr, labels)


def test_the_fit_does_not_depend_on_the_class_balance():
    scores, labels = gaussian_trials()
    keep = np.r_[np.arange(4000), 4000 + np.arange(1000)]  # 4 targets per non-target
    balanced = fit_linear_calibration(scores, labels)
    skewed = fit_linear_calibration(scores[keep], labels[keep])
    assert skewed == pytest.approx(balanced, rel=0.15, abs=0.5)


def test_decision_threshold_follows_the_prior():
    assert bayes_threshold(0.5) == 0.0
    assert bayes_threshold(0.01) == pytest.approx(np.log(99))
    scores, labels = gaussian_trials()
    llr = apply_calibration(scores, *fit_linear_calibration(scores, labels))
    assert actual_dcf(llr, labels, 0.01) < 1.0


def test_scores_that_rank_the_wrong_way_are_refused():
    scores, labels = gaussian_trials()
    with pytest.raises(ValueError, match="non-positive scale"):
        fit_linear_calibration(-scores, labels)


def test_config_fields_are_checked_together():
    with pytest.raises(ValueError, match="together"):
        EISVConfig(calibration_scale=2.0)
    with pytest.raises(ValueError, match="calibration_scores"):
        EISVConfig(calibration_scale=2.0, calibration_offset=0.0, calibration_scores="plda")
    assert not EISVConfig().is_calibrated


def test_the_quality_fit_recovers_known_coefficients():
    # s | label, q ~ N(mu_label + 0.5 q, 0.1): the true LLR is 40 * (s - 0.5 q) - 20 = 40 s - 20 q - 20.
    rng = np.random.default_rng(0)
    labels = np.repeat([1, 0], 40000)
    quality = rng.normal(0, 0.2, labels.size)
    scores = np.where(labels == 1, 0.7, 0.3) + 0.5 * quality + rng.normal(0, 0.1, labels.size)
    scale, offset, weights = fit_quality_calibration(scores, quality[:, None], labels)
    assert (scale, offset, weights[0]) == pytest.approx((40, -20, -20), rel=0.05)
    assert fit_quality_calibration(scores, None, labels)[:2] == pytest.approx(fit_linear_calibration(scores, labels))


def test_the_quality_fit_refuses_qualities_of_the_wrong_shape():
    scores, labels = gaussian_trials(100)
    with pytest.raises(ValueError, match=r"\(trials, K\) = \(200, K\)"):
        fit_quality_calibration(scores, np.zeros(200), labels)
    with pytest.raises(ValueError, match="NaN"):
        fit_quality_calibration(scores, np.full((200, 1), np.nan), labels)
