"""eisv_training/checkpoints.py: resume reads no pickle, continues exactly, and survives a kill at
every rename and delete of a save."""

import json
import os
import pickle
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator

from eisv_training.checkpoints import (CheckpointError, latest_checkpoint, load_checkpoint, read_progress,
                                       restore_state_dict, save_checkpoint)
from eisv_training.schedules import MarginSchedule, lr_multiplier

REPO = Path(__file__).resolve().parents[1]


class Killed(BaseException):
    """Stands for SIGKILL: no `except Exception` in the code under test can catch it."""


class WritesAFile:
    """Unpickling this writes `target`: what a crafted checkpoint does to a loader that unpickles."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return Path.write_text, (Path(self.target), "this ran on resume")


@pytest.fixture(scope="module")
def accelerator():
    return Accelerator(cpu=True)


def tiny_run(accelerator, seed):
    """A prepared model with dropout (so training draws from torch's RNG), AdamW, the LR and margin schedules."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_multiplier(step, 10, 2))
    margins = MarginSchedule(0.2, 5)
    model, optimizer = accelerator.prepare(model, optimizer)
    return model, optimizer, scheduler, margins


def train(accelerator, run, steps):
    model, optimizer, scheduler, margins = run
    for _ in range(steps):  # inputs drawn from all three generators, so all three must be restored
        inputs = torch.randn(5, 4) + float(np.random.rand()) + random.random()
        accelerator.backward(model(inputs).pow(2).mean() * (1 + margins.margin()))
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
        margins.step()


def save(accelerator, folder, step, run, keep=2, **progress):
    model, optimizer, scheduler, margins = run
    extra = {"lr_scheduler": scheduler.state_dict(), "margin_schedule": margins.state_dict()}
    return save_checkpoint(accelerator, folder, step, model, optimizer, {"global_step": step, **progress}, extra, keep)


def resume(accelerator, checkpoint, run):
    model, optimizer, scheduler, margins = run
    progress, extra = load_checkpoint(accelerator, checkpoint, model, optimizer)
    restore_state_dict(scheduler, extra["lr_scheduler"], "lr_scheduler")
    restore_state_dict(margins, extra["margin_schedule"], "margin_schedule")
    return progress


def weights(run):
    return [p.detach().clone() for p in run[0].parameters()]


def test_save_then_load_continues_exactly(accelerator, tmp_path):
    run = tiny_run(accelerator, seed=0)
    train(accelerator, run, 3)
    accelerator.step = 7
    checkpoint = save(accelerator, tmp_path, 3, run, history=[{"eer": 12.5}])
    generators = random.getstate(), np.random.get_state(), torch.get_rng_state()
    draws = (random.random(), float(np.random.rand()), torch.rand(3).tolist())
    random.setstate(generators[0]), np.random.set_state(generators[1]), torch.set_rng_state(generators[2])
    train(accelerator, run, 4)
    expected, expected_lr, expected_margin = weights(run), run[2].get_last_lr(), run[3].margin()

    other = tiny_run(accelerator, seed=1)  # other weights, other optimizer state, generators moved on
    train(accelerator, other, 1)
    accelerator.step = 0
    progress = resume(accelerator, checkpoint, other)
    assert progress == {"global_step": 3, "history": [{"eer": 12.5}]}
    assert accelerator.step == 7
    assert (random.random(), float(np.random.rand()), torch.rand(3).tolist()) == draws
    resume(accelerator, checkpoint, other)  # the generators back to the checkpoint, as after a kill
    train(accelerator, other, 4)
    assert all(torch.equal(a, b) for a, b in zip(weights(other), expected))  # bit-exact
    assert other[2].get_last_lr() == expected_lr and other[3].margin() == expected_margin


def test_eisv_model_weights_round_trip(accelerator, tmp_path):
    from _tiny import tiny_config
    from modeling_eisv import EISVForSpeakerVerification

    # GE2E: its state-dict hook unshares the LSTM weights that cuDNN flattens into one buffer.
    model = accelerator.prepare(EISVForSpeakerVerification(tiny_config("ge2e_lstm", num_speakers=3)))
    checkpoint = save_checkpoint(accelerator, tmp_path, 1, model, None, {})
    torch.manual_seed(5)
    fresh = accelerator.prepare(EISVForSpeakerVerification(tiny_config("ge2e_lstm", num_speakers=3)))
    load_checkpoint(accelerator, checkpoint, fresh, None)
    reference = model.state_dict()
    assert all(torch.equal(tensor, reference[key]) for key, tensor in fresh.state_dict().items())
    other = accelerator.prepare(EISVForSpeakerVerification(tiny_config("ge2e_lstm", num_speakers=4)))
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(accelerator, checkpoint, other, None)


def test_a_crafted_pickle_is_refused_and_never_run(accelerator, tmp_path):
    run = tiny_run(accelerator, seed=0)
    checkpoint = save(accelerator, tmp_path / "checkpoints", 3, run)
    pickle.loads(pickle.dumps(WritesAFile(tmp_path / "proof")))
    assert (tmp_path / "proof").is_file(), "the payload must work, or this test proves nothing"
    target = tmp_path / "pwned"
    (checkpoint / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(WritesAFile(target)))
    with pytest.raises(CheckpointError, match="contains pickles, which --resume does not load: they can run code"):
        resume(accelerator, checkpoint, run)
    assert not target.exists()


def test_a_checkpoint_of_an_older_eisv_is_refused_with_a_message(accelerator, tmp_path):
    # What eisv wrote before: accelerate's save_state, schedules in custom_checkpoint_*.pkl.
    old = Accelerator(cpu=True)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    old.prepare(model, optimizer)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    old.register_for_checkpointing(scheduler, MarginSchedule(0.2, 5))
    old.save_state(str(tmp_path / "step_3"))
    run = tiny_run(accelerator, seed=0)
    target = tmp_path / "pwned"
    (tmp_path / "step_3" / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(WritesAFile(target)))
    assert latest_checkpoint(tmp_path) == tmp_path / "step_3"  # found, so --resume latest can say why not
    with pytest.raises(CheckpointError, match="written by an older eisv"):
        resume(accelerator, tmp_path / "step_3", run)
    assert not target.exists()


def test_a_crafted_optimizer_file_is_refused_by_the_restricted_unpickler(accelerator, tmp_path):
    run = tiny_run(accelerator, seed=0)
    checkpoint = save(accelerator, tmp_path, 3, run)
    target = tmp_path / "pwned"
    (checkpoint / "optimizer.pt").write_bytes(pickle.dumps(WritesAFile(target), protocol=2))  # torch.save's protocol
    marker = json.loads((checkpoint / "COMPLETE").read_text())  # a crafted checkpoint fixes its marker too
    marker["files"]["optimizer.pt"] = (checkpoint / "optimizer.pt").stat().st_size
    (checkpoint / "COMPLETE").write_text(json.dumps(marker))
    with pytest.raises(CheckpointError, match="weights_only"):
        resume(accelerator, checkpoint, run)
    assert not target.exists()


def test_incomplete_changed_or_foreign_checkpoints_are_refused(accelerator, tmp_path):
    run = tiny_run(accelerator, seed=0)
    checkpoint = save(accelerator, tmp_path, 3, run)
    marker = (checkpoint / "COMPLETE").read_text()
    (checkpoint / "COMPLETE").write_text(json.dumps({**json.loads(marker), "num_processes": 2}))
    with pytest.raises(CheckpointError, match="written by 2 processes, resumed with 1"):
        resume(accelerator, checkpoint, run)
    (checkpoint / "COMPLETE").write_text(marker)
    with open(checkpoint / "model.safetensors", "r+b") as handle:
        handle.truncate(100)
    with pytest.raises(CheckpointError, match="model.safetensors is missing or was changed"):
        resume(accelerator, checkpoint, run)
    (checkpoint / "COMPLETE").unlink()
    with pytest.raises(CheckpointError, match="no COMPLETE file"):
        resume(accelerator, checkpoint, run)


def test_restore_state_dict_refuses_keys_the_object_does_not_have():
    margins = MarginSchedule(0.2, 5)
    with pytest.raises(CheckpointError, match="margin_schedule"):
        restore_state_dict(margins, {"step_count": 3, "step": 0}, "margin_schedule")
    restore_state_dict(margins, {"step_count": 3}, "margin_schedule")
    assert margins.step_count == 3


def test_a_kill_while_writing_keeps_the_previous_checkpoint(accelerator, tmp_path, monkeypatch):
    run = tiny_run(accelerator, seed=0)
    save(accelerator, tmp_path, 3, run)

    def dies_half_way(state, handle, **kwargs):
        handle.write(b"partial")
        raise Killed

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(Killed):
        save(accelerator, tmp_path, 6, run)
    monkeypatch.undo()
    latest = latest_checkpoint(tmp_path)
    assert latest == tmp_path / "step_3" and resume(accelerator, latest, run)["global_step"] == 3
    save(accelerator, tmp_path, 6, run)  # the next save clears what the kill left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_3", "step_6"]


@pytest.mark.parametrize("keep, first, second", [(1, 6, 6), (1, 3, 6), (2, 6, 6)],
                         ids=["resave-final-step-keep-1", "next-step-keep-1", "resave-keep-2"])
@pytest.mark.parametrize("killed", ["os.replace", "shutil.rmtree"])
def test_a_kill_at_any_rename_or_delete_leaves_a_complete_checkpoint(accelerator, tmp_path, monkeypatch, keep,
                                                                     first, second, killed):
    module, name = {"os.replace": (os, "replace"), "shutil.rmtree": (shutil, "rmtree")}[killed]
    original, recovered_from_staging = getattr(module, name), False
    for k in range(1, 50):
        folder = tmp_path / f"kill-at-{k}"
        run = tiny_run(accelerator, seed=0)
        save(accelerator, folder, first, run, keep, version="old")
        calls = []

        def dies_at_k(*args, **kwargs):
            calls.append(args)
            if len(calls) == k:
                raise Killed
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, dies_at_k)
        try:
            save(accelerator, folder, second, run, keep, version="new")
            finished = True
        except Killed:
            finished = False
        monkeypatch.undo()
        latest = latest_checkpoint(folder)
        assert latest is not None, f"nothing resumable after a kill at {killed} call {k}"
        progress = resume(accelerator, latest, tiny_run(accelerator, seed=1))
        assert progress in ({"global_step": first, "version": "old"}, {"global_step": second, "version": "new"})
        recovered_from_staging |= latest.name.startswith(".staging-")
        if finished:
            assert latest == folder / f"step_{second}" and progress["version"] == "new"
            break
    else:
        raise AssertionError("the save never finished")
    if killed == "os.replace" and first == second:
        assert recovered_from_staging, "no kill fell between moving step_N aside and renaming the new one in"


