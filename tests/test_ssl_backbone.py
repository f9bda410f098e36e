"""The `ssl_backbone` encoder: tiny random WavLM / wav2vec 2.0 / HuBERT / UniSpeech-SAT backbones give
padding-independent embeddings, train (gradients reach the layer weights and the backbone), freeze by
layer groups, and honour emotion-aware masking on waveforms."""

import numpy as np
import pytest
import torch

from _tiny import TINY_XVECTOR, tiny_backbone_config, voice_like
from eisv_training.forgetting import encoder_layers, parameter_groups
from modeling_eisv import EISVConfig, EISVFeatureExtractor, EISVForSpeakerVerification, EISVModel
from modeling_eisv.modeling_eisv import apply_em_mask

MODEL_TYPES = ("wavlm", "wav2vec2", "hubert", "unispeech-sat")
WAVES = [voice_like(seconds, seed=i) for i, seconds in enumerate([1.3, 0.7, 2.1])]


def ssl_config(model_type="wavlm", head="attentive", **backbone):
    xvector = dict(xvector_tdnn_dim=TINY_XVECTOR["tdnn_dim"], xvector_tdnn_kernel=TINY_XVECTOR["tdnn_kernel"],
                   xvector_tdnn_dilation=TINY_XVECTOR["tdnn_dilation"])
    return EISVConfig(encoder_type="ssl_backbone", backbone_config=tiny_backbone_config(model_type, **backbone).to_dict(),
                      ssl_head=head, ecapa_attention_channels=8, embedding_size=24, num_speakers=3, **xvector)


def embed(model, waves, extractor=None):
    extractor = extractor or EISVFeatureExtractor("waveform")
    with torch.no_grad():
        return model(**extractor(waves, sampling_rate=16000, return_tensors="pt")).embeddings


@pytest.mark.parametrize("model_type", MODEL_TYPES)
@pytest.mark.parametrize("feat_extract_norm", ["group", "layer"])
@pytest.mark.parametrize("head", ["attentive", "xvector"])
def test_padded_batch_equals_single_clips(model_type, feat_extract_norm, head):
    torch.manual_seed(0)
    model = EISVModel(ssl_config(model_type, head, feat_extract_norm=feat_extract_norm)).eval()
    batch = embed(model, WAVES)
    assert batch.shape == (3, 24) and torch.isfinite(batch).all()
    single = torch.cat([embed(model, [wave]) for wave in WAVES])
    torch.testing.assert_close(batch, single, atol=2e-5, rtol=0)


def test_group_norm_padding_would_leak_without_the_masked_norm():
    """The masked first GroupNorm is what makes padding harmless (transformers' own batch differs)."""
    torch.manual_seed(0)
    model = EISVModel(ssl_config(feat_extract_norm="group")).eval()
    single = embed(model, WAVES[1:2])
    model.encoder.backbone.feature_extractor.conv_layers[0].layer_norm._forward_hooks.clear()  # transformers' norm
    leaked = embed(model, WAVES)[1:2]
    assert (leaked - single).abs().max() > 1e-3


def test_training_step_reaches_layer_weights_and_backbone():
    torch.manual_seed(0)
    model = EISVForSpeakerVerification(ssl_config()).train()
    features = EISVFeatureExtractor("waveform")(WAVES, sampling_rate=16000, return_tensors="pt")
    output = model(**features, labels=torch.tensor([0, 1, 2]), pair_index=torch.tensor([[0, 1]]))
    output.loss.backward()
    encoder = model.eisv.encoder
    assert encoder.layer_weights.grad is not None and encoder.layer_weights.grad.abs().sum() > 0
    assert encoder.backbone.encoder.layers[0].attention.k_proj.weight.grad.abs().sum() > 0
    assert encoder.backbone.feature_extractor.conv_layers[0].conv.weight.grad.abs().sum() > 0


