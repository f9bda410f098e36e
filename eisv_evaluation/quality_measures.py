"""Quality measures of a verification trial, for quality-measure calibration (QMF).

`llr = scale * score + offset + sum_k weight_k * q_k` (Thienpondt et al., "The IDLab VoxSRC-20/21
submission", 2021; NIST SRE practice): the q_k say how far a trial's recordings lie from the
conditions the calibration was fitted on, so the offset can move with them. Each measure is
symmetric in enrol and test (the mean of its value for the two files):

- `imposter_mean`: mean of the file's `top_n` highest cosine scores against a cohort of other
  speakers (the "imposter mean"; AS-norm's mean without its division);
- `mean_cosine`: cosine of the file's embedding to the cohort's mean embedding;
- `log_speech`: natural log of the file's active speech in seconds
  (`modeling_eisv.speech_activity.active_seconds`, floored at 0.1 s).

NumPy only. A study (`experiments/calibration_transfer.py`); no model folder carries such a
calibration: on the leave-one-corpus-out check none of these measures transferred better than the
linear calibration.
"""

import numpy as np

from .scoring import cohort_statistics

QUALITY_MEASURES = ("imposter_mean", "mean_cosine", "log_speech")
MIN_SPEECH_FOR_LOG_S = 0.1


def file_qualities(names, embeddings, speech_s, cohort, top_n: int) -> np.ndarray:
    """Quality measures of single files -> (N, len(names)) float64.

    Args:
        names: measures from `QUALITY_MEASURES`, in the order of the columns.
        embeddings: (N, D); speech_s: (N,) active speech, seconds (only `log_speech` reads it);
        cohort: (C, D) embeddings (`imposter_mean`, `mean_cosine` read it; None when neither is asked).
    """
    unknown = sorted(set(names) - set(QUALITY_MEASURES))
    if unknown:
        raise ValueError(f"unknown quality measure(s) {unknown}; choose from {QUALITY_MEASURES}")
    embeddings = np.asarray(embeddings, dtype=np.float64)
    embeddings = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    if cohort is None and {"imposter_mean", "mean_cosine"} & set(names):
        raise ValueError("the quality measures imposter_mean and mean_cosine need a cohort of embeddings")
    columns = []
    for name in names:
        if name == "imposter_mean":
            columns.append(cohort_statistics(embeddings, cohort, top_n)[0])
        elif name == "mean_cosine":
            cohort = np.asarray(cohort, dtype=np.float64)
            mean = (cohort / np.linalg.norm(cohort, axis=1, keepdims=True)).mean(0)
            columns.append(embeddings @ (mean / np.linalg.norm(mean)))
        else:
            columns.append(np.log(np.maximum(np.asarray(speech_s, dtype=np.float64).reshape(-1),
                                             MIN_SPEECH_FOR_LOG_S)))
    return np.column_stack(columns) if columns else np.zeros((len(embeddings), 0))


def trial_qualities(names, enroll, test, enroll_speech_s, test_speech_s, cohort, top_n: int) -> np.ndarray:
    """(N, D) enrol and test embeddings (and (N,) speech seconds) -> (N, len(names)): the mean of
    each measure over the trial's two files."""
    return 0.5 * (file_qualities(names, enroll, enroll_speech_s, cohort, top_n)
                  + file_qualities(names, test, test_speech_s, cohort, top_n))


__all__ = ["QUALITY_MEASURES", "file_qualities", "trial_qualities"]