def test_latest_checkpoint_picks_the_newest_complete_folder(accelerator, tmp_path):
    run = tiny_run(accelerator, seed=0)
    for step in (3, 6):
        save(accelerator, tmp_path, step, run, keep=0)
    shutil.copytree(tmp_path / "step_6", tmp_path / ".staging-step_9-00ff")
    (tmp_path / ".staging-step_9-00ff" / "COMPLETE").unlink()  # killed before its marker
    (tmp_path / "step_12.tmp").mkdir()  # an older eisv's staging name
    assert latest_checkpoint(tmp_path) == tmp_path / "step_6"
    shutil.copytree(tmp_path / "step_6", tmp_path / ".staging-step_9-0aaa")  # killed after its marker
    assert latest_checkpoint(tmp_path) == tmp_path / ".staging-step_9-0aaa"
    assert latest_checkpoint(tmp_path / "missing") is None


def test_checkpoint_folders_and_files_honour_the_umask(accelerator, tmp_path):
    previous = os.umask(0o022)
    try:
        checkpoint = save(accelerator, tmp_path / "checkpoints", 3, tiny_run(accelerator, seed=0))
    finally:
        os.umask(previous)
    assert (checkpoint.parent.stat().st_mode & 0o777) == 0o755
    assert (checkpoint.stat().st_mode & 0o777) == 0o755
    assert {p.stat().st_mode & 0o777 for p in checkpoint.iterdir()} == {0o644}


