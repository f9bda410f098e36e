"""Scoring and error metrics of speaker verification: cosine, EER, minDCF, AS-norm.

NumPy only; evaluation code (eisv-eval, eisv-verify, training's scoring), not the model: the model package never
needed it at inference. Conventions everywhere:

- `scores` (trials,) float, higher = more likely the same speaker;
- `labels` (trials,) in {0, 1}, 1 = target (same speaker), 0 = non-target;
- a trial is accepted ("same speaker") when `score >= threshold`.

Error rates are computed as WeSpeaker's `score_metrics` does (sort + cumulative sums), with tied
scores grouped so that the result does not depend on their order, and with the operating point
"accept everything" included, so the curve runs from (miss 0, false alarm 1) to (miss 1, false
alarm 0). The EER is the linear interpolation between the two operating points where
miss - false alarm changes sign: the same number as interpolating scikit-learn's `roc_curve`.
"""

import numpy as np


class ScoringError(ValueError):
    """Scores or labels that give no meaningful metric; the message says what is wrong."""


BALANCED_GAP = 0.10  # a decision is called balanced when miss and false alarms lie within 10 points


def check_scores_and_labels(scores, labels):
    """Validate and convert: -> (scores (N,) float64, labels (N,) int64). Raises `ScoringError`."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels_in = np.asarray(labels).reshape(-1)
    if scores.shape != labels_in.shape:
        raise ScoringError(f"scores ({scores.size}) and labels ({labels_in.size}) differ in length")
    nan = np.flatnonzero(~np.isfinite(scores))
    if nan.size:
        raise ScoringError(f"{nan.size} score(s) are NaN or infinite (first at position {int(nan[0])})")
    if labels_in.dtype == bool:
        labels_in = labels_in.astype(np.int64)
    bad = np.flatnonzero(~np.isin(labels_in, (0, 1)))
    if bad.size:
        raise ScoringError(f"labels must be 0 or 1; position {int(bad[0])} holds {labels_in[bad[0]]!r}")
    labels_out = labels_in.astype(np.int64)
    if not (labels_out == 1).any():
        raise ScoringError("no target trials (label 1): EER and minDCF need both classes")
    if not (labels_out == 0).any():
        raise ScoringError("no non-target trials (label 0): EER and minDCF need both classes")
    return scores, labels_out


def error_rates(scores, labels):
    """Miss and false-alarm rates at every distinct threshold.

    Returns:
        miss_rate (K+1,), false_alarm_rate (K+1,), thresholds (K+1,) for the K distinct scores:
        point k accepts the trials with `score >= thresholds[k]`. Point 0 accepts everything
        (miss 0, false alarm 1); the last point rejects everything (threshold just above the
        highest score). Rates are fractions in [0, 1].
    """
    scores, labels = check_scores_and_labels(scores, labels)
    order = np.argsort(scores, kind="mergesort")
    sorted_scores, sorted_labels = scores[order], labels[order]
    # Last index of each run of equal scores: rejecting "<= that score" rejects the whole run.
    run_end = np.flatnonzero(np.diff(sorted_scores) != 0)
    run_end = np.append(run_end, sorted_scores.size - 1)
    targets_rejected = np.cumsum(sorted_labels)[run_end]
    nontargets_rejected = np.cumsum(1 - sorted_labels)[run_end]
    n_target, n_nontarget = sorted_labels.sum(), sorted_labels.size - sorted_labels.sum()
    miss = np.concatenate([[0.0], targets_rejected / n_target])
    false_alarm = np.concatenate([[1.0], 1.0 - nontargets_rejected / n_nontarget])
    distinct = sorted_scores[run_end]
    thresholds = np.concatenate([distinct, [np.nextafter(distinct[-1], np.inf)]])
    return miss, false_alarm, thresholds


def compute_eer(scores, labels):
    """Equal error rate -> (eer_percent, threshold).

    `eer_percent` in [0, 100]; `threshold` the score where miss = false alarm, interpolated
    between the two bracketing operating points (accept when `score >= threshold`).
    """
    miss, false_alarm, thresholds = error_rates(scores, labels)
    diff = miss - false_alarm  # rises from -1 to +1
    upper = int(np.flatnonzero(diff >= 0)[0])
    if diff[upper] == 0:
        return float(100.0 * miss[upper]), float(thresholds[upper])
    lower = upper - 1
    weight = -diff[lower] / (diff[upper] - diff[lower])
    eer = miss[lower] + weight * (miss[upper] - miss[lower])
    threshold = thresholds[lower] + weight * (thresholds[upper] - thresholds[lower])
    return float(100.0 * eer), float(threshold)


def balanced_threshold_band(scores, labels, max_gap: float = BALANCED_GAP):
    """The thresholds whose decisions (accept `score >= t`) keep |P_miss - P_fa| <= `max_gap`.

    P_miss rises and P_fa falls with the threshold, so these form one interval. Decisions change only
    at the scores (`error_rates`' operating points), so every t with `low < t <= high` gives the same
    decisions as one of the points inside. A calibration that is a monotone function of the score
    (linear, isotonic) meets the gap on these trials only by deciding inside it.

    Args:
        scores: (trials,); labels: (trials,) 0/1; max_gap: a fraction (0.10: ten points).
    Returns:
        `(low, high)` in score units, `low` exclusive (-inf when accepting everything already keeps the
        gap) and `high` inclusive, or None when no threshold keeps the gap.
    """
    miss, false_alarm, thresholds = error_rates(scores, labels)
    inside = np.flatnonzero(np.abs(miss - false_alarm) <= max_gap)
    if inside.size == 0:
        return None
    low = float(thresholds[inside[0] - 1]) if inside[0] > 0 else float("-inf")
    return low, float(thresholds[inside[-1]])


def compute_min_dcf(scores, labels, p_target=0.01, c_miss=1.0, c_fa=1.0):
    """Normalised minimum detection cost -> (min_dcf, threshold).

    DCF = c_miss * P_miss * p_target + c_fa * P_fa * (1 - p_target), minimised over thresholds and
    divided by the cost of the best trivial system, min(c_miss * p_target, c_fa * (1 - p_target)),
    so 1.0 means "no better than always accepting or always rejecting".
    """
    if not 0 < p_target < 1:
        raise ScoringError(f"p_target must lie in (0, 1); got {p_target}")
    miss, false_alarm, thresholds = error_rates(scores, labels)
    dcf = c_miss * miss * p_target + c_fa * false_alarm * (1 - p_target)
    best = int(np.argmin(dcf))
    return float(dcf[best] / min(c_miss * p_target, c_fa * (1 - p_target))), float(thresholds[best])


def _unit_rows(embeddings) -> np.ndarray:
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if embeddings.ndim == 1:
        embeddings = embeddings[None]
    return embeddings / np.maximum(np.linalg.norm(embeddings, axis=-1, keepdims=True), 1e-12)


def cosine_scores(enroll, test):
    """Row-wise cosine similarity: (N, D), (N, D) -> (N,) in [-1, 1] (1-D inputs count as N=1)."""
    enroll, test = _unit_rows(enroll), _unit_rows(test)
    if enroll.shape != test.shape:
        raise ScoringError(f"enroll {enroll.shape} and test {test.shape} embeddings differ in shape")
    return np.einsum("nd,nd->n", enroll, test)


def cohort_statistics(embeddings, cohort, top_n=300):
    """Mean and std of each embedding's `top_n` highest cosine scores against a cohort.

    Args:
        embeddings: (N, D); cohort: (C, D) embeddings of speakers not in the trials.
    Returns:
        mean (N,), std (N,) (std floored at 1e-6).
    """
    embeddings, cohort = _unit_rows(embeddings), _unit_rows(cohort)
    if embeddings.shape[1] != cohort.shape[1]:
        raise ScoringError(f"cohort embeddings are {cohort.shape[1]}-d, trial embeddings {embeddings.shape[1]}-d")
    top_n = max(1, min(int(top_n), cohort.shape[0]))
    means, stds = np.empty(len(embeddings)), np.empty(len(embeddings))
    for start in range(0, len(embeddings), 1024):  # bounded memory: 1024 x C scores at a time
        block = embeddings[start:start + 1024] @ cohort.T
        top = -np.partition(-block, top_n - 1, axis=1)[:, :top_n]
        means[start:start + 1024] = top.mean(1)
        stds[start:start + 1024] = np.maximum(top.std(1), 1e-6)
    return means, stds


def as_norm_scores(scores, enroll_stats, test_stats):
    """Adaptive symmetric normalisation (AS-norm1): 0.5 * ((s - mu_e) / sd_e + (s - mu_t) / sd_t).

    `enroll_stats`, `test_stats`: (mean (N,), std (N,)) from `cohort_statistics`.
    """
    scores = np.asarray(scores, dtype=np.float64)
    (mean_e, std_e), (mean_t, std_t) = enroll_stats, test_stats
    return 0.5 * ((scores - mean_e) / std_e + (scores - mean_t) / std_t)


def as_norm(enroll, test, cohort, top_n=300):
    """Cosine scores of (N, D) enroll/test pairs, AS-normalised against (C, D) cohort -> (N,)."""
    return as_norm_scores(cosine_scores(enroll, test), cohort_statistics(enroll, cohort, top_n),
                          cohort_statistics(test, cohort, top_n))
