"""eisv_training/loop.py and step.py on a tiny ECAPA on the CPU: a step with a non-finite gradient changes
nothing and is recorded with its parameters, the timing figures, the optimizer, and --torch_compile."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator

from _tiny import tiny_config
from eisv_training.loop import TrainingLoop
from eisv_training.schedules import MarginSchedule
from eisv_training.step import build_optimizer, compile_encoders, skips_on_device
from eisv_training.training_state import TrainingState
from modeling_eisv import EISVForSpeakerVerification

ARGS = dict(logging_steps=2, max_grad_norm=5.0, checkpointing_steps=0, checkpoints_total_limit=2, optimizer="adamw",
            learning_rate=1e-3, weight_decay=1e-4)


def make_loop(tmp_path, optimizer="adamw", compile_backend=None):
    torch.manual_seed(0)
    accelerator = Accelerator(cpu=True)
    network = EISVForSpeakerVerification(tiny_config(num_speakers=4, erl_weight=0.5))
    if compile_backend:
        assert compile_encoders(network, None, compile_backend, say=lambda *a: None)
    args = SimpleNamespace(**{**ARGS, "optimizer": optimizer})
    optimizer = build_optimizer(network.parameters(), args)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    model, optimizer = accelerator.prepare(network, optimizer)
    return TrainingLoop(accelerator, model, network, optimizer, scheduler, MarginSchedule(0.2, 0), None, None, None,
                        TrainingState(), args, SimpleNamespace(kd_weight=0.0, l2sp_weight=0.0), total_steps=4,
                        batches_per_epoch=4, num_epochs=1, head_only_steps=0, output_dir=Path(tmp_path))


def batch(seed=0, poison=False):
    """A collator-like batch of 4 rows x 50 frames: 2 speakers, pairs (0, 1) and (2, 3), no EM mask."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(4, 50, 80, generator=g)
    if poison:
        features[2, 10, 3] = float("inf")
    return {"input_features": features, "attention_mask": torch.ones(4, 50, dtype=torch.int32),
            "labels": torch.tensor([0, 0, 1, 1]), "pair_index": torch.tensor([[0, 1], [2, 3]]),
            "em_mask": torch.zeros(4, 50, dtype=torch.bool), "neutral_rows": torch.zeros(4, dtype=torch.bool)}


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_a_non_finite_step_changes_nothing_and_is_recorded_with_its_parameters(tmp_path, optimizer):
    loop = make_loop(tmp_path, optimizer)
    assert loop.non_finite.on_device == (optimizer == "adamw")  # fused AdamW: skipped without a host read
    loop.step(batch(0))
    before = {k: v.detach().clone() for k, v in loop.network.named_parameters()}  # (BatchNorm statistics do move)
    moments = [s["exp_avg"].clone() for s in loop.optimizer.optimizer.state.values()] if optimizer == "adamw" else []
    terms = loop.step(batch(1, poison=True))
    assert not torch.isfinite(terms["loss"])
    loop.non_finite.flush()
    after = dict(loop.network.named_parameters())
    assert all(torch.equal(before[k], after[k]) for k in before)  # no update, not even weight decay
    if optimizer == "adamw":
        states = list(loop.optimizer.optimizer.state.values())  # the moments and the step count stand still too
        assert all(float(s["step"]) == 1.0 and torch.equal(s["exp_avg"], m) for s, m in zip(states, moments))
    assert loop.state.global_step == 2
    [record] = loop.state.non_finite
    assert record["step"] == 1 and record["loss_finite"] is False
    assert record["parameters"] and all(name.startswith(("eisv.encoder.", "aam.")) for name in record["parameters"])
    assert len(record["parameters"]) <= 8
    loop.step(batch(2))  # and training goes on
    after = dict(loop.network.named_parameters())
    assert not any(torch.equal(before[k], after[k]) for k in before)
    loop.non_finite.flush()
    assert len(loop.state.non_finite) == 1


def test_a_resumed_optimizer_without_fused_groups_checks_on_the_host():
    parameter = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.AdamW([parameter], fused=True)
    assert skips_on_device(optimizer)
    optimizer.param_groups[0]["fused"] = False  # what an older run's checkpoint restores
    assert not skips_on_device(optimizer)


def test_timing_figures_cover_the_steps(tmp_path):
    loop = make_loop(tmp_path)
    for seed in range(3):
        loop.timer.start_batch()
        loop.timer.got_batch()
        loop.step(batch(seed))
    loop.timer.close()
    stats = loop.stats()
    assert stats["samples_per_s"] > 0 and 0 <= stats["data_wait_fraction"] < 1
    assert loop.timer.samples == 12 and stats["gpu_step_ms"] is None and stats["device"] == "cpu"


def test_compiled_encoder_gives_the_eager_losses_and_keeps_parameter_names(tmp_path):
    eager, compiled = make_loop(tmp_path / "e"), make_loop(tmp_path / "c", compile_backend="aot_eager")
    assert list(compiled.network.state_dict()) == list(eager.network.state_dict())  # checkpoints unchanged
    for seed in range(3):
        a, b = eager.step(batch(seed))["loss"].item(), compiled.step(batch(seed))["loss"].item()
        assert a == pytest.approx(b, rel=1e-4, abs=1e-5)


@pytest.mark.slow
def test_inductor_compiled_encoder_gives_the_eager_losses(tmp_path):
    eager, compiled = make_loop(tmp_path / "e"), make_loop(tmp_path / "c", compile_backend="inductor")
    for seed in range(3):
        a, b = eager.step(batch(seed))["loss"].item(), compiled.step(batch(seed))["loss"].item()
        assert a == pytest.approx(b, rel=1e-3, abs=1e-4)


def test_compile_mode_reaches_torch_compile_for_student_and_teacher(monkeypatch):
    """--torch_compile_mode reduce-overhead (CUDA graphs) is passed on; the default mode passes none."""
    calls = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kwargs: calls.append(kwargs))
    network = EISVForSpeakerVerification(tiny_config("ecapa_tdnn", num_speakers=4))
    teacher = SimpleNamespace(teacher=EISVForSpeakerVerification(tiny_config("ecapa_tdnn", num_speakers=4)).eisv)
    assert compile_encoders(network, teacher, "inductor", say=lambda *a: None, mode="reduce-overhead")
    assert calls == [{"backend": "inductor", "mode": "reduce-overhead"}] * 2
    calls.clear()
    assert compile_encoders(network, None, "inductor", say=lambda *a: None)
    assert calls == [{"backend": "inductor"}]


def test_ge2e_stays_eager():
    network = EISVForSpeakerVerification(tiny_config("ge2e_lstm", num_speakers=4))
    said = []
    assert not compile_encoders(network, None, "aot_eager", say=said.append)
    assert "stays eager" in said[0]
