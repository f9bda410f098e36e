"""eisv_training.forgetting: layer groups and freezing, the teacher anchor, L2-SP; and the options' checks."""

import pytest
import torch

from eisv_training.arguments import parse_arguments
from eisv_training.forgetting import StartingPointPenalty, TeacherAnchor, encoder_layers, parameter_groups
from modeling_eisv import EISVConfig, EISVForSpeakerVerification


def tiny_ge2e():
    torch.manual_seed(0)
    model = EISVForSpeakerVerification(EISVConfig(encoder_type="ge2e_lstm", ge2e_hidden_size=8, ge2e_num_layers=3,
                                                  embedding_size=8, num_speakers=4))
    with torch.no_grad():  # a random tiny LSTM + ReLU gives ~0 embeddings; a positive bias keeps them alive
        model.eisv.encoder.projection.bias.uniform_(0.5, 1.0)
    return model


def test_ge2e_layers_are_the_lstm_layers_then_the_projection():
    layers = encoder_layers(tiny_ge2e(), "ge2e_lstm")
    assert len(layers) == 4
    assert all(name.endswith("_l0") for name, _ in layers[0])
    assert all("projection" in name for name, _ in layers[-1])


def test_frozen_layers_get_no_group_and_lower_layers_slower_rates():
    model = tiny_ge2e()
    groups = parameter_groups(model, "ge2e_lstm", 1e-3, layer_lr_decay=0.5, freeze_layers=1)
    rates = {g["name"]: g["lr"] for g in groups}
    assert "encoder layer 0" not in rates
    assert rates == {"encoder layer 1": 2.5e-4, "encoder layer 2": 5e-4, "encoder layer 3": 1e-3, "head": 1e-3}
    assert not any(p.requires_grad for _, p in encoder_layers(model, "ge2e_lstm")[0])
    with pytest.raises(ValueError, match="has 4 layers"):
        parameter_groups(tiny_ge2e(), "ge2e_lstm", 1e-3, freeze_layers=5)


def test_neutral_anchor_is_the_teachers_mean_neutral_embedding_of_the_speaker():
    model = tiny_ge2e()
    teacher = TeacherAnchor(model.eisv, anchor="neutral")
    features, mask = torch.randn(4, 50, 40).abs(), torch.ones(4, 50, dtype=torch.long)
    labels = torch.tensor([0, 0, 0, 1])
    neutral = torch.tensor([True, True, False, False])
    anchors = teacher.anchors(features, mask, labels, neutral)
    plain = torch.nn.functional.normalize(teacher.teacher(features, mask).embeddings, dim=-1)
    mean = torch.nn.functional.normalize(plain[0] + plain[1], dim=-1)
    for row in range(3):  # speaker 0: every crop is pulled to its two neutral crops' mean
        torch.testing.assert_close(anchors[row], mean)
    torch.testing.assert_close(anchors[3], plain[3])  # speaker 1 has no neutral crop: the same input
    assert plain.norm(dim=-1).min() > 0.99
    assert teacher.loss(plain, plain).item() == pytest.approx(0.0, abs=1e-6)
    assert teacher.loss(-plain, plain).item() == pytest.approx(2.0, abs=1e-6)


def test_contrast_loss_rewards_own_speaker_anchors_and_its_gradient_pushes_from_the_others():
    anchors = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]), dim=-1)
    labels = torch.tensor([0, 0, 1, 1])
    on_own = TeacherAnchor.contrast_loss(anchors.clone(), anchors, labels)
    swapped = TeacherAnchor.contrast_loss(anchors.flip(0), anchors, labels)
    assert on_own < 0.05 < swapped  # at its own anchors a margin of 0.2 at scale 30 is nearly free
    # Against additive-margin softmax written out for two prototypes: the same number.
    student = torch.tensor([[0.8, 0.6], [0.6, 0.8], [0.2, 0.98], [0.9, 0.1]], requires_grad=True)
    cos = torch.nn.functional.normalize(student, dim=-1) @ torch.eye(2)
    expected = torch.nn.functional.cross_entropy(30 * (cos - 0.2 * torch.nn.functional.one_hot(labels, 2)), labels)
    got = TeacherAnchor.contrast_loss(student, anchors, labels)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    got.backward()
    assert student.grad[3, 0] > 0  # speaker 1's row near speaker 0's anchor is pushed away from it


