"""ECAPA-TDNN speaker encoder (Desplanques, Thienpondt & Demuynck, Interspeech 2020).

Every block multiplies its output by the frame mask, and convolutions pad each utterance at its own
ends (with zeros, or by mirroring its frames as SpeechBrain does), so a padded frame never influences
a real one: an utterance embedded inside a padded batch gives the same embedding as alone.
"""

import torch
from torch import nn

from .pooling import AttentiveStatisticsPooling, masked_mean_std


def reflect_pad(x: torch.Tensor, mask: torch.Tensor, padding: int) -> torch.Tensor:
    """Mirror each utterance at its own first and last real frame, as `F.pad(mode="reflect")` does
    for a lone utterance.

    Args:
        x: (batch, channels, frames).
        mask: (batch, 1, frames), 1 for real frames.
        padding: frames added on each side.
    Returns:
        (batch, channels, frames + 2 * padding). Only real frames are read, so what the padded
        part of `x` holds does not matter. An utterance of `padding` frames or fewer (which
        `F.pad` refuses) repeats its edge frames instead.
    """
    last = mask.sum(-1).long() - 1  # (B, 1)
    index = torch.arange(-padding, x.shape[-1] + padding, device=x.device).abs().unsqueeze(0)  # (1, T + 2p)
    index = torch.where(index > last, 2 * last - index, index).clamp(min=0)  # (B, T + 2p)
    return x.gather(2, index.unsqueeze(1).expand(-1, x.shape[1], -1))


class TDNNBlock(nn.Module):
    """Conv1d -> ReLU -> BatchNorm, masked. (batch, in, frames) -> (batch, out, frames).

    `padding_mode="zeros"` lets the convolution pad with zeros (the input's padded frames are
    already 0); `"reflect"` mirrors each utterance at its own ends first (`reflect_pad`).
    """

    def __init__(self, in_channels, out_channels, kernel_size=1, dilation=1, groups=1, padding_mode="zeros"):
        super().__init__()
        self.padding = dilation * (kernel_size - 1) // 2
        self.reflect = padding_mode == "reflect" and self.padding > 0
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation,
                              padding=0 if self.reflect else self.padding, groups=groups)
        self.norm = nn.BatchNorm1d(out_channels)

    def forward(self, x, mask):
        if self.reflect:
            x = reflect_pad(x, mask, self.padding)
        return self.norm(torch.relu(self.conv(x))) * mask


class Res2NetBlock(nn.Module):
    """Res2Net: channels split into `scale` groups, each group convolved with the previous one's output."""

    def __init__(self, channels, scale=8, kernel_size=3, dilation=1, padding_mode="zeros"):
        super().__init__()
        self.scale = scale
        width = channels // scale
        self.blocks = nn.ModuleList(TDNNBlock(width, width, kernel_size, dilation, padding_mode=padding_mode)
                                    for _ in range(scale - 1))

    def forward(self, x, mask):
        chunks = torch.chunk(x, self.scale, dim=1)
        outputs = [chunks[0]]
        previous = None
        for chunk, block in zip(chunks[1:], self.blocks):
            previous = block(chunk if previous is None else chunk + previous, mask)
            outputs.append(previous)
        return torch.cat(outputs, dim=1)


class SqueezeExcitation(nn.Module):
    """Channel gates from the mean over real frames. (batch, C, frames) -> same shape."""

    def __init__(self, channels, se_channels=128):
        super().__init__()
        self.reduce = nn.Conv1d(channels, se_channels, 1)
        self.expand = nn.Conv1d(se_channels, channels, 1)

    def forward(self, x, mask):
        mean, _ = masked_mean_std(x, mask.squeeze(1))
        gate = torch.sigmoid(self.expand(torch.relu(self.reduce(mean.unsqueeze(-1)))))
        return x * gate


class SERes2NetBlock(nn.Module):
    """1x1 TDNN -> Res2Net -> 1x1 TDNN -> squeeze-excitation, plus the residual."""

    def __init__(self, channels, res2net_scale=8, se_channels=128, kernel_size=3, dilation=1, padding_mode="zeros"):
        super().__init__()
        self.tdnn1 = TDNNBlock(channels, channels, 1)
        self.res2net = Res2NetBlock(channels, res2net_scale, kernel_size, dilation, padding_mode)
        self.tdnn2 = TDNNBlock(channels, channels, 1)
        self.se = SqueezeExcitation(channels, se_channels)

    def forward(self, x, mask):
        y = self.tdnn2(self.res2net(self.tdnn1(x, mask), mask), mask)
        return self.se(y, mask) + x


class ECAPATDNNEncoder(nn.Module):
    """Frame features -> speaker embedding.

    Example:
        >>> from modeling_eisv import EISVConfig
        >>> encoder = ECAPATDNNEncoder(EISVConfig(ecapa_channels=64, ecapa_mfa_channels=192))
        >>> encoder(torch.randn(2, 300, 80), torch.ones(2, 300, dtype=torch.int)).shape
        torch.Size([2, 192])

    Args of forward:
        features: (batch, frames, num_mel_bins).
        mask: (batch, frames), 1 for real frames.
    Returns:
        (batch, embedding_size) embeddings (not normalised).
    """

    def __init__(self, config):
        super().__init__()
        c, k, d = config.ecapa_channels, config.ecapa_kernel_sizes, config.ecapa_dilations
        padding_mode = config.ecapa_padding_mode
        self.input_block = TDNNBlock(config.num_mel_bins, c, k[0], d[0], padding_mode=padding_mode)
        self.blocks = nn.ModuleList(
            SERes2NetBlock(c, config.ecapa_res2net_scale, config.ecapa_se_channels, k[i], d[i], padding_mode)
            for i in (1, 2, 3))
        self.aggregation = TDNNBlock(3 * c, config.ecapa_mfa_channels, 1)
        self.pooling = AttentiveStatisticsPooling(config.ecapa_mfa_channels, config.ecapa_attention_channels,
                                                  eps=config.ecapa_pooling_eps)
        self.pooling_norm = nn.BatchNorm1d(2 * config.ecapa_mfa_channels)
        self.projection = nn.Linear(2 * config.ecapa_mfa_channels, config.embedding_size)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask3 = mask.to(features.dtype).unsqueeze(1)  # (B, 1, T)
        x = self.input_block(features.transpose(1, 2) * mask3, mask3)
        layer_outputs = []
        for block in self.blocks:
            x = block(x, mask3)
            layer_outputs.append(x)
        x = self.aggregation(torch.cat(layer_outputs, dim=1), mask3)
        return self.projection(self.pooling_norm(self.pooling(x, mask)))