def test_freeze_layers_one_freezes_the_cnn_and_two_plus_layers_the_backbone():
    model = EISVForSpeakerVerification(ssl_config())
    layers = encoder_layers(model, "ssl_backbone")
    assert len(layers) == 2 + 2 + 1  # CNN, projection + positional conv, 2 transformer layers, head
    assert all(".feature_extractor." in name for name, _ in layers[0])
    assert {name for name, _ in layers[-1]} >= {"eisv.encoder.layer_weights", "eisv.encoder.projection.weight"}
    parameter_groups(model, "ssl_backbone", 1e-3, freeze_layers=1)
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {name for name, _ in layers[0]}
    model = EISVForSpeakerVerification(ssl_config())
    parameter_groups(model, "ssl_backbone", 1e-3, freeze_layers=4)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert not any(".backbone." in name for name in trainable) and "eisv.encoder.layer_weights" in trainable
    features = EISVFeatureExtractor("waveform")(WAVES, sampling_rate=16000, return_tensors="pt")
    model.train()(**features, labels=torch.tensor([0, 1, 2])).loss.backward()  # trains with the backbone frozen
    assert model.eisv.encoder.projection.weight.grad is not None


def test_em_mask_silences_the_hop_of_each_hidden_frame():
    waveforms = torch.ones(2, 1000)
    em_mask = torch.zeros(2, 5, dtype=torch.bool)
    em_mask[0, 1] = em_mask[1, 4] = True  # frame 1 = samples 160..319; frame 4 = 640..799
    masked = apply_em_mask(waveforms, em_mask, hop_length=160)
    assert masked[0, 160:320].eq(0).all() and masked[0, :160].eq(1).all() and masked[0, 320:].eq(1).all()
    assert masked[1, 640:800].eq(0).all() and int(masked[1].eq(0).sum()) == 160
    torch.manual_seed(0)
    model = EISVForSpeakerVerification(ssl_config(mask_time_prob=0.0))  # SpecAugment draws from numpy's RNG
    features = EISVFeatureExtractor("waveform")(WAVES, sampling_rate=16000, return_tensors="pt")
    frames = 1 + (features["input_features"].shape[1] - 400) // 160  # kaldi_fbank's grid, as the collator's
    em = torch.zeros(3, frames, dtype=torch.bool)
    em[0, 10:40] = True
    silenced = features["input_features"].clone()
    silenced[0, 1600:6400] = 0.0

    def run(seed=1, **inputs):  # training mode (dropout, SpecAugment): the same random draws for each call
        torch.manual_seed(seed)
        return model.train()(**inputs).embeddings

    masked = run(**features, em_mask=em)
    torch.testing.assert_close(masked, run(input_features=silenced, attention_mask=features["attention_mask"]))
    assert (masked - run(**features)).abs().max() > 1e-3
    with torch.no_grad():  # evaluation ignores the mask
        torch.testing.assert_close(model.eval()(**features, em_mask=em).embeddings, model(**features).embeddings)


def test_config_checks_name_the_field():
    with pytest.raises(ValueError, match="frontend.*waveform"):
        EISVConfig(encoder_type="ssl_backbone", frontend="kaldi_fbank")
    with pytest.raises(ValueError, match="frontend.*waveform"):
        EISVConfig(frontend="waveform")
    with pytest.raises(ValueError, match="backbone_config.*model_type"):
        EISVConfig(encoder_type="ssl_backbone", backbone_config={"hidden_size": 32})
    with pytest.raises(ValueError, match="ssl_head"):
        EISVConfig(encoder_type="ssl_backbone", ssl_head="mean")
    config = EISVConfig(encoder_type="ssl_backbone")
    assert (config.frontend, config.num_mel_bins, config.backbone_config) == ("waveform", 1, {"model_type": "wavlm"})


def test_features_of_the_wrong_frontend_are_refused():
    model = EISVModel(ssl_config()).eval()
    with pytest.raises(ValueError, match=r"\(batch, samples\)"):
        model(torch.zeros(1, 100, 80))


def test_save_and_reload_keeps_embeddings(tmp_path):
    torch.manual_seed(0)
    model = EISVModel(ssl_config(head="xvector")).eval()
    model.save_pretrained(tmp_path)
    reloaded = EISVModel.from_pretrained(tmp_path).eval()
    np.testing.assert_allclose(embed(model, WAVES).numpy(), embed(reloaded, WAVES).numpy(), atol=1e-6)
    assert (tmp_path / "ssl_backbone.py").is_file()
