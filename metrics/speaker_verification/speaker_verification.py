"""Speaker-verification metric for 🤗 evaluate: EER, threshold at EER, normalised minDCF.

The same definitions as `eisv_evaluation/scoring.py` (`error_rates`, `compute_eer`,
`compute_min_dcf`), copied rather than imported, because of how evaluate loads a metric:
`evaluate.load(path)` copies this one script into its modules cache
(~/.cache/huggingface/modules/evaluate_modules/) and imports it from there, and it treats every
absolute import as a pip dependency. `from eisv_evaluation.scoring import ...` would make the metric
fail wherever eisv is not installed (it is not on PyPI; evaluate's hint would even say
`pip install modeling_eisv`), import torch and transformers to compute an EER, and keep the folder
from being pushed to the Hub as a metric. So the folder stands alone (NumPy, datasets, evaluate),
and `tests/test_metric.py` checks both halves of that: this script imports nothing else, and it
gives numbers identical to `eisv_evaluation.scoring` (exact equality, random scores with and without
ties, several priors and costs). Change both files together.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Equal error rate and minimum detection cost of a speaker-verification system.

Tied scores are grouped (the result does not depend on their order) and the operating point
"accept everything" is included; the EER interpolates linearly between the two operating points
where miss - false alarm changes sign (the same as interpolating scikit-learn's `roc_curve`).
minDCF = min over thresholds of c_miss * P_miss * p_target + c_fa * P_fa * (1 - p_target),
divided by min(c_miss * p_target, c_fa * (1 - p_target)). A trial is accepted when
score >= threshold.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[float]`): scores, higher = more likely the same speaker (e.g. cosine).
    references (`list[int]`): 1 for target (same speaker) trials, 0 for non-target trials.
    p_target (`float`, defaults to 0.01): prior of a target trial in the DCF.
    c_miss (`float`, defaults to 1): cost of a miss.
    c_fa (`float`, defaults to 1): cost of a false alarm.
Returns:
    eer (`float`): equal error rate in percent, 0 to 100.
    eer_threshold (`float`): score at the EER.
    min_dcf (`float`): normalised minimum detection cost (1.0 = no better than a trivial system).
    min_dcf_threshold (`float`): score at the minDCF.
Examples:
    >>> metric = evaluate.load("metrics/speaker_verification")
    >>> metric.compute(predictions=[0.1, 0.2, 0.8, 0.9], references=[0, 0, 1, 1])["eer"]
    0.0
"""

_CITATION = """
@misc{wespeaker_score_metrics, title={WeSpeaker: score_metrics.py}, howpublished={\\url{https://github.com/wenet-e2e/wespeaker}}}
"""


def error_rates(scores, labels):
    """-> miss (K+1,), false_alarm (K+1,), thresholds (K+1,) over the K distinct scores, from accept-all to reject-all."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if scores.shape != labels.shape:
        raise ValueError(f"predictions ({scores.size}) and references ({labels.size}) differ in length")
    if not np.isfinite(scores).all():
        raise ValueError(f"{int((~np.isfinite(scores)).sum())} prediction(s) are NaN or infinite")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("references must be 0 (non-target) or 1 (target)")
    labels = labels.astype(np.int64)
    if not (labels == 1).any():
        raise ValueError("no target trials (reference 1): EER and minDCF need both classes")
    if not (labels == 0).any():
        raise ValueError("no non-target trials (reference 0): EER and minDCF need both classes")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores, sorted_labels = scores[order], labels[order]
    run_end = np.append(np.flatnonzero(np.diff(sorted_scores) != 0), sorted_scores.size - 1)
    n_target = sorted_labels.sum()
    n_nontarget = sorted_labels.size - n_target
    miss = np.concatenate([[0.0], np.cumsum(sorted_labels)[run_end] / n_target])
    false_alarm = np.concatenate([[1.0], 1.0 - np.cumsum(1 - sorted_labels)[run_end] / n_nontarget])
    distinct = sorted_scores[run_end]
    return miss, false_alarm, np.concatenate([distinct, [np.nextafter(distinct[-1], np.inf)]])


def equal_error_rate(miss, false_alarm, thresholds):
    """-> (eer_percent, threshold), interpolated where miss - false_alarm changes sign."""
    diff = miss - false_alarm
    upper = int(np.flatnonzero(diff >= 0)[0])
    if diff[upper] == 0:
        return float(100.0 * miss[upper]), float(thresholds[upper])
    lower = upper - 1
    weight = -diff[lower] / (diff[upper] - diff[lower])
    return (float(100.0 * (miss[lower] + weight * (miss[upper] - miss[lower]))),
            float(thresholds[lower] + weight * (thresholds[upper] - thresholds[lower])))


def min_detection_cost(miss, false_alarm, thresholds, p_target, c_miss, c_fa):
    """-> (normalised minDCF, threshold)."""
    if not 0 < p_target < 1:
        raise ValueError(f"p_target must lie in (0, 1); got {p_target}")
    dcf = c_miss * miss * p_target + c_fa * false_alarm * (1 - p_target)
    best = int(np.argmin(dcf))
    return float(dcf[best] / min(c_miss * p_target, c_fa * (1 - p_target))), float(thresholds[best])


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SpeakerVerification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("float64"),
                                        "references": datasets.Value("int64")}),
            reference_urls=["https://github.com/wenet-e2e/wespeaker/blob/master/wespeaker/utils/score_metrics.py"],
        )

    def _compute(self, predictions, references, p_target=0.01, c_miss=1.0, c_fa=1.0):
        curve = error_rates(predictions, references)
        eer, eer_threshold = equal_error_rate(*curve)
        min_dcf, min_dcf_threshold = min_detection_cost(*curve, p_target, c_miss, c_fa)
        return {"eer": eer, "eer_threshold": eer_threshold, "min_dcf": min_dcf, "min_dcf_threshold": min_dcf_threshold}
