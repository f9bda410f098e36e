"""A transformers speech backbone (WavLM, wav2vec 2.0, HuBERT, UniSpeech-SAT) as an EISV speaker encoder.

The backbone is built from its own config (`EISVConfig.backbone_config`, a dict with `model_type`) by
`AutoModel.from_config`, so nothing is downloaded; weights come from the EISV checkpoint (or from
`convert_transformers`). A learnable softmax-weighted sum of all its hidden states (the CNN
projection and every transformer layer) feeds one of two heads:

- `"attentive"`: attentive statistics pooling (`pooling.py`), BatchNorm, linear to `embedding_size`;
- `"xvector"`: transformers' `*ForXVector` head (projector, TDNN layers, mean + unbiased std,
  linear), so that its checkpoints give the same `embeddings`.

Padding never reaches an embedding: the frame mask comes from the backbone's own
`_get_feat_extract_output_lengths`, and for backbones whose first CNN layer is a GroupNorm over
time (`feat_extract_norm="group"`, e.g. wav2vec2-base, WavLM-base) that norm is computed over each
utterance's real frames only, so a padded batch gives the embeddings of single clips (transformers
itself advises against batching those models with padding).
"""

from types import SimpleNamespace

import torch
from torch import nn
from transformers import AutoConfig, AutoModel

from .pooling import AttentiveStatisticsPooling, masked_mean_std

try:  # the TDNN layer of every *ForXVector model (wav2vec2, WavLM, UniSpeech-SAT share it)
    from transformers.models.wav2vec2.modeling_wav2vec2 import TDNNLayer
except ImportError:  # pragma: no cover (an older or newer transformers without it)
    TDNNLayer = None


def build_backbone_config(backbone_config: dict):
    """`EISVConfig.backbone_config` (a dict with `model_type`) -> the backbone's `PretrainedConfig`."""
    fields = dict(backbone_config)
    model_type = fields.pop("model_type", None)
    if model_type is None:
        raise ValueError("EISVConfig.backbone_config has no 'model_type' (e.g. 'wavlm', 'wav2vec2', 'hubert')")
    for key in ("transformers_version", "architectures", "auto_map"):
        fields.pop(key, None)
    return AutoConfig.for_model(model_type, **fields)


class _TDNNSizes(SimpleNamespace):
    """The three fields transformers' `TDNNLayer(config, layer_id)` reads."""


class _FallbackTDNNLayer(nn.Module):
    """transformers' `TDNNLayer`: a dilated conv kept as `kernel` (nn.Linear over kernel x channels), then ReLU."""

    def __init__(self, config, layer_id=0):
        super().__init__()
        self.in_conv_dim = config.tdnn_dim[layer_id - 1] if layer_id > 0 else config.tdnn_dim[layer_id]
        self.out_conv_dim, self.kernel_size = config.tdnn_dim[layer_id], config.tdnn_kernel[layer_id]
        self.dilation = config.tdnn_dilation[layer_id]
        self.kernel = nn.Linear(self.in_conv_dim * self.kernel_size, self.out_conv_dim)

    def forward(self, hidden_states):  # (B, T, C_in) -> (B, T - (k - 1) * d, C_out)
        weight = self.kernel.weight.view(self.out_conv_dim, self.kernel_size, self.in_conv_dim).transpose(1, 2)
        out = nn.functional.conv1d(hidden_states.transpose(1, 2), weight, self.kernel.bias, dilation=self.dilation)
        return torch.relu(out.transpose(1, 2))


