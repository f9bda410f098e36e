"""train_eisv.py end to end on the bundled real clips (data/emodb-mini): learning, two processes,
exact resume after SIGKILL, atomic checkpoints, and the push to a (local) Hub."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hub_server import local_hub

REPO = Path(__file__).resolve().parents[1]
TRIALS = REPO / "data" / "emodb-mini" / "trials.csv"
# A tiny ECAPA and short crops, so that a run takes seconds on 2 cores.
TINY = ["--init_from", "scratch", "--ecapa_channels", "16", "--embedding_size", "16", "--crop_seconds", "1.0", "--speakers_per_batch", "3",
        "--utterances_per_speaker", "2", "--eval_max_trials", "300", "--logging_steps", "2", "--seed", "3",
        "--copypaste", "--erl_weight", "0.5", "--em_select", "energy"]


def run_training(args, env=None, check=True, **kwargs):
    command = [sys.executable, str(REPO / "train_eisv.py"), *args]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{command} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def final_weights(output_dir):
    checkpoints = sorted((Path(output_dir) / "checkpoints").glob("step_*"), key=lambda p: int(p.name[5:]))
    return load_file(str(checkpoints[-1] / "model.safetensors"))


def embeddings_of(folder_or_id, env=None):
    """Embeddings of two bundled clips, computed in a fresh process through the Auto classes."""
    clips = sorted((REPO / "data" / "emodb-mini" / "audio" / "emodb_13").glob("*.flac"))[:2]
    script = (
        "import sys, numpy as np, soundfile as sf, torch\n"
        "from transformers import AutoModel, AutoFeatureExtractor\n"
        f"m = AutoModel.from_pretrained({str(folder_or_id)!r}, trust_remote_code=True).eval()\n"
        f"fe = AutoFeatureExtractor.from_pretrained({str(folder_or_id)!r}, trust_remote_code=True)\n"
        f"waves = [sf.read(p, dtype='float32')[0] for p in {[str(c) for c in clips]!r}]\n"
        "with torch.no_grad(): e = m(**fe(waves, sampling_rate=16000, return_tensors='pt')).embeddings\n"
        "print(repr(e.numpy().round(6).tolist()))\n")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300,
                         cwd="/")
    assert out.returncode == 0, out.stderr[-3000:]
    return np.array(eval(out.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """One uninterrupted run (checkpoints every 3 steps) that also pushes to a local Hub."""
    root = tmp_path_factory.mktemp("reference")
    with local_hub(root / "hub") as hub:
        args = [*TINY, "--output_dir", str(root / "run"), "--max_steps", "12", "--checkpointing_steps", "3",
                "--push_to_hub", "--hub_model_id", "local-user/eisv-tiny"]
        result = run_training(args, env=hub.env(hf_home=root / "hf_home"))
        pushed = embeddings_of("local-user/eisv-tiny", env=hub.env(hf_home=root / "hf_home_load"))
        yield {"dir": root / "run", "stdout": result.stdout, "args": args, "pushed": pushed, "hub": hub}


def test_run_leaves_a_loadable_model_with_card_and_results(reference_run):
    model = reference_run["dir"] / "model"
    names = {p.name for p in model.iterdir()}
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md", "modeling_eisv.py",
            "training_results.json"} <= names
    results = json.loads((model / "training_results.json").read_text())
    history = results["history"]
    assert history[0]["step"] == 0 and history[-1]["step"] == 12
    for entry in history:  # every sampled trial is scored exactly once
        assert entry["results"]["num_trials_scored"] == entry["results"]["num_trials"] == 300
    config = json.loads((model / "config.json").read_text())
    assert config["num_speakers"] == 6  # the 4 trial speakers are held out of training
    assert 0 < config["verification_threshold"] < 1
    card = (model / "README.md").read_text()
    assert "model-index" in card and "CC0" in card
    assert "Dev EER before training" in reference_run["stdout"]


def test_pushed_model_loads_from_the_hub_with_the_same_embeddings(reference_run):
    local = embeddings_of(reference_run["dir"] / "model")
    assert np.abs(reference_run["pushed"] - local).max() <= 1e-5
    assert "README.md" in reference_run["hub"].files("local-user/eisv-tiny")


def test_failed_push_keeps_the_folder_and_says_what_failed(reference_run, monkeypatch, capsys):
    from eisv_training.export import push_folder

    hub = reference_run["hub"]
    hub.patch(monkeypatch)
    hub.fail_commits = True
    folder = reference_run["dir"] / "model"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    try:
        assert push_folder(folder, "local-user/eisv-fails") == 3
    finally:
        hub.fail_commits = False
    assert "failed" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_sigkill_then_resume_gives_identical_weights(reference_run, tmp_path):
    output = tmp_path / "killed"
    args = [a for a in reference_run["args"] if a not in ("--push_to_hub", "--hub_model_id", "local-user/eisv-tiny")]
    args[args.index("--output_dir") + 1] = str(output)
    process = subprocess.Popen([sys.executable, str(REPO / "train_eisv.py"), *args], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not (output / "checkpoints" / "step_6").is_dir():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (output / "checkpoints" / "step_12").exists(), "killed too late to test anything"
    run_training([*args, "--resume", "latest"])
    resumed, reference = final_weights(output), final_weights(reference_run["dir"])
    assert resumed.keys() == reference.keys()
    assert max((resumed[k].float() - reference[k].float()).abs().max().item() for k in reference) <= 1e-6


def test_kill_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    from accelerate import Accelerator

    from eisv_training.checkpoints import latest_checkpoint, read_progress, save_checkpoint

    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(torch.nn.Linear(3, 2))
    save_checkpoint(accelerator, tmp_path, 3, {"global_step": 3})
    original = accelerator.save_state

    def dies_half_way(folder, **kwargs):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "model.safetensors").write_bytes(b"partial")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(accelerator, "save_state", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(accelerator, tmp_path, 6, {"global_step": 6})
    monkeypatch.setattr(accelerator, "save_state", original)
    latest = latest_checkpoint(tmp_path)
    assert latest.name == "step_3" and read_progress(latest)["global_step"] == 3
    accelerator.load_state(str(latest))  # loadable


@pytest.mark.slow
def test_two_processes_on_cpu_score_every_trial_once(tmp_path):
    # --multi_gpu picks the torchrun launcher; without a GPU the script joins the processes over gloo.
    args = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
            "no", "--dynamo_backend", "no", "--main_process_port", "29517", str(REPO / "train_eisv.py"), *TINY,
            "--output_dir", str(tmp_path / "ddp"), "--max_steps", "4"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-5000:]
    summary = json.loads((tmp_path / "ddp" / "model" / "training_results.json").read_text())
    assert summary["stats"]["num_processes"] == 2
    for entry in summary["history"]:
        assert entry["results"]["num_trials_scored"] == entry["results"]["num_trials"] == 300
        assert entry["results"]["num_files"] > 0


@pytest.mark.slow
def test_default_run_fine_tunes_the_pretrained_ge2e_and_lowers_dev_eer(tmp_path):
    pytest.importorskip("resemblyzer", reason="the pretrained GE2E weights come from the resemblyzer wheel")
    run_training(["--output_dir", str(tmp_path / "ge2e")])  # the README's default: GE2E + full recipe, 8 epochs
    history = json.loads((tmp_path / "ge2e" / "model" / "training_results.json").read_text())["history"]
    before, after = history[0]["results"]["overall"]["eer"], min(h["results"]["overall"]["eer"] for h in history[1:])
    assert after < before - 2.0, (before, after)
