"""experiments/decision_feasibility.py: whether one threshold can keep miss and false alarms within
10 points on every corpus, and the committed measurements."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eisv_evaluation.calibration import decision_error_rates
from eisv_evaluation.trials import read_trials
from experiments import decision_feasibility
from experiments.decision_feasibility import Scorer, common_band, feasibility
from modeling_eisv.calibration import apply_calibration

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results" / "decisions"


def test_the_common_band_is_the_intersection_and_names_the_sets_furthest_apart():
    together = common_band({"a": (0.5, 0.7), "b": (0.6, 0.8), "c": (0.55, 0.9)})
    assert together["feasible"] and (together["low"], together["high"]) == (0.6, 0.7)
    apart = common_band({"a": (0.50, 0.54), "b": (0.60, 0.64), "c": (0.52, 0.62)})
    assert not apart["feasible"] and apart["apart"] == ["a", "b"]
    assert apart["gap"] == pytest.approx(0.06) and apart["gap_in_widths"] == pytest.approx(0.06 / 0.04)
    touching = common_band({"a": (0.5, 0.6), "b": (0.6, 0.7)})  # low is exclusive: no t with 0.6 < t <= 0.6
    assert not touching["feasible"] and touching["gap"] == 0.0
    assert common_band({"a": (float("-inf"), 0.6), "b": (0.5, 0.7)})["feasible"]
    assert common_band({"a": (0.5, 0.6), "b": None}) == {
        "feasible": False, "gap": None, "gap_in_widths": None, "low": None, "high": None, "apart": ["b"]}


class Files:
    """The `FileTable` interface over a dict of embeddings."""

    def __init__(self, vectors):
        self.vectors = vectors

    def get(self, keys):
        return np.stack([self.vectors[k] for k in keys]), np.ones(len(keys))


def corpus(name, shared, rng, speakers=8, files=6, dim=32):
    """Unit embeddings: a corpus-wide component of weight `shared` (its channel), a speaker and noise.
    -> (vectors, trials: every pair of files)."""
    channel, vectors = rng.normal(size=dim), {}
    for s in range(speakers):
        voice = rng.normal(size=dim)
        for f in range(files):
            x = shared * channel + voice + 0.8 * rng.normal(size=dim)
            vectors[f"{name}/spk{s}/{f}.flac"] = x / np.linalg.norm(x)
    keys = sorted(vectors)
    rows = [{"corpus": name, "enroll": a, "test": b, "label": int(a.split("/")[1] == b.split("/")[1]),
             "condition": "c"} for i, a in enumerate(keys) for b in keys[i + 1:]]
    return vectors, read_trials(pd.DataFrame(rows))


def test_corpora_whose_scores_sit_apart_have_no_common_threshold_and_the_own_decision_is_reported():
    rng = np.random.default_rng(0)
    quiet, quiet_trials = corpus("quiet", 0.0, rng)
    loud, loud_trials = corpus("loud", 2.0, rng)  # a strong shared channel lifts every score of the corpus
    scorer = Scorer(Files({**quiet, **loud}), cohort_keys=list(quiet)[:10], top_n=5)
    sets = {"quiet": quiet_trials, "loud": loud_trials}
    out = feasibility(scorer, sets, calibration=(10.0, -5.0))
    plain = out["alpha_0.0"]
    assert not plain["feasible"] and set(plain["apart"]) == {"quiet", "loud"} and plain["gap"] > 0
    assert plain["sets"]["loud"]["band"][0] > plain["sets"]["quiet"]["band"][1]
    scores = scorer(loud_trials)
    miss, false_alarm = decision_error_rates(apply_calibration(scores, 10.0, -5.0), loud_trials.label)
    assert plain["sets"]["loud"]["miss"] == pytest.approx(100 * miss)
    assert plain["sets"]["loud"]["false_alarm"] == pytest.approx(100 * false_alarm)
    assert set(out) == {f"alpha_{a}" for a in decision_feasibility.ALPHAS} | {"as_norm"}
    same = feasibility(scorer, {"quiet": quiet_trials, "again": quiet_trials})["alpha_0.0"]
    assert same["feasible"] and "miss" not in same["sets"]["quiet"]
    # the unlabelled shift moves the threshold by each corpus's mean pair score, relative to the val_ sets'
    shifted = feasibility(scorer, {"val_quiet": quiet_trials, "loud": loud_trials}, calibration=(10.0, -5.0))
    shift = shifted["unlabelled_shift"]["sets"]
    assert shift["val_quiet"]["threshold"] == pytest.approx(0.5)
    assert shift["loud"]["threshold"] - 0.5 == pytest.approx(scorer.pair_mean(loud_trials) - scorer.pair_mean(quiet_trials))


@pytest.mark.parametrize("folder", ["eisv-ge2e", ".", "vad-trained"])
def test_the_committed_verdicts_follow_from_their_bands(folder):
    results = json.loads((RESULTS / folder / "decision_feasibility.json").read_text())
    for front_end, rows in results["front_ends"].items():
        for variant, row in rows.items():
            if variant == "unlabelled_shift":
                assert set(row["sets"]) == set(rows["alpha_0.0"]["sets"]) and row["reference_sets"]
                continue
            assert {"emodb", "ravdess", "neutral"} <= set(row["sets"]) and any(
                name.startswith("val_") for name in row["sets"])
            lows = [cell["band"][0] for cell in row["sets"].values()]
            highs = [cell["band"][1] for cell in row["sets"].values()]
            assert row["feasible"] == (max(lows) < min(highs))
            assert row["gap"] == pytest.approx(max(lows) - min(highs))


def test_the_decisions_page_shows_the_table_as_rendered_from_the_committed_json(monkeypatch):
    monkeypatch.chdir(REPO)
    table = decision_feasibility.readme_table(decision_feasibility.README_TABLE)
    assert table in (REPO / "docs" / "decisions.md").read_text()
    assert "| fine-tune, plain, cosine | 0.585–0.622 | 0.662–0.706 |" in table  # the shipped model's corpora


def test_the_imposter_mean_grid_reaches_both_signs_and_the_best_alpha_is_reported():
    assert min(decision_feasibility.ALPHAS) < 0 < max(decision_feasibility.ALPHAS) and 0.0 in decision_feasibility.ALPHAS
    results = json.loads((RESULTS / "eisv-ge2e" / "decision_feasibility.json").read_text())
    rows = results["front_ends"]["plain"]
    best = decision_feasibility.best_alpha(rows)
    assert all(rows[best]["gap_in_widths"] <= row["gap_in_widths"] for name, row in rows.items()
               if name.startswith("alpha_") and name != "alpha_0.0")