def masked_group_norm(hidden: torch.Tensor, lengths: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """`norm(hidden)` with the statistics of each row taken over its first `lengths` frames only.

    Args:
        hidden: (batch, channels, frames).
        lengths: (batch,) real frames of each row.
    Returns:
        (batch, channels, frames), same dtype as `hidden`.
    """
    batch, channels, frames = hidden.shape
    x = hidden.float().reshape(batch, norm.num_groups, channels // norm.num_groups, frames)
    valid = (torch.arange(frames, device=x.device)[None, :] < lengths[:, None]).float()[:, None, None, :]
    count = lengths.clamp_min(1).float()[:, None, None, None] * x.shape[2]
    mean = (x * valid).sum((2, 3), keepdim=True) / count
    variance = ((x - mean).pow(2) * valid).sum((2, 3), keepdim=True) / count
    x = ((x - mean) / torch.sqrt(variance + norm.eps)).reshape(batch, channels, frames)
    if norm.affine:
        x = x * norm.weight.float()[None, :, None] + norm.bias.float()[None, :, None]
    return x.to(hidden.dtype)


class SSLBackboneEncoder(nn.Module):
    """Waveforms -> speaker embedding through a transformers speech backbone.

    Args of forward:
        waveforms: (batch, samples) float, 16 kHz (the `waveform` frontend's `input_features`).
        mask: (batch, samples), 1 for real samples.
    Returns:
        (batch, embedding_size) embeddings (not normalised).
    """

    def __init__(self, config):
        super().__init__()
        backbone_config = build_backbone_config(config.backbone_config)
        self.backbone = AutoModel.from_config(backbone_config)
        self.head_type = config.ssl_head
        self.weighted_layer_sum = config.ssl_weighted_layer_sum
        num_states = backbone_config.num_hidden_layers + 1  # the CNN projection + each transformer layer
        if self.weighted_layer_sum:
            self.layer_weights = nn.Parameter(torch.ones(num_states) / num_states)
        hidden = backbone_config.hidden_size
        if config.ssl_head == "attentive":
            self.pooling = AttentiveStatisticsPooling(hidden, config.ecapa_attention_channels,
                                                      eps=config.ecapa_pooling_eps)
            self.pooling_norm = nn.BatchNorm1d(2 * hidden)
            self.projection = nn.Linear(2 * hidden, config.embedding_size)
        else:
            sizes = _TDNNSizes(tdnn_dim=list(config.xvector_tdnn_dim), tdnn_kernel=list(config.xvector_tdnn_kernel),
                               tdnn_dilation=list(config.xvector_tdnn_dilation))
            layer = TDNNLayer or _FallbackTDNNLayer
            self.projector = nn.Linear(hidden, sizes.tdnn_dim[0])
            self.tdnn = nn.ModuleList(layer(sizes, i) for i in range(len(sizes.tdnn_dim)))
            self.embedding = nn.Linear(2 * sizes.tdnn_dim[-1], config.embedding_size)
            self.tdnn_context = sum((k - 1) * d for k, d in zip(sizes.tdnn_kernel, sizes.tdnn_dilation))
        self._first_norm_lengths = None  # set during forward for the masked GroupNorm hook
        layers = getattr(getattr(self.backbone, "feature_extractor", None), "conv_layers", None)
        if getattr(backbone_config, "feat_extract_norm", None) == "group" and layers is not None:
            self._first_conv_shape = (layers[0].conv.kernel_size[0], layers[0].conv.stride[0])
            layers[0].layer_norm.register_forward_hook(self._mask_first_norm)

    def _mask_first_norm(self, norm, inputs, output):
        """Forward hook of the first CNN layer's GroupNorm: recompute it over real frames when padded."""
        lengths = self._first_norm_lengths
        if lengths is None or bool((lengths == inputs[0].shape[-1]).all()):
            return None
        return masked_group_norm(inputs[0], lengths, norm)

    def frame_lengths(self, num_samples: torch.Tensor) -> torch.Tensor:
        """(batch,) samples -> (batch,) backbone frames (20 ms each for the usual CNN stack)."""
        return self.backbone._get_feat_extract_output_lengths(num_samples).long()

    def hidden_states(self, waveforms: torch.Tensor, mask: torch.Tensor):
        """-> (batch, frames, hidden) layer-weighted hidden states and the (batch, frames) bool frame mask."""
        feature_encoder = getattr(self.backbone, "feature_extractor", None)
        if feature_encoder is not None and hasattr(feature_encoder, "_requires_grad"):
            # Frozen (--freeze_layers): transformers then skips the CNN's graph, as freeze_feature_encoder does.
            feature_encoder._requires_grad = any(p.requires_grad for p in feature_encoder.parameters())
        num_samples = mask.long().sum(-1)
        if hasattr(self, "_first_conv_shape"):
            kernel, stride = self._first_conv_shape
            self._first_norm_lengths = (num_samples - kernel) // stride + 1
        try:
            outputs = self.backbone(waveforms, attention_mask=mask.long(), output_hidden_states=self.weighted_layer_sum)
        finally:
            self._first_norm_lengths = None
        if self.weighted_layer_sum:
            weights = torch.softmax(self.layer_weights, dim=-1)
            hidden = sum(w * h for w, h in zip(weights, outputs.hidden_states))
        else:
            hidden = outputs.last_hidden_state
        lengths = self.frame_lengths(num_samples)
        frame_mask = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < lengths[:, None]
        return hidden, frame_mask

    def forward(self, waveforms: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden, frame_mask = self.hidden_states(waveforms, mask)
        if self.head_type == "attentive":
            return self.projection(self.pooling_norm(self.pooling(hidden.transpose(1, 2), frame_mask)))
        hidden = self.projector(hidden)
        for layer in self.tdnn:
            hidden = layer(hidden)
        lengths = frame_mask.sum(-1) - self.tdnn_context  # real TDNN output frames (no padding in the TDNN)
        if bool((lengths < 1).any()):
            raise ValueError(f"a clip gives {int(frame_mask.sum(-1).min())} backbone frames; the xvector head needs "
                             f"more than {self.tdnn_context} (about {(self.tdnn_context + 2) * 0.02:.2f} s of audio)")
        frame_mask = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < lengths[:, None]
        mean, std = masked_mean_std(hidden.transpose(1, 2), frame_mask, eps=1e-12)
        n = lengths.to(std.dtype)[:, None]
        std = std * torch.sqrt(n / (n - 1).clamp_min(1))  # unbiased, as torch.std in transformers' head
        return self.embedding(torch.cat([mean, std], dim=-1))