def test_contrast_needs_the_teacher():
    with pytest.raises(SystemExit, match="kd_contrast_weight"):
        parse_arguments(["--kd_weight", "0", "--aam_weight", "1", "--kd_contrast_weight", "1"])


def test_l2sp_is_zero_at_the_start_and_the_squared_distance_after_a_move():
    model = tiny_ge2e()
    penalty = StartingPointPenalty(model)
    assert penalty().item() == 0.0
    encoder = {id(p) for p in model.eisv.encoder.parameters()}
    assert all(id(p) in encoder for p, _ in penalty.pairs)  # the new head is free
    with torch.no_grad():
        model.eisv.encoder.projection.weight.add_(0.5)
        model.aam.weight.add_(3.0)
    assert penalty().item() == pytest.approx(0.25 * model.eisv.encoder.projection.weight.numel())
    penalty().backward()
    assert model.eisv.encoder.projection.weight.grad.abs().sum() > 0


def test_aam_weight_scales_the_speaker_loss_only():
    torch.manual_seed(0)
    features, mask = torch.randn(4, 50, 40).abs(), torch.ones(4, 50, dtype=torch.long)
    labels, pairs = torch.tensor([0, 0, 1, 1]), torch.tensor([[0, 1], [2, 3]])
    outputs = {}
    for weight in (1.0, 0.0):
        model = tiny_ge2e()
        model.config.aam_weight = weight
        outputs[weight] = model(input_features=features, attention_mask=mask, labels=labels, pair_index=pairs)
    torch.testing.assert_close(outputs[0.0].loss, outputs[0.0].erl_loss * model.config.erl_weight)
    torch.testing.assert_close(outputs[1.0].loss, outputs[1.0].aam_loss + model.config.erl_weight * outputs[1.0].erl_loss)
    with pytest.raises(ValueError, match="aam_weight"):
        EISVConfig(aam_weight=-1)


def test_fine_tuning_defaults_to_invariance_only_and_scratch_to_speaker_classification():
    _, fine_tune, _, _ = parse_arguments([])
    assert (fine_tune.aam_weight, fine_tune.kd_weight, fine_tune.kd_anchor, fine_tune.kd_contrast_weight,
            fine_tune.head_warmup_epochs) == (0.0, 10.0, "neutral", 1.0, 0.0)
    _, classify, _, _ = parse_arguments(["--aam_weight", "1"])  # the earlier rounds' protection: LP-FT + teacher
    assert (classify.kd_weight, classify.kd_anchor, classify.kd_contrast_weight, classify.head_warmup_epochs) == (
        10.0, "same_input", 0.0, 2.0)
    _, scratch, _, _ = parse_arguments(["--init_from", "scratch"])
    assert (scratch.aam_weight, scratch.kd_weight, scratch.kd_contrast_weight, scratch.head_warmup_epochs) == (
        1.0, 0.0, 0.0, 0.0)
    _, no_teacher, _, _ = parse_arguments(["--kd_weight", "0"])
    assert no_teacher.kd_contrast_weight == 0.0


def test_invariance_only_has_no_head_warmup_and_needs_something_to_train():
    _, model_args, _, _ = parse_arguments(["--aam_weight", "0", "--kd_anchor", "neutral"])
    assert model_args.head_warmup_epochs == 0.0 and model_args.kd_weight == 10.0
    with pytest.raises(SystemExit, match="head_warmup_epochs"):
        parse_arguments(["--aam_weight", "0", "--head_warmup_epochs", "2"])
    with pytest.raises(SystemExit, match="nothing to train"):
        parse_arguments(["--aam_weight", "0", "--erl_weight", "0", "--kd_weight", "0"])
    with pytest.raises(SystemExit, match="l2sp_weight"):
        parse_arguments(["--init_from", "scratch", "--l2sp_weight", "0.01"])
