"""train_eisv.py end to end on the bundled real clips (data/emodb-mini, data/librispeech-mini): selection on
several lists with the start as a candidate, two processes, exact resume after SIGKILL (also on an epoch's
last step), Ctrl-C, refused output folders, early push checks, and the push to a (local) Hub."""

import json
import os
import shutil
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


def history_of(output_dir):
    return json.loads((Path(output_dir) / "model" / "training_results.json").read_text())["state"]["history"]


def test_run_leaves_a_loadable_model_with_card_and_results(reference_run):
    model = reference_run["dir"] / "model"
    names = {p.name for p in model.iterdir()}
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md", "modeling_eisv.py",
            "training_results.json"} <= names
    results = json.loads((model / "training_results.json").read_text())
    history = results["state"]["history"]
    assert history[0]["name"] == "start" and history[0]["step"] == 0 and history[0]["score"] == 0.0
    assert history[-1]["step"] == 12
    # Two selection lists: trials over the 2 carved validation speakers and the bundled neutral check.
    assert [item["name"] for item in results["selection"]["lists"]] == ["validation_speakers", "librispeech-mini"]
    for candidate in history:  # every sampled trial of every list is scored exactly once
        for list_results in candidate["results"].values():
            assert list_results["num_trials_scored"] == list_results["num_trials"] == 300
    best = min(history, key=lambda c: c["score"])
    assert results["selected"] == best["name"]
    config = json.loads((model / "config.json").read_text())
    assert config["num_speakers"] == 4  # 4 trial speakers held out of training, 2 carved for validation
    assert len(results["validation_speakers"]) == 2
    assert 0 < config["verification_threshold"] < 1
    assert results["test_results"]["num_trials_scored"] == 300  # the test list, scored once at the end
    card = (model / "README.md").read_text()
    assert "model-index" in card and "CC0" in card
    assert results["selected"] == "start" or "the starting model" in card  # the start's numbers beside its own
    assert "Selected:" in reference_run["stdout"]
    from eisv_io.staged_folders import current_umask

    umask = current_umask()  # a model folder on a shared file system must be readable by the other nodes
    assert model.stat().st_mode & 0o777 == 0o777 & ~umask
    assert (model / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.slow
def test_the_start_competes_and_wins_when_fine_tuning_only_hurts(tmp_path):
    pytest.importorskip("resemblyzer", reason="the pretrained GE2E weights come from the resemblyzer wheel")
    # A learning rate that wrecks the pretrained GE2E: no epoch may be exported instead of the start.
    result = run_training(["--output_dir", str(tmp_path / "wreck"), "--max_steps", "4", "--learning_rate", "0.5",
                           "--warmup_ratio", "0", "--eval_max_trials", "300", "--crop_seconds", "1.0"])
    results = json.loads((tmp_path / "wreck" / "model" / "training_results.json").read_text())
    assert results["selected"] == "start", [(c["name"], c["score"]) for c in results["state"]["history"]]
    assert "Fine-tuning did not beat the starting model" in result.stdout
    assert results["test_results"] == results["start_test_results"]


def test_trim_long_silences_trims_the_training_clips_and_is_saved_with_the_model(tmp_path):
    pytest.importorskip("webrtcvad", reason="voice-activity trimming needs webrtcvad-wheels")
    result = run_training([*TINY, "--output_dir", str(tmp_path / "vad"), "--max_steps", "2",
                           "--trim_long_silences", "True", "--no_test_on_trials"])
    assert "voice-activity trimming kept" in result.stdout
    saved = json.loads((tmp_path / "vad" / "model" / "preprocessor_config.json").read_text())
    assert saved["trim_long_silences"] is True


def test_protocol_and_own_data_never_select_on_the_test_list(tmp_path):
    from eisv_training.arguments import DataArguments
    from eisv_training.data import default_validation_speakers, resolve_defaults

    shared = DataArguments(protocol="shared", shared_data=str(tmp_path))
    (tmp_path / "neutral_trials.csv").write_text("corpus,enroll,test,label,condition\n")
    resolve_defaults(shared)
    assert shared.trials == str(tmp_path / "dev_trials.csv")  # the test list...
    assert default_validation_speakers(shared, 83) == 12  # ...is not what picks the model
    assert shared.validation_trials == [str(tmp_path / "neutral_trials.csv")]
    own = DataArguments(data=[str(tmp_path / "my_corpus")])
    resolve_defaults(own)
    assert own.trials is None and default_validation_speakers(own, 40) == 4
    explicit = DataArguments(data=[str(tmp_path / "my_corpus")], trials="t.csv", select_on_trials=True)
    resolve_defaults(explicit)
    assert default_validation_speakers(explicit, 40) == 0


def test_another_runs_output_dir_is_refused_and_overwrite_replaces_it(reference_run, tmp_path):
    import shutil

    output = tmp_path / "again"
    shutil.copytree(reference_run["dir"], output)
    (output / "notes.txt").write_text("mine")
    refused = run_training([*TINY, "--output_dir", str(output), "--max_steps", "2"], check=False)
    assert refused.returncode != 0 and "already holds files of another run" in refused.stderr
    assert (output / "checkpoints" / "step_12").is_dir()  # nothing touched
    run_training([*TINY, "--output_dir", str(output), "--max_steps", "2", "--overwrite_output_dir"])
    assert sorted(p.name for p in (output / "checkpoints").iterdir()) == ["step_2"]  # no old checkpoint beside it
    assert (output / "notes.txt").read_text() == "mine"


def test_push_access_is_checked_before_training(tmp_path):
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "hf_invalid", "HF_HUB_ETAG_TIMEOUT": "2"}
    result = run_training([*TINY, "--output_dir", str(tmp_path / "push"), "--max_steps", "2", "--push_to_hub",
                           "--hub_model_id", "someone/model"], env=env, check=False)
    assert result.returncode != 0 and "--push_to_hub" in result.stderr
    assert not (tmp_path / "push" / "checkpoints").exists()  # failed before the first step


