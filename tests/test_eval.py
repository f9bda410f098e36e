"""eisv-eval and evaluate_trials on a small real trial list: EER vs scikit-learn, groups, outputs, errors."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from _tools import save_tiny_model, small_trials
from eisv_tools.embed import main as embed_main
from eisv_tools.eval import main
from eisv_tools.evaluation import evaluate_trials
from eisv_tools.loading import load_model


def sklearn_eer(labels, scores):
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1 - tpr
    i = np.flatnonzero(fnr - fpr <= 0)[0]
    if fnr[i] == fpr[i]:
        return 100 * fnr[i]
    a = (fnr[i - 1] - fpr[i - 1]) / ((fnr[i - 1] - fpr[i - 1]) - (fnr[i] - fpr[i]))
    return 100 * (fnr[i - 1] + a * (fnr[i] - fnr[i - 1]))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from conftest import SHARED_DATA

    if not (SHARED_DATA / "dev_trials.csv").is_file():
        pytest.skip(f"real emotional speech not found at {SHARED_DATA} (see shared/data/README.md)")
    folder = tmp_path_factory.mktemp("eval")
    return save_tiny_model(folder / "tiny"), small_trials(SHARED_DATA, folder / "trials.csv"), SHARED_DATA, folder


@pytest.fixture(scope="module")
def evaluated(setup):
    model_dir, trials, root, folder = setup
    out = folder / "out"
    assert main(["--model", str(model_dir), "--trials", str(trials), "--root", str(root), "--output-dir", str(out),
                 "--no-progress"]) == 0
    return out


def read_scores(path):
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    return rows, np.array([int(r["label"]) for r in rows]), np.array([float(r["score"]) for r in rows])


def test_writes_every_output(evaluated):
    for name in ("results.json", "results.md", "scores.csv", "det.png", "score_histograms.png"):
        assert (evaluated / name).stat().st_size > 0, name
    results = json.loads((evaluated / "results.json").read_text())
    assert results["format"] == "eisv-eval/1" and results["scoring"] == "cosine"
    assert set(results["summary"]) == {"eer", "eer_threshold", "min_dcf_0.01", "min_dcf_0.05"}
    assert "| all |" in (evaluated / "results.md").read_text()


def test_eer_matches_sklearn_on_the_same_scores(evaluated):
    results = json.loads((evaluated / "results.json").read_text())
    rows, labels, scores = read_scores(evaluated / "scores.csv")
    assert results["num_trials"] == len(rows)
    assert results["summary"]["eer"] == pytest.approx(sklearn_eer(labels, scores), abs=0.01)
    for corpus, metrics in results["metrics"]["cosine"]["by_corpus"].items():
        mask = np.array([r["corpus"] == corpus for r in rows])
        assert metrics["eer"] == pytest.approx(sklearn_eer(labels[mask], scores[mask]), abs=0.01)


def test_target_condition_is_its_targets_against_all_nontargets_of_its_corpora(evaluated):
    results = json.loads((evaluated / "results.json").read_text())
    rows, labels, scores = read_scores(evaluated / "scores.csv")
    condition = np.array([r["condition"] for r in rows])
    corpus = np.array([r["corpus"] for r in rows])
    same = results["metrics"]["cosine"]["by_condition"]["same_emotion"]
    corpora = set(corpus[condition == "same_emotion"])
    mask = ((condition == "same_emotion") & (labels == 1)) | (np.isin(corpus, list(corpora)) & (labels == 0))
    assert same["num_targets"] == int((condition == "same_emotion").sum())
    assert same["num_nontargets"] == int((mask & (labels == 0)).sum())
    assert same["eer"] == pytest.approx(sklearn_eer(labels[mask], scores[mask]), abs=0.01)


def test_python_api_restores_training_mode_and_subsets(setup):
    model_dir, trials, root, _ = setup
    model, feature_extractor = load_model(model_dir, "cpu")
    model.train()
    results = evaluate_trials(model, feature_extractor, trials, root, max_trials=40, seed=1)
    assert model.training and results["num_trials"] == 40
    assert 0 <= results["summary"]["eer"] <= 100


@pytest.mark.slow
def test_as_norm_with_an_eisv_embed_cohort(setup, tmp_path, capsys):
    model_dir, trials, root, _ = setup
    cohort_dir = root / "emodb" / "audio" / "emodb_03"  # any folder of audio serves as cohort here
    cohort = tmp_path / "cohort.safetensors"
    assert embed_main(["--model", str(model_dir), "--input", str(cohort_dir), "--output", str(cohort),
                       "--no-progress"]) == 0
    out = tmp_path / "out"
    assert main(["--model", str(model_dir), "--trials", str(trials), "--root", str(root), "--output-dir", str(out),
                 "--cohort", str(cohort), "--cohort-top-n", "20", "--max-trials", "60", "--json", "--no-progress"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["scoring"] == "as_norm" and set(results["metrics"]) == {"cosine", "as_norm"}
    assert results["as_norm"]["top_n"] == 20
    rows, labels, scores = read_scores(out / "scores.csv")
    assert results["summary"]["eer"] == pytest.approx(sklearn_eer(labels, scores), abs=0.01)


@pytest.mark.parametrize("content, message", [
    ("corpus,enroll,test,condition\nx,a.flac,b.flac,same\n", "missing column(s) label"),
    ("corpus,enroll,test,label,condition\nx,a.flac,b.flac,1,same\nx,a.flac,b.flac,yes,diff\n", "line 3: label must be 0 or 1"),
    ("corpus,enroll,test,label,condition\nx,,b.flac,1,same\n", "line 2: empty enroll"),
    ("corpus,enroll,test,label,condition\nx,missing_a.flac,missing_a.flac,1,same\nx,missing_a.flac,missing_a.flac,0,n\n",
     "missing_a.flac: no such audio file (used on line 2"),
])
def test_bad_trial_files_name_the_line_and_write_nothing(setup, tmp_path, capsys, content, message):
    model_dir, _, root, _ = setup
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    out = tmp_path / "out"
    assert main(["--model", str(model_dir), "--trials", str(bad), "--root", str(root), "--output-dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert message in err and "bad.csv" in err
    assert not out.exists()


@pytest.mark.slow
def test_as_a_subprocess(setup, tmp_path):
    model_dir, trials, root, _ = setup
    done = subprocess.run([sys.executable, "-m", "eisv_tools.eval", "--model", str(model_dir), "--trials", str(trials),
                           "--root", str(root), "--output-dir", str(tmp_path / "o"), "--max-trials", "30", "--json",
                           "--no-progress"], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["num_trials"] == 30
