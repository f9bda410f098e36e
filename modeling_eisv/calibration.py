"""Calibrated decisions at inference: scores -> log-likelihood ratios, and the threshold at a stated prior.

A calibrated model folder holds `calibration_scale` and `calibration_offset` in its config, with
`llr = scale * score + offset` (natural log). It decides "same speaker" at target prior `p_target`
(costs C_miss = C_fa = 1) when `llr >= log((1 - p_target) / p_target)`, the Bayes threshold; at
0.5 that is `llr >= 0`. The pipeline and eisv-verify decide with these. Fitting the calibration and
measuring it (Cllr, actual DCF) is evaluation: `eisv_evaluation.calibration`.
"""

import numpy as np

DEFAULT_P_TARGET = 0.5  # equal priors and costs: miss and false-alarm rates balanced


def bayes_threshold(p_target: float) -> float:
    """LLR threshold of the minimum-cost decision at target prior `p_target` (C_miss = C_fa = 1)."""
    if not 0 < p_target < 1:
        raise ValueError(f"p_target must lie in (0, 1); got {p_target}")
    return float(np.log((1 - p_target) / p_target))


def score_threshold(scale: float, offset: float, p_target: float = DEFAULT_P_TARGET) -> float:
    """The score at which `llr = scale * score + offset` reaches the Bayes threshold at `p_target`:
    the calibrated decision accepts scores at or above it."""
    return float((bayes_threshold(p_target) - offset) / scale)


def apply_calibration(scores, scale: float, offset: float) -> np.ndarray:
    """(trials,) scores -> (trials,) LLRs."""
    return float(scale) * np.asarray(scores, dtype=np.float64) + float(offset)


__all__ = ["DEFAULT_P_TARGET", "bayes_threshold", "score_threshold", "apply_calibration"]
