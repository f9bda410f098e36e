"""The resnet encoder: WeSpeaker's ResNet34 as pyannote.audio runs it (random weights, real clips), padding
that never reaches the embedding, its statistics pooling, config checks and layer groups."""

import numpy as np
import pytest
import torch

from _pyannote import cosines, pyannote_embeddings, random_wespeaker, real_clips
from eisv_training.forgetting import encoder_layers, parameter_groups
from modeling_eisv import EISVConfig, EISVFeatureExtractor, EISVForSpeakerVerification, EISVModel
from modeling_eisv.pooling import masked_mean_std

TINY = dict(encoder_type="resnet", resnet_channels=4, resnet_num_blocks=[1, 2, 1, 1], embedding_size=24)


def wespeaker_frontend():
    return EISVFeatureExtractor("kaldi_fbank", window_type="hamming", waveform_scale=32768)


def eisv_from_pyannote(reference) -> EISVModel:
    """Our resnet model holding the weights of a pyannote WeSpeakerResNet34 (its `resnet.` prefix renamed)."""
    model = EISVModel(EISVConfig(encoder_type="resnet")).eval()
    model.load_state_dict({"encoder." + k.removeprefix("resnet."): v for k, v in reference.state_dict().items()})
    return model


def randomise_batchnorm(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.5)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.num_features, generator=generator) * 0.2)
    return model.eval()


def test_real_size_has_wespeaker_resnet34s_parameters():
    model = EISVModel(EISVConfig(encoder_type="resnet"))
    assert model.config.embedding_size == 256 and model.config.frontend == "kaldi_fbank"
    assert sum(p.numel() for p in model.parameters()) == 6_634_336  # pyannote's WeSpeakerResNet34 has as many
    assert model.encoder.seg_1.in_features == 2 * 256 * 10  # mean and std of 256 channels x 10 mel rows


def test_padded_batch_equals_single_utterances_whatever_the_padding_holds():
    torch.manual_seed(0)
    model = randomise_batchnorm(EISVModel(EISVConfig(**TINY)))
    lengths = [37, 100, 63, 9, 64]  # odd and even lengths, so every stride-2 stage rounds differently
    features = torch.randn(len(lengths), max(lengths), 80)
    mask = (torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]).int()
    with torch.no_grad():
        batch = model(features * mask[..., None], mask).embeddings
        garbage = model(torch.where(mask[..., None].bool(), features, torch.full_like(features, 50.0)), mask).embeddings
        single = torch.cat([model(features[i: i + 1, :n]).embeddings for i, n in enumerate(lengths)])
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(garbage, single, atol=1e-5, rtol=1e-5)


def test_unbiased_pooling_is_torch_std_over_real_frames():
    x = torch.randn(3, 5, 20)
    lengths = [20, 7, 2]
    mask = (torch.arange(20)[None] < torch.tensor(lengths)[:, None]).int()
    mean, std = masked_mean_std(x, mask, eps=1e-12, unbiased=True)
    for row, n in enumerate(lengths):
        torch.testing.assert_close(mean[row], x[row, :, :n].mean(-1))
        torch.testing.assert_close(std[row], x[row, :, :n].std(-1, correction=1))
    with pytest.raises(ValueError, match="unweighted"):
        masked_mean_std(x, mask, weights=torch.full((3, 1, 20), 0.05), unbiased=True)


@pytest.mark.parametrize("fields, message", [
    (dict(resnet_num_blocks=[3, 4, 6]), "resnet_num_blocks"),
    (dict(resnet_num_blocks=[3, 0, 6, 3]), "resnet_num_blocks"),
    (dict(resnet_channels=0), "resnet_channels"),
    (dict(frontend="ge2e_mel"), "log fbank"),
    (dict(num_mel_bins=4), "at least 8 bands"),
])
def test_bad_configs_name_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        EISVConfig(encoder_type="resnet", **fields)


def test_layer_groups_cover_every_parameter_bottom_first():
    model = EISVForSpeakerVerification(EISVConfig(**TINY, num_speakers=3))
    layers = encoder_layers(model, "resnet")
    assert [layer[0][0].split(".")[2] for layer in layers] == ["conv1", "layer1", "layer2", "layer3", "layer4", "seg_1"]
    groups = parameter_groups(model, "resnet", 1e-3, freeze_layers=2)
    assert not any(p.requires_grad for _, p in layers[0] + layers[1])
    assert all(p.requires_grad for _, p in layers[2])
    assert len(groups) == 5  # 4 trained encoder layers + the head


def test_frontend_is_pyannotes_fbank_and_mean_normalisation():
    reference = random_wespeaker()
    waves = real_clips(6)
    ours = wespeaker_frontend()(waves, sampling_rate=16000, return_tensors="pt")
    for row, wave in enumerate(waves):
        with torch.no_grad():
            expected = reference.compute_fbank(torch.from_numpy(wave)[None, None])[0]
        frames = int(ours["attention_mask"][row].sum())
        assert frames == expected.shape[0] == 1 + (wave.size - 400) // 160
        torch.testing.assert_close(ours["input_features"][row, :frames], expected, atol=1e-2, rtol=0)


def test_parity_with_pyannote_wespeaker_resnet34_on_real_clips():
    """The real size, 20 clips in one padded batch against pyannote's forward on each clip alone."""
    reference = random_wespeaker(seed=1)
    waves = real_clips(20)
    assert len(waves) == 20
    with torch.no_grad():
        ours = eisv_from_pyannote(reference)(**wespeaker_frontend()(waves, sampling_rate=16000,
                                                                     return_tensors="pt")).embeddings.numpy()
    expected = pyannote_embeddings(reference, waves)
    cosine = cosines(ours, expected)
    assert cosine.min() >= 0.9999, cosine
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), np.linalg.norm(expected, axis=1), rtol=1e-3)
