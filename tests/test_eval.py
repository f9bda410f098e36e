"""eisv-eval and evaluate_trials on a small real trial list: EER vs scikit-learn, groups, outputs, errors."""

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from _tools import save_tiny_model, small_trials
from eisv_evaluation.evaluation import evaluate_trials
from eisv_evaluation.loading import load_model
from eisv_tools.embed import main as embed_main
from eisv_tools.eval import main


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
    assert set(results["summary"]) == {"eer", "eer_threshold", "min_dcf_0.01", "min_dcf_0.05", "min_cllr"}
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
    # (line 3 pairs missing_a with missing_b: the same pair labelled 1 and 0 is now refused on its own)
    ("corpus,enroll,test,label,condition\nx,missing_a.flac,missing_a.flac,1,same\nx,missing_a.flac,missing_b.flac,0,n\n",
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


# --- synthetic, fast: trial-list checks, cohort identity, the output folder (issues 18 and 19) -----------------


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A tiny model, four 1 s synthetic voices (two "speakers" of two clips) and their six trials."""
    import soundfile

    from _tiny import voice_like

    folder = tmp_path_factory.mktemp("synthetic")
    audio = folder / "audio"
    audio.mkdir()
    for speaker in range(2):
        for take in range(2):
            soundfile.write(audio / f"s{speaker}_{take}.wav", voice_like(1.0, seed=10 * speaker + take), 16000)
    trials = folder / "trials.csv"
    trials.write_text("corpus,enroll,test,label,condition\n"
                      "c,s0_0.wav,s0_1.wav,1,same\nc,s1_0.wav,s1_1.wav,1,same\nc,s0_0.wav,s1_0.wav,0,diff\n"
                      "c,s0_1.wav,s1_1.wav,0,diff\nc,s0_0.wav,s1_1.wav,0,diff\nc,s0_1.wav,s1_0.wav,0,diff\n")
    return save_tiny_model(folder / "tiny"), trials, audio


def run_eval(model_dir, trials, root, out, *extra):
    return main(["--model", str(model_dir), "--trials", str(trials), "--root", str(root), "--output-dir", str(out),
                 "--no-progress", *extra])


@pytest.mark.parametrize("rows, message", [
    ("c,a.wav,b.wav,1,same\nc,b.wav,a.wav,0,diff\n",
     "line 3: the pair b.wav, a.wav is labelled 0 here but 1 on line 2"),
    ("c,a.wav,b.wav,1,same\nc,./a.wav,b.wav,0,diff\n", "labelled 0 here but 1 on line 2"),
    ("c,a.wav,b.wav,1\n", "line 2: 4 field(s), the header has 5"),
    ("\n\nc,a.wav,b.wav,1,same\nc,a.wav,c.wav,x,diff\n", "line 5: label must be 0 or 1"),  # blank lines count
])
def test_contradictory_pairs_and_short_rows_name_the_users_line(synthetic, tmp_path, capsys, rows, message):
    model_dir, _, audio = synthetic
    bad = tmp_path / "bad.csv"
    bad.write_text("corpus,enroll,test,label,condition\n" + rows)
    assert run_eval(model_dir, bad, audio, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert message in err and "bad.csv" in err
    assert not (tmp_path / "out").exists()


def test_audio_errors_found_while_embedding_name_the_trial_line(synthetic, tmp_path, capsys):
    import soundfile

    model_dir, trials, audio = synthetic
    root = tmp_path / "root"
    shutil.copytree(audio, root)
    nan = np.full(16000, 0.1, np.float32)
    nan[100] = np.nan
    soundfile.write(root / "nan.wav", nan, 16000, subtype="FLOAT")
    soundfile.write(root / "silent.wav", np.zeros(32000, np.float32), 16000)
    for name, problem in (("nan.wav", "NaN"), ("silent.wav", "too little speech")):
        listing = tmp_path / f"{name}.csv"
        listing.write_text(trials.read_text() + f"c,s0_0.wav,./{name},0,diff\n")
        assert run_eval(model_dir, listing, root, tmp_path / "out") == 1
        err = capsys.readouterr().err
        assert name in err and problem in err and f"used on line 8 of {listing}" in err, err


def test_key_spellings_of_one_file_are_embedded_once(synthetic, tmp_path, capsys):
    model_dir, trials, audio = synthetic
    listing = tmp_path / "dotted.csv"
    listing.write_text(trials.read_text().replace("c,s0_0.wav,s0_1.wav", "c,./s0_0.wav,s0_1.wav"))
    assert run_eval(model_dir, listing, audio, tmp_path / "out", "--json") == 0
    results = json.loads(capsys.readouterr().out)
    assert results["num_files"] == 4


def test_the_cohort_must_come_from_the_evaluated_model(synthetic, tmp_path, capsys):
    model_dir, trials, audio = synthetic
    other = save_tiny_model(tmp_path / "other", seed=1)
    cohort = tmp_path / "cohort.safetensors"
    assert embed_main(["--model", str(other), "--input", str(audio), "--output", str(cohort), "--no-progress"]) == 0
    extra = ("--cohort", str(cohort), "--cohort-top-n", "2")
    assert run_eval(model_dir, trials, audio, tmp_path / "out", *extra) == 1
    err = capsys.readouterr().err
    assert "cohort.safetensors: was embedded by another model" in err and "--cohort-any-model" in err
    assert run_eval(model_dir, trials, audio, tmp_path / "out", *extra, "--cohort_any_model") == 0
    npy = tmp_path / "cohort.npy"
    assert embed_main(["--model", str(model_dir), "--input", str(audio), "--output", str(npy), "--no-progress"]) == 0
    assert run_eval(model_dir, trials, audio, tmp_path / "out2", "--cohort", str(npy)) == 1
    assert "records no model identity" in capsys.readouterr().err
    mine = tmp_path / "mine.safetensors"
    assert embed_main(["--model", str(model_dir), "--input", str(audio), "--output", str(mine), "--no-progress"]) == 0
    assert run_eval(model_dir, trials, audio, tmp_path / "out3", "--cohort", str(mine), "--cohort-top-n", "2") == 0


def test_an_output_folder_of_something_else_is_refused(synthetic, tmp_path, capsys):
    model_dir, trials, audio = synthetic
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert run_eval(model_dir, trials, audio, mine) == 1
    err = capsys.readouterr().err
    assert "notes.txt" in err and "--overwrite" in err
    assert (mine / "notes.txt").read_text() == "keep me"
    out = tmp_path / "out"
    assert main(["--model", str(model_dir), "--trials", str(trials), "--root", str(audio), "--output_dir", str(out),
                 "--no_progress", "--max_trials", "5"]) == 0  # train_eisv.py's spelling works too
    assert run_eval(model_dir, trials, audio, out) == 0  # a previous eisv-eval output is replaced
    assert run_eval(model_dir, trials, audio, mine, "--overwrite") == 0
    assert not (mine / "notes.txt").exists() and (mine / "results.json").is_file()


def test_the_output_folder_is_replaced_whole_with_the_umasks_permissions(synthetic, tmp_path, monkeypatch):
    import os
    import stat

    import eisv_evaluation.plots as plots

    model_dir, trials, audio = synthetic
    out = tmp_path / "out"
    old_umask = os.umask(0o022)
    try:
        assert run_eval(model_dir, trials, audio, out) == 0
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o644}
    before = {p.name: p.stat().st_ino for p in out.iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(plots, "plot_histograms", broken)  # fails after results.json and det.png are written
    with pytest.raises(RuntimeError, match="disk full"):
        run_eval(save_tiny_model(tmp_path / "other", seed=1), trials, audio, out)
    assert {p.name: p.stat().st_ino for p in out.iterdir()} == before  # no new det.png beside old results
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
