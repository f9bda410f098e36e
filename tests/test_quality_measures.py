import numpy as np
import pytest

from eisv_evaluation.quality_measures import file_qualities, trial_qualities


def unit(rows):
    rows = np.asarray(rows, dtype=float)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


COHORT = unit([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])


def test_the_imposter_mean_is_the_mean_of_the_top_cohort_scores():
    embedding = unit([[1, 0.2, 0]])
    cosines = np.sort(COHORT @ embedding[0])[::-1]
    got = file_qualities(("imposter_mean",), embedding, [2.0], COHORT, top_n=2)
    assert got.shape == (1, 1) and got[0, 0] == pytest.approx(cosines[:2].mean())


def test_mean_cosine_and_log_speech():
    embedding = unit([[1, 1, 1], [1, 0, 0]])
    mean = COHORT.mean(0) / np.linalg.norm(COHORT.mean(0))
    got = file_qualities(("mean_cosine", "log_speech"), embedding, [4.0, 0.0], COHORT, top_n=2)
    assert got[:, 0] == pytest.approx(embedding @ mean)
    assert got[:, 1] == pytest.approx([np.log(4.0), np.log(0.1)])  # silence is floored, not -inf


def test_trial_qualities_do_not_depend_on_which_file_is_enrolled():
    rng = np.random.default_rng(0)
    enroll, test, speech = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)), rng.uniform(1, 5, (2, 5))
    names = ("imposter_mean", "mean_cosine", "log_speech")
    forward = trial_qualities(names, enroll, test, speech[0], speech[1], COHORT, 2)
    assert forward.shape == (5, 3)
    assert trial_qualities(names, test, enroll, speech[1], speech[0], COHORT, 2) == pytest.approx(forward)


def test_unknown_measures_and_a_missing_cohort_are_refused():
    with pytest.raises(ValueError, match="unknown quality measure.*snr.*imposter_mean"):
        file_qualities(("snr",), unit([[1, 0, 0]]), [1.0], COHORT, 2)
    with pytest.raises(ValueError, match="need a cohort"):
        file_qualities(("imposter_mean",), unit([[1, 0, 0]]), [1.0], None, 2)
