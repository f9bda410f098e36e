"""ECAPA-TDNN and GE2E encoders: shapes, and padding never leaking into the embedding."""

import pytest
import torch

from modeling_eisv import EISVFeatureExtractor, EISVModel
from modeling_eisv.ge2e_lstm import partial_windows
from _tiny import tiny_config, voice_like


@pytest.mark.parametrize("encoder_type", ["ecapa_tdnn", "ge2e_lstm"])
@pytest.mark.parametrize("full_size", [False, True])
def test_embedding_inside_padded_batch_equals_alone(encoder_type, full_size):
    torch.manual_seed(0)
    config = tiny_config(encoder_type) if not full_size else None
    if full_size:
        from modeling_eisv import EISVConfig
        config = EISVConfig(encoder_type=encoder_type)
    model = EISVModel(config).eval()
    extractor = EISVFeatureExtractor(config.frontend)
    clips = [voice_like(s, seed=i) for i, s in enumerate((0.7, 3.2, 1.9, 2.4))]
    with torch.no_grad():
        batch = model(**extractor(clips, sampling_rate=16000, return_tensors="pt")).embeddings
        for row, clip in enumerate(clips):
            alone = model(**extractor(clip, sampling_rate=16000, return_tensors="pt")).embeddings[0]
            assert (batch[row] - alone).abs().max() <= 1e-4
    assert batch.shape == (4, config.embedding_size)


def test_ge2e_partial_windows_match_resemblyzer_slices():
    # resemblyzer.VoiceEncoder.compute_partial_slices, written out for 16 kHz, rate 1.3, coverage 0.75
    def reference(n_samples):
        n_frames = int(-(-(n_samples + 1) // 160))
        starts = list(range(0, max(1, n_frames - 160 + 77 + 1), 77))
        if len(starts) > 1 and (n_samples - starts[-1] * 160) / (160 * 160) < 0.75:
            starts = starts[:-1]
        return starts

    lengths = [100, 16000, 25599, 25600, 31999, 32000, 44160, 44319, 44320, 160000]
    frames = torch.tensor([1 + n // 160 for n in lengths])
    starts, owner = partial_windows(frames, 160, 77, 0.75)
    for index, n in enumerate(lengths):
        assert starts[owner == index].tolist() == reference(n), n


def test_ecapa_rejects_wrong_feature_size():
    model = EISVModel(tiny_config())
    with pytest.raises(ValueError, match=r"\(batch, frames, 80\)"):
        model(torch.zeros(1, 100, 40))
    with pytest.raises(ValueError, match="no real frame"):
        model(torch.zeros(2, 100, 80), attention_mask=torch.tensor([[1] * 100, [0] * 100]))


def test_ge2e_state_dict_survives_flat_lstm_weights():
    """cuDNN makes the LSTM weights views of one buffer; a checkpoint must still hold every tensor."""
    from accelerate.utils.other import clean_state_dict_for_safetensors

    model = EISVModel(tiny_config("ge2e_lstm"))
    lstm = model.encoder.lstm
    flat = torch.cat([p.detach().flatten() for p in lstm.parameters()])
    offset = 0
    for param in lstm.parameters():  # what flatten_parameters does on CUDA
        param.data = flat[offset: offset + param.numel()].view_as(param)
        offset += param.numel()
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    cleaned = clean_state_dict_for_safetensors(model.state_dict())
    assert cleaned.keys() == expected.keys()
    assert all(torch.equal(cleaned[k], expected[k]) for k in expected)


def test_ge2e_silent_window_has_finite_gradients():
    """A window whose ReLU output is all zero (silence, padding, a fully masked span) must not blow up."""
    torch.manual_seed(0)
    model = EISVModel(tiny_config("ge2e_lstm"))
    with torch.no_grad():
        model.encoder.projection.bias.fill_(-100.0)  # every partial embedding is exactly zero
    features = torch.rand(2, 300, 40, requires_grad=True)
    embeddings = model(features).embeddings
    assert torch.equal(embeddings, torch.zeros_like(embeddings))
    embeddings.sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None] + [features.grad]
    assert all(torch.isfinite(g).all() and g.abs().max() < 1e3 for g in grads)
