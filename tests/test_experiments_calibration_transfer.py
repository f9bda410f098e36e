"""experiments/calibration_transfer.py: the leave-one-corpus-out splits, and the committed results."""

import json
from pathlib import Path

import pandas as pd

from experiments import calibration_transfer

RESULTS = Path(__file__).resolve().parents[1] / "results" / "decisions" / "calibration_transfer.json"


def write_corpus(root: Path, corpus: str, speakers, files_per_speaker=8):
    rows = [{"file_name": f"audio/{s}/{i}.flac", "corpus": corpus, "speaker": s,
             "emotion": "neutral" if i % 2 else "angry"} for s in speakers for i in range(files_per_speaker)]
    (root / corpus).mkdir(parents=True)
    pd.DataFrame(rows).to_csv(root / corpus / "metadata.csv", index=False)


def test_the_cohort_speakers_are_never_trial_speakers_and_dev_actors_are_left_out(tmp_path):
    write_corpus(tmp_path, "ased", [f"ased_spk{i:02d}" for i in range(1, 11)])
    write_corpus(tmp_path, "ravdess", [f"ravdess_Actor_{i:02d}" for i in range(1, 25)])
    splits = calibration_transfer.loco_splits(tmp_path)
    assert set(splits) == {"ased", "ravdess"}
    for corpus, (trials, cohort) in splits.items():
        trial_speakers = {Path(p).parent.name for p in list(trials.enroll) + list(trials.test)}
        cohort_speakers = {Path(p).parent.name for p in cohort}
        assert trial_speakers and cohort_speakers and not trial_speakers & cohort_speakers
        assert set(trials.corpus) == {corpus} and (trials.label == 1).any() and (trials.label == 0).any()
        assert len(cohort) == calibration_transfer.COHORT_FILES * len(cohort_speakers)
    ravdess = {Path(p).parent.name for p in list(splits["ravdess"][0].enroll) + splits["ravdess"][1]}
    assert max(int(s.rsplit("_", 1)[1]) for s in ravdess) <= 18  # actors 19-24 are dev


def test_the_committed_choice_follows_the_stated_rule():
    results = json.loads(RESULTS.read_text())
    assert set(results["loco"]) == set(calibration_transfer.VARIANTS)
    rule = min(results["loco"], key=lambda v: (results["loco"][v]["worst_gap"], results["loco"][v]["mean_cllr"]))
    assert results["chosen"] == rule
    for variant, row in results["loco"].items():  # a LOCO fit never sees the corpus it is measured on
        assert "on_ravdess" in row["fit_ased"] and "on_ased" in row["fit_ravdess"]
        assert set(results["final"][variant]) == {"fit", "dev_all", "ravdess", "emodb", "neutral"}
