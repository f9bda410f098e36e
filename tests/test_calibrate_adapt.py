"""eisv-calibrate, eisv-adapt and eisv-verify's calibrated decision at --p-target, on real clips.

Calibration needs scores that rank targets first, so it uses the shipped GE2E (fast on CPU), not a
random tiny model."""

from pathlib import Path

import json

import pytest

from _tools import save_tiny_model, small_trials, some_clips
from eisv_tools import adapt, calibrate, verify
from modeling_eisv import EISVConfig


@pytest.fixture
def calibrated(shared_data, tmp_path):
    base = tmp_path
    model = Path(__file__).resolve().parents[1] / "models" / "eisv-ge2e"
    trials = small_trials(shared_data, base / "trials.csv", num_files=40)
    assert calibrate.main(["--model", str(model), "--trials", str(trials), "--root", str(shared_data),
                           "--output", str(base / "calibrated"), "--device", "cpu"]) == 0
    return base / "calibrated"


def test_calibrate_writes_the_fields(calibrated):
    config = EISVConfig.from_pretrained(calibrated)
    assert config.is_calibrated and config.calibration_scale > 0 and config.calibration_scores == "cosine"
    assert "targets" in config.calibration_source and config.verification_threshold is not None


def test_verify_decides_at_the_prior(shared_data, calibrated, capsys):
    a, b = some_clips(shared_data, 4)[:2]
    results = {}
    for p in ("0.001", "0.5", "0.999"):
        verify.main(["--model", str(calibrated), str(a), str(b), "--json", "--p-target", p])
        results[p] = json.loads(capsys.readouterr().out)
    for p, result in results.items():
        assert result["decided_by"] == "calibration" and result["p_target"] == float(p)
        assert result["same_speaker"] == (result["llr"] >= verify.bayes_threshold(float(p)))
    assert results["0.001"]["threshold"] > results["0.5"]["threshold"] > results["0.999"]["threshold"]
    assert results["0.999"]["same_speaker"] or not results["0.001"]["same_speaker"]
    with pytest.raises(SystemExit) as exit_info:  # a usage error: exit 2
        verify.main(["--model", str(calibrated), str(a), str(b), "--p_target", "1"])
    assert exit_info.value.code == 2


def test_old_folders_decide_with_their_threshold(shared_data, tmp_path, capsys):
    model = save_tiny_model(tmp_path / "old", threshold=0.5)
    a = some_clips(shared_data, 2)[0]
    verify.main(["--model", str(model), str(a), str(a), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert result["decided_by"] == "verification_threshold" and result["llr"] is None and result["same_speaker"]


def test_adapt_writes_a_centred_model(shared_data, calibrated, tmp_path):
    clips = some_clips(shared_data, 4)
    listing = tmp_path / "adapt.txt"
    listing.write_text("\n".join(str(c) for c in clips) + "\n")
    assert adapt.main(["--model", str(calibrated), "--data", str(listing), "--output", str(tmp_path / "adapted"),
                       "--whiten", "--device", "cpu"]) == 0
    config = EISVConfig.from_pretrained(tmp_path / "adapted")
    assert config.embedding_transform == "affine" and config.embedding_transform_info["kind"] == "centre+whiten"
    assert config.embedding_transform_info["adaptation"]["files"] == 4
