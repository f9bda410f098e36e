"""eisv-verify on real clips: score, decision, exit codes, JSON, errors; once as a subprocess."""

import json
import subprocess
import sys

import pytest

from _tools import save_tiny_model, some_clips
from eisv_tools.verify import EXIT_DIFFERENT, EXIT_ERROR, EXIT_SAME, EXIT_UNDECIDED, main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny"), threshold=0.5)


def test_json_decision_follows_the_threshold(shared_data, model_dir, capsys):
    a, b = some_clips(shared_data, 4)[:2]
    assert main(["--model", str(model_dir), str(a), str(b), "--json", "--threshold", "-1"]) == EXIT_SAME
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"score", "scoring", "llr", "p_target", "threshold", "decided_by", "same_speaker", "decision",
                           "model", "files", "cohort"}
    assert result["same_speaker"] is True and result["decision"] == "same" and -1 <= result["score"] <= 1
    assert main(["--model", str(model_dir), str(a), str(b), "--json", "--threshold", "1.01"]) == EXIT_DIFFERENT
    again = json.loads(capsys.readouterr().out)
    assert again["score"] == pytest.approx(result["score"]) and again["decision"] == "different"


def test_config_threshold_is_used_and_a_file_matches_itself(shared_data, model_dir, capsys):
    a = some_clips(shared_data, 2)[0]
    assert main(["--model", str(model_dir), str(a), str(a)]) == EXIT_SAME
    assert "threshold 0.5000: same speaker" in capsys.readouterr().out


def test_no_threshold_is_undecided(shared_data, tmp_path, capsys):
    model = save_tiny_model(tmp_path / "uncalibrated")
    a, b = some_clips(shared_data, 4)[:2]
    assert main(["--model", str(model), str(a), str(b)]) == EXIT_UNDECIDED
    assert "no threshold set" in capsys.readouterr().out


def test_missing_and_unreadable_files_are_named(shared_data, model_dir, tmp_path, capsys):
    a = some_clips(shared_data, 2)[0]
    assert main(["--model", str(model_dir), str(a), str(tmp_path / "nope.wav"), "--json"]) == EXIT_ERROR
    captured = capsys.readouterr()
    assert "nope.wav" in captured.err and "nope.wav" in json.loads(captured.out)["error"]
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all")
    assert main(["--model", str(model_dir), str(a), str(junk)]) == EXIT_ERROR
    assert "junk.wav" in capsys.readouterr().err
    assert main(["--model", str(tmp_path / "no_model"), str(a), str(a)]) == EXIT_ERROR
    assert "no_model" in capsys.readouterr().err


def test_as_a_subprocess(shared_data, model_dir):
    a, b = some_clips(shared_data, 4)[:2]
    done = subprocess.run([sys.executable, "-m", "eisv_tools.verify", "--model", str(model_dir), str(a), str(b),
                           "--json"], capture_output=True, text=True, timeout=120)
    result = json.loads(done.stdout)
    assert done.returncode == (EXIT_SAME if result["same_speaker"] else EXIT_DIFFERENT)


# --- every failure is exit 2 with one line; silence is an error (issue 19) ------------------------------------


@pytest.fixture
def voices(tmp_path):
    import soundfile

    from _tiny import voice_like

    paths = [tmp_path / "a.wav", tmp_path / "b.wav"]
    for seed, path in enumerate(paths):
        soundfile.write(path, voice_like(1.0, seed=seed), 16000)
    return paths


def assert_one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def test_crashes_exit_2_with_one_line_not_1(model_dir, voices, tmp_path, capsys, monkeypatch):
    import shutil

    import torch
    from safetensors.torch import load_file

    a, b = map(str, voices)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(model_dir, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\x00" * 64)
    assert main(["--model", str(corrupt), a, b]) == EXIT_ERROR
    assert_one_line_error(capsys, "corrupt", "cannot load the model")
    pickled = tmp_path / "pickle_only"
    shutil.copytree(model_dir, pickled)
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    assert main(["--model", str(pickled), a, b]) == EXIT_ERROR
    assert_one_line_error(capsys, "pickle_only", "pytorch_model.bin are not loaded")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["--model", str(model_dir), a, b, "--device", "cuda", "--json"]) == EXIT_ERROR
    captured = capsys.readouterr()
    assert "no CUDA GPU" in json.loads(captured.out)["error"] and len(captured.err.strip().splitlines()) == 1


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_threshold_that_is_not_a_finite_number_is_refused(model_dir, voices, capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", str(model_dir), str(voices[0]), str(voices[1]), f"--threshold={value}"])
    assert exit_info.value.code == EXIT_ERROR
    assert "finite number" in capsys.readouterr().err


def test_silence_is_an_error_not_a_decision(model_dir, voices, tmp_path, capsys):
    import numpy as np
    import soundfile

    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(32000, np.float32), 16000)
    assert main(["--model", str(model_dir), str(voices[0]), str(silent)]) == EXIT_ERROR
    assert_one_line_error(capsys, "silent.wav", "too little speech")
    assert main(["--model", str(model_dir), str(voices[0]), str(silent), "--min_speech_s", "0"]) in (
        EXIT_SAME, EXIT_DIFFERENT)
