"""EISVForSpeakerVerification: losses, EM mask, initialisation and checkpoints."""

import logging
import math

import pytest
import torch

from modeling_eisv import EISVForSpeakerVerification, EISVModel
from modeling_eisv.losses import AAMSoftmaxHead, erl_loss
from _tiny import tiny_config


def features(batch=4, frames=120, bins=80, seed=0):
    return torch.randn(batch, frames, bins, generator=torch.Generator().manual_seed(seed))


def test_outputs_and_loss_parts():
    torch.manual_seed(0)
    model = EISVForSpeakerVerification(tiny_config(num_speakers=5, erl_weight=0.5))
    labels = torch.tensor([0, 0, 3, 3])
    pairs = torch.tensor([[0, 1], [2, 3]])
    out = model(features(), labels=labels, pair_index=pairs)
    assert out.logits.shape == (4, 5) and out.embeddings.shape == (4, 32)
    expected_erl = (1 - torch.cosine_similarity(out.embeddings[[0, 2]], out.embeddings[[1, 3]])).mean()
    assert torch.allclose(out.erl_loss, expected_erl, atol=1e-6)
    assert torch.allclose(out.loss, out.aam_loss + 0.5 * out.erl_loss, atol=1e-6)
    out.loss.backward()
    assert model.aam.weight.grad is not None and model.eisv.encoder.input_block.conv.weight.grad.abs().sum() > 0
    no_pairs = model(features(), labels=labels)
    assert no_pairs.erl_loss == 0 and torch.allclose(no_pairs.loss, no_pairs.aam_loss)
    assert model(features()).loss is None


def test_aam_margin_penalises_the_target_only():
    head = AAMSoftmaxHead(8, 3, margin=0.0, scale=10.0)
    torch.nn.init.normal_(head.weight)
    embeddings, labels = torch.randn(6, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    logits, plain = head(embeddings, labels)
    assert torch.allclose(plain, torch.nn.functional.cross_entropy(logits, labels), atol=1e-5)
    head.margin = 0.3
    _, with_margin = head(embeddings, labels)
    assert with_margin > plain  # a margin makes the target harder
    # a sample exactly on its class centre: cos(0 + m) replaces cos(0)
    head = AAMSoftmaxHead(2, 2, margin=0.3, scale=1.0)
    head.weight.data = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    _, loss = head(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    expected = -torch.log_softmax(torch.tensor([math.cos(0.3), 0.0]), 0)[0]
    assert torch.allclose(loss, expected, atol=1e-3)  # cosines are clamped just inside [-1, 1]


def test_erl_loss_values():
    e = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert erl_loss(e, torch.tensor([[0, 1]])) == 0
    assert torch.isclose(erl_loss(e, torch.tensor([[0, 2]])), torch.tensor(1.0))
    assert torch.isclose(erl_loss(e, torch.tensor([[0, 3], [0, 1]])), torch.tensor(1.0))
    assert erl_loss(e, torch.zeros(0, 2, dtype=torch.long)) == 0


def test_em_mask_only_in_training():
    torch.manual_seed(0)
    model = EISVForSpeakerVerification(tiny_config(num_speakers=2))
    x = features(2)
    mask = torch.zeros(2, 120, dtype=torch.bool)
    mask[:, 30:60] = True
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x, em_mask=mask).embeddings, model(x).embeddings)
        masked_input = x.masked_fill(mask.unsqueeze(-1), 0.0)
        model.train()
        torch.manual_seed(1)
        a = model(x, em_mask=mask).embeddings
        torch.manual_seed(1)
        b = model(masked_input).embeddings
    assert torch.allclose(a, b)


def test_labels_out_of_range():
    model = EISVForSpeakerVerification(tiny_config(num_speakers=3))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        model(features(2), labels=torch.tensor([0, 3]))


def test_conv_init_is_not_the_transformers_default():
    model = EISVModel(tiny_config())
    conv = model.encoder.blocks[0].tdnn1.conv
    expected_std = math.sqrt(2.0 / (conv.out_channels * conv.kernel_size[0]))  # He, fan_out
    assert abs(conv.weight.std().item() - expected_std) / expected_std < 0.2


def test_new_num_speakers_keeps_encoder_and_warns(tmp_path, caplog):
    torch.manual_seed(0)
    model = EISVForSpeakerVerification(tiny_config(num_speakers=4)).eval()
    model.save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING):
        loaded = EISVForSpeakerVerification.from_pretrained(tmp_path, num_speakers=7).eval()
    assert "new AAM-softmax head for num_speakers=7" in caplog.text
    assert loaded.aam.weight.shape == (7, 32) and loaded.config.num_speakers == 7
    x = features(2)
    with torch.no_grad():
        assert torch.allclose(loaded(x).embeddings, model(x).embeddings, atol=1e-6)
    same = EISVForSpeakerVerification.from_pretrained(tmp_path)
    assert torch.equal(same.aam.weight, model.aam.weight)


def test_encoder_checkpoint_loads_into_the_training_model(tmp_path):
    torch.manual_seed(0)
    encoder = EISVModel(tiny_config("ge2e_lstm")).eval()
    encoder.save_pretrained(tmp_path)
    model = EISVForSpeakerVerification.from_pretrained(tmp_path, num_speakers=9).eval()
    x = features(2, 200, 40).abs()
    with torch.no_grad():
        assert torch.allclose(model(x).embeddings, encoder(x).embeddings, atol=1e-6)
    assert (tmp_path / "model.safetensors").is_file() and not list(tmp_path.glob("*.bin"))
