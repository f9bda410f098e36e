"""Fitting and measuring score calibration: trial scores -> log-likelihood ratios, Cllr, actual DCF.

Linear logistic-regression calibration as the BOSARIS toolkit and WeSpeaker do it:
`llr = scale * score + offset` (natural log), fitted by maximum likelihood on labelled trials with
targets and non-targets weighted to an effective prior of 0.5 (each class counts as much in
total), so the fitted logit is the LLR itself. NumPy only, except the fit (scikit-learn, imported
when called). Conventions as `scoring`: labels 1 = target. Applying a fitted calibration and the
decision at a prior (`apply_calibration`, `bayes_threshold`) are part of inference and live in
`modeling_eisv.calibration`, which the pipeline uses.

A calibrated system decides "same speaker" at target prior `p_target` (costs C_miss = C_fa = 1)
when `llr >= log((1 - p_target) / p_target)`, the Bayes threshold; at 0.5 that is `llr >= 0`.
`cllr` is the cross-entropy (bits) of those LLRs, 0 perfect and 1 the cost of LLR 0 everywhere;
`min_cllr` is the Cllr after the best monotone recalibration (PAV), so `cllr - min_cllr` is the
loss due to miscalibration alone.
"""

import numpy as np

from modeling_eisv.calibration import DEFAULT_P_TARGET, apply_calibration, bayes_threshold

from .scoring import check_scores_and_labels


def fit_linear_calibration(scores, labels, prior: float = 0.5):
    """(trials,) scores, 0/1 labels -> `(scale, offset)` with `llr = scale * score + offset`.

    Unregularised logistic regression with the classes weighted to the effective `prior`; the
    prior's log-odds is then removed from the offset so the result is an LLR. Raises `ValueError`
    when the scores do not rank targets above non-targets (a non-positive scale).
    """
    scale, offset, _ = fit_quality_calibration(scores, None, labels, prior)
    return scale, offset


def fit_quality_calibration(scores, qualities, labels, prior: float = 0.5):
    """Quality-measure calibration: `llr = scale * score + offset + qualities @ weights`.

    Args:
        scores: (trials,); qualities: (trials, K) quality measures of each trial (K may be 0, or
            None: the linear calibration); labels: (trials,) 0/1.
    Returns:
        `(scale, offset, weights (K,) float64)`, fitted as `fit_linear_calibration` fits (logistic
        regression at the effective `prior`, the prior's log-odds removed from the offset).
    Raises `ValueError` for a non-positive scale or qualities of the wrong shape or not finite.
    """
    from sklearn.linear_model import LogisticRegression

    scores, labels = check_scores_and_labels(scores, labels)
    qualities = np.zeros((scores.size, 0)) if qualities is None else np.asarray(qualities, dtype=np.float64)
    if qualities.ndim != 2 or qualities.shape[0] != scores.size:
        raise ValueError(f"qualities must be (trials, K) = ({scores.size}, K); got shape {qualities.shape}")
    if not np.isfinite(qualities).all():
        raise ValueError("qualities hold NaN or infinite values")
    n_target, n_nontarget = labels.sum(), labels.size - labels.sum()
    weights = np.where(labels == 1, prior / n_target, (1 - prior) / n_nontarget) * labels.size
    features = np.column_stack([scores, qualities])
    fit = LogisticRegression(C=1e10, tol=1e-10, max_iter=10000).fit(features, labels, sample_weight=weights)
    scale, offset = float(fit.coef_[0, 0]), float(fit.intercept_[0]) - float(np.log(prior / (1 - prior)))
    if not scale > 0:
        raise ValueError(f"the calibration trials give a non-positive scale ({scale:.3g}): their scores do not "
                         f"rank targets above non-targets")
    return scale, offset, fit.coef_[0, 1:].astype(np.float64)


def cllr(llrs, labels) -> float:
    """Cross-entropy cost of LLRs in bits (Brümmer): mean over targets of log2(1 + e^-llr) and over
    non-targets of log2(1 + e^llr), averaged over the two classes."""
    llrs, labels = check_scores_and_labels(llrs, labels)
    target = np.logaddexp(0, -llrs[labels == 1]).mean()
    nontarget = np.logaddexp(0, llrs[labels == 0]).mean()
    return float((target + nontarget) / (2 * np.log(2)))


def min_cllr(scores, labels) -> float:
    """Cllr after the optimal monotone calibration of `scores` (pool-adjacent-violators)."""
    from sklearn.isotonic import IsotonicRegression

    scores, labels = check_scores_and_labels(scores, labels)
    posterior = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True).fit_transform(scores, labels)
    n_target, n_nontarget = labels.sum(), labels.size - labels.sum()
    with np.errstate(divide="ignore"):
        llrs = np.log(posterior) - np.log1p(-posterior) - np.log(n_target / n_nontarget)
    # PAV gives posterior 1 (0) only to bins of targets (non-targets) alone, whose cost is then 0.
    target = np.logaddexp(0, -llrs[labels == 1]).mean()
    nontarget = np.logaddexp(0, llrs[labels == 0]).mean()
    return float((target + nontarget) / (2 * np.log(2)))


def decision_error_rates(llrs, labels, p_target: float = DEFAULT_P_TARGET):
    """-> (miss_rate, false_alarm_rate) of the decisions `llr >= bayes_threshold(p_target)`, fractions."""
    llrs, labels = check_scores_and_labels(llrs, labels)
    accept = llrs >= bayes_threshold(p_target)
    return float((~accept[labels == 1]).mean()), float(accept[labels == 0].mean())


def actual_dcf(llrs, labels, p_target: float = 0.01) -> float:
    """Normalised detection cost of the calibrated decisions at `p_target` (compare with minDCF)."""
    miss, false_alarm = decision_error_rates(llrs, labels, p_target)
    return float((p_target * miss + (1 - p_target) * false_alarm) / min(p_target, 1 - p_target))


def calibration_summary(scores, labels, scale=None, offset=None, p_targets=(0.01, 0.05)) -> dict:
    """`min_cllr` always; with a calibration also `cllr`, `actual_dcf_<p>` and the miss / false-alarm
    rates (percent) of the decision at equal priors (`miss_at_p0.5`, `false_alarm_at_p0.5`)."""
    out = {"min_cllr": min_cllr(scores, labels)}
    if scale is None:
        return out
    llrs = apply_calibration(scores, scale, offset)
    out["cllr"] = cllr(llrs, labels)
    for p_target in p_targets:
        out[f"actual_dcf_{p_target}"] = actual_dcf(llrs, labels, p_target)
    miss, false_alarm = decision_error_rates(llrs, labels, 0.5)
    out["miss_at_p0.5"], out["false_alarm_at_p0.5"] = 100 * miss, 100 * false_alarm
    return out


__all__ = ["fit_linear_calibration", "fit_quality_calibration", "cllr", "min_cllr", "decision_error_rates", "actual_dcf", "calibration_summary"]
