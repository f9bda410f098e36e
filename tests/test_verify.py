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
    assert set(result) == {"score", "threshold", "same_speaker", "decision", "model", "files"}
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