TWO_PROCESSES = """
import random, sys
import numpy as np, torch
from accelerate import Accelerator
from eisv_training.checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint

accelerator = Accelerator(cpu=True)
rank = accelerator.process_index
random.seed(rank); np.random.seed(rank); torch.manual_seed(rank)  # each process its own generators
model = torch.nn.Linear(3, 2)
model, optimizer = accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.1))
for step in (1, 2, 2):  # the final step saved twice: the move-aside path
    save_checkpoint(accelerator, sys.argv[1], step, model, optimizer, {"global_step": step}, {}, keep=1)
draws = [random.random(), float(np.random.rand()), torch.rand(2).tolist()]
random.seed(99); np.random.seed(99); torch.manual_seed(99)
progress, _ = load_checkpoint(accelerator, latest_checkpoint(sys.argv[1]), model, optimizer)
assert [random.random(), float(np.random.rand()), torch.rand(2).tolist()] == draws, rank
# a file per rank, not stdout: two processes printing into one pipe can interleave under load
open(f"{sys.argv[1]}.rank{rank}.txt", "w").write(f"rank {rank} step {progress['global_step']} draws {draws}")
accelerator.wait_for_everyone()
accelerator.end_training()
"""


def test_two_processes_over_gloo_save_and_restore_their_own_generators(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "two.py").write_text(TWO_PROCESSES)
    command = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
               str(tmp_path / "two.py"), str(tmp_path / "checkpoints")]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr[-5000:]
    lines = sorted((tmp_path / f"checkpoints.rank{rank}.txt").read_text().strip() for rank in (0, 1))
    assert len(lines) == 2 and lines[0].split("draws")[1] != lines[1].split("draws")[1]
    folder = tmp_path / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["step_2"]
    names = {p.name for p in (folder / "step_2").iterdir()}
    assert {"rng_state_0.json", "rng_state_1.json", "model.safetensors", "COMPLETE"} <= names
    assert read_progress(folder / "step_2") == {"global_step": 2}
