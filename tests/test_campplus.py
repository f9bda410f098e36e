"""The campplus encoder: 3D-Speaker's CAM++ layout and parameter count, padding that never reaches the
embedding (segment pooling included), config checks, layer groups for fine-tuning."""

import pytest
import torch

from eisv_training.forgetting import encoder_layers
from modeling_eisv import EISVConfig, EISVForSpeakerVerification, EISVModel
from modeling_eisv.campplus import masked_segment_mean

TINY = dict(encoder_type="campplus", campplus_fcm_channels=4, campplus_init_channels=16, campplus_growth_rate=4,
            campplus_bn_size=2, campplus_block_layers=[2, 3, 2], campplus_segment_frames=10, embedding_size=24)


def randomise_batchnorm(model, seed=0):
    """Non-trivial running statistics and shifts, so a leak of padding through a batch norm would show."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.5)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                if module.affine:
                    module.bias.copy_(torch.randn(module.num_features, generator=generator) * 0.2)
    return model.eval()


def test_real_size_has_3d_speakers_parameters_and_names():
    model = EISVModel(EISVConfig(encoder_type="campplus"))
    assert model.config.embedding_size == 192 and model.config.frontend == "kaldi_fbank"
    assert sum(p.numel() for p in model.parameters()) == 6_848_544  # as 3D-Speaker's CAMPPlus(80, embedding_size=192)
    names = set(model.state_dict())
    for name in ("encoder.head.layer1.0.conv1.weight", "encoder.xvector.block3.tdnnd16.cam_layer.linear_local.weight",
                 "encoder.xvector.transit3.linear.weight", "encoder.xvector.dense.nonlinear.batchnorm.running_var"):
        assert name in names
    assert model.encoder.xvector.out_channels == 512


def test_padded_batch_equals_single_utterances_whatever_the_padding_holds():
    torch.manual_seed(0)
    model = randomise_batchnorm(EISVModel(EISVConfig(**TINY)))
    lengths = [37, 100, 63, 9, 64, 1]  # odd and even (the stride-2 TDNN rounds), several segments, one frame
    features = torch.randn(len(lengths), max(lengths), 80)
    mask = (torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]).int()
    with torch.no_grad():
        batch = model(features * mask[..., None], mask).embeddings
        garbage = model(torch.where(mask[..., None].bool(), features, torch.full_like(features, 50.0)), mask).embeddings
        single = torch.cat([model(features[i: i + 1, :n]).embeddings for i, n in enumerate(lengths)])
    # float32 sums over other batch shapes: agreement to about 1e-5 of embeddings of norm ~5
    torch.testing.assert_close(batch, single, atol=5e-5, rtol=1e-4)
    torch.testing.assert_close(garbage, single, atol=5e-5, rtol=1e-4)


def test_segment_mean_is_avg_pool_with_ceil_mode_over_real_frames():
    x = torch.randn(2, 3, 25)
    lengths = torch.tensor([25, 17])
    mask = (torch.arange(25)[None] < lengths[:, None]).unsqueeze(1)
    ours = masked_segment_mean(x * mask, mask, 10)
    for row, n in enumerate(lengths.tolist()):  # 3D-Speaker's seg_pooling on the lone utterance
        lone = x[row: row + 1, :, :n]
        pooled = torch.nn.functional.avg_pool1d(lone, 10, 10, ceil_mode=True)
        expected = pooled.unsqueeze(-1).expand(*pooled.shape, 10).reshape(1, 3, -1)[..., :n]
        torch.testing.assert_close(ours[row: row + 1, :, :n], expected)


def test_embedding_relu_option_gives_non_negative_embeddings():
    model = randomise_batchnorm(EISVModel(EISVConfig(**TINY, campplus_embedding_relu=True)))
    with torch.no_grad():
        embeddings = model(torch.randn(3, 120, 80)).embeddings
    assert (embeddings >= 0).all() and (embeddings == 0).any()


@pytest.mark.parametrize("change, field", [
    (dict(campplus_block_layers=[]), "campplus_block_layers"),
    (dict(campplus_block_dilations=[1, 2]), "campplus_block_dilations"),
    (dict(campplus_growth_rate=0), "campplus_growth_rate"),
    (dict(num_mel_bins=4), "num_mel_bins"),
    (dict(frontend="ge2e_mel"), "frontend"),
    (dict(campplus_pooling_eps=0.0), "campplus_pooling_eps"),
])
def test_bad_configs_name_the_field(change, field):
    with pytest.raises(ValueError, match=rf"EISVConfig\.{field}="):
        EISVConfig(**{**TINY, **change})


def test_layer_groups_cover_every_encoder_parameter_bottom_first():
    model = EISVForSpeakerVerification(EISVConfig(**TINY, num_speakers=3))
    layers = encoder_layers(model, "campplus")
    assert len(layers) == 6
    assert layers[0][0][0].startswith("eisv.encoder.head.") and "dense" in layers[-1][-1][0]
    grouped = sum(len(layer) for layer in layers)
    assert grouped == sum(1 for name, _ in model.named_parameters() if name.startswith("eisv.encoder."))


def test_trains_one_step_with_a_finite_loss_and_gradients():
    model = EISVForSpeakerVerification(EISVConfig(**TINY, num_speakers=3, erl_weight=1.0)).train()
    features, mask = torch.randn(4, 150, 80), torch.ones(4, 150, dtype=torch.int)
    mask[2, 90:] = 0
    output = model(features, mask, labels=torch.tensor([0, 1, 2, 0]), pair_index=torch.tensor([[0, 3]]))
    output.loss.backward()
    assert torch.isfinite(output.loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.eisv.parameters() if p.requires_grad)