def test_ctrl_c_saves_a_resumable_checkpoint_and_exits_130(reference_run, tmp_path):
    output = tmp_path / "interrupted"
    args = [*TINY, "--output_dir", str(output), "--max_steps", "400", "--logging_steps", "1"]
    process = subprocess.Popen([sys.executable, str(REPO / "train_eisv.py"), *args], cwd=REPO, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in process.stdout:  # wait for training to be under way
        if line.startswith("step 3/"):
            break
    process.send_signal(signal.SIGINT)
    rest = process.stdout.read()
    assert process.wait(timeout=300) == 130, rest[-2000:]
    assert "resume with --resume latest" in rest
    saved = int(rest.split("saved step ")[1].split()[0])
    assert saved < 400 and (output / "checkpoints" / f"step_{saved}").is_dir()
    assert "Traceback" not in rest


@pytest.mark.slow
def test_resume_from_a_checkpoint_on_an_epochs_last_step_is_exact(reference_run, tmp_path):
    """A checkpoint on the last step of epoch 1 must resume into the scoring of epoch 1, not into epoch 2."""
    steps_per_epoch = next(c["step"] for c in history_of(reference_run["dir"]) if c["epoch"] == 1)
    base = [a for a in reference_run["args"] if a not in ("--push_to_hub", "--hub_model_id", "local-user/eisv-tiny")]
    base[base.index("--checkpointing_steps") + 1] = str(steps_per_epoch)
    uninterrupted = tmp_path / "uninterrupted"
    run_training([*base[:base.index("--output_dir")], *base[base.index("--output_dir") + 2:],
                  "--output_dir", str(uninterrupted)])
    killed = tmp_path / "killed"
    args = [*base[:base.index("--output_dir")], *base[base.index("--output_dir") + 2:], "--output_dir", str(killed)]
    process = subprocess.Popen([sys.executable, str(REPO / "train_eisv.py"), *args], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not (killed / "checkpoints" / f"step_{steps_per_epoch}").is_dir():
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    run_training([*args, "--resume", "latest"])
    expected = [(c["name"], c["step"]) for c in history_of(uninterrupted)]
    assert [(c["name"], c["step"]) for c in history_of(killed)] == expected
    resumed, reference = final_weights(killed), final_weights(uninterrupted)
    assert max((resumed[k].float() - reference[k].float()).abs().max().item() for k in reference) <= 1e-6


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


@pytest.mark.slow
def test_two_processes_on_cpu_score_every_trial_once(tmp_path):
    # --multi_gpu picks the torchrun launcher; without a GPU the script joins the processes over gloo.
    args = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
            "no", "--dynamo_backend", "no", "--main_process_port", "29517", str(REPO / "train_eisv.py"), *TINY,
            "--output_dir", str(tmp_path / "ddp"), "--max_steps", "4"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)  # 8 s idle
    assert result.returncode == 0, result.stderr[-5000:]
    summary = json.loads((tmp_path / "ddp" / "model" / "training_results.json").read_text())
    assert summary["stats"]["num_processes"] == 2
    for candidate in summary["state"]["history"]:
        for results in candidate["results"].values():
            assert results["num_trials_scored"] == results["num_trials"] == 300
            assert results["num_files"] > 0


@pytest.mark.slow
def test_default_run_fine_tunes_the_pretrained_ge2e_without_forgetting(tmp_path):
    pytest.importorskip("resemblyzer", reason="the pretrained GE2E weights come from the resemblyzer wheel")
    run_training(["--output_dir", str(tmp_path / "ge2e")])  # the README's default: GE2E + full recipe
    results = json.loads((tmp_path / "ge2e" / "model" / "training_results.json").read_text())
    start, *epochs = results["state"]["history"]
    before = start["results"]["validation_speakers"]["overall"]["eer"]
    after = min(c["results"]["validation_speakers"]["overall"]["eer"] for c in epochs)
    assert after < before - 2.0, (before, after)  # it learns on held-out speakers
    selected = next(c for c in results["state"]["history"] if c["name"] == results["selected"])
    assert selected["score"] <= 0.0  # and never exports something worse than its start on the selection lists
    neutral = selected["results"]["librispeech-mini"]["overall"]["eer"]
    assert neutral <= start["results"]["librispeech-mini"]["overall"]["eer"] + 1.0


def test_a_finished_runs_checkpoint_resumes_into_a_new_output_dir(reference_run, tmp_path):
    args = [a for a in reference_run["args"] if a not in ("--push_to_hub", "--hub_model_id", "local-user/eisv-tiny")]
    args[args.index("--output_dir") + 1] = str(tmp_path / "elsewhere")
    run_training([*args, "--resume", str(reference_run["dir"] / "checkpoints" / "step_12")])
    results = json.loads((tmp_path / "elsewhere" / "model" / "training_results.json").read_text())
    assert results["selected"] == json.loads((reference_run["dir"] / "model" / "training_results.json")
                                             .read_text())["selected"]


def test_a_resume_with_the_other_front_end_is_refused(reference_run, tmp_path):
    pytest.importorskip("webrtcvad", reason="voice-activity trimming needs webrtcvad-wheels")
    args = [a for a in reference_run["args"] if a not in ("--push_to_hub", "--hub_model_id", "local-user/eisv-tiny")]
    args[args.index("--output_dir") + 1] = str(tmp_path / "elsewhere")
    result = run_training([*args, "--resume", str(reference_run["dir"] / "checkpoints" / "step_12"),
                           "--trim_long_silences", "True"], check=False)
    assert result.returncode != 0
    assert "trained with trim_long_silences=False" in result.stderr + result.stdout


@pytest.mark.slow
def test_eisv_train_runs_from_a_normal_install(tmp_path):
    """A wheel installed elsewhere (not the clone, not editable) finds its bundled default data and trains."""
    wheels, target, source = tmp_path / "wheels", tmp_path / "site", tmp_path / "source"
    # Built from a copy of the tracked files: setuptools writes build/ and *.egg-info beside the sources.
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        if not name.startswith(("models/", "results/", "tests/")) and (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)],
                   check=True, capture_output=True, timeout=600)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    *map(str, wheels.glob("eisv-*.whl"))], check=True, capture_output=True, timeout=600)
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", "import train_eisv, eisv_training.arguments as a; "
                            "print(train_eisv.__file__); print(a.DEFAULT_DATA)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True).stdout.split()
    assert all(Path(p).is_relative_to(target) for p in where), where
    result = subprocess.run([sys.executable, "-m", "train_eisv", *TINY, "--output_dir", str(tmp_path / "run"),
                             "--max_steps", "2"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_training_results_hold_the_timing_figures_and_skipped_steps(reference_run):
    results = json.loads((reference_run["dir"] / "model" / "training_results.json").read_text())
    stats = results["stats"]
    assert stats["samples_per_s"] > 0 and 0 <= stats["data_wait_fraction"] < 1
    assert "gpu_step_ms" in stats and stats["device"] == "cpu"  # CUDA events time the step on a GPU only
    assert stats["skipped_non_finite_steps"] == len(results["state"]["non_finite"]) == 0


def test_torch_compile_gives_the_eager_run_losses(reference_run, tmp_path):
    args = [a for a in reference_run["args"] if a not in ("--push_to_hub", "--hub_model_id", "local-user/eisv-tiny")]
    args[args.index("--output_dir") + 1] = str(tmp_path / "compiled")
    # aot_eager: the graph capture and autograd of torch.compile without generating C++ (inductor: tests/test_loop.py)
    result = run_training([*args, "--torch_compile", "--torch_compile_backend", "aot_eager"])
    losses = lambda out: [line.split("loss ")[1].split()[0] for line in out.splitlines() if line.startswith("step ")]  # noqa: E731
    assert losses(result.stdout) == losses(reference_run["stdout"]) and len(losses(result.stdout)) == 6
