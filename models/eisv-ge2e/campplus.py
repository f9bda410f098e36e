"""CAM++ speaker encoder (Wang et al., "CAM++: A Fast and Efficient Network for Speaker Verification Using
Context-Aware Masking", Interspeech 2023), as 3D-Speaker publishes it (`speakerlab/models/campplus`).

The log fbank (batch, frames, mel) is read as a one-channel image by a small 2-D ResNet front (FCM,
which halves the mel axis three times and keeps every frame), flattened to (channels x mel) per frame,
then a strided TDNN layer (10 ms -> 20 ms frames), three densely connected TDNN blocks whose layers gate
their output with context-aware masking (CAM: the utterance mean plus the mean of the 100-frame segment
around each frame), transit layers that halve the channels, statistics pooling and a dense layer with a
batch norm without affine parameters (the embedding). Parameter names are 3D-Speaker's (`head.conv1`,
`xvector.block1.tdnnd1.cam_layer.linear_local`, `xvector.dense.linear`, ...), so its checkpoints load
unchanged under `encoder.`.

Padding never reaches a real frame: every layer multiplies its output by the frame mask of its own time
resolution (so a convolution reads zeros past an utterance's end, as the zero padding of a lone
utterance), and the utterance mean, the segment means and the statistics are taken over real frames
only. An utterance embedded inside a padded batch gives the same embedding as alone.
"""

from collections import OrderedDict

import torch
from torch import nn

from .pooling import masked_mean_std


def frame_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """(batch,) real frames -> (batch, 1, frames) bool mask (True for real frames)."""
    return (torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]).unsqueeze(1)


def masked_segment_mean(x: torch.Tensor, mask: torch.Tensor, segment_frames: int) -> torch.Tensor:
    """Mean of each `segment_frames`-frame segment (counted from frame 0) over its real frames, repeated
    over the segment's frames: 3D-Speaker's `seg_pooling` (`avg_pool1d(ceil_mode=True)`), padding-exact.

    x: (batch, channels, frames); mask: (batch, 1, frames) bool -> (batch, channels, frames).
    """
    frames = x.shape[-1]
    segments = -(-frames // segment_frames)
    pad = segments * segment_frames - frames
    maskf = mask.to(x.dtype)
    sums = nn.functional.pad(x * maskf, (0, pad)).unflatten(-1, (segments, segment_frames)).sum(-1)
    counts = nn.functional.pad(maskf, (0, pad)).unflatten(-1, (segments, segment_frames)).sum(-1)
    means = sums / counts.clamp_min(1.0)  # (B, C, segments)
    return means.repeat_interleave(segment_frames, dim=-1)[..., :frames]


def batchnorm_relu(channels: int) -> nn.Sequential:
    """3D-Speaker's `get_nonlinear("batchnorm-relu")`: its module names (`batchnorm`, `relu`)."""
    return nn.Sequential(OrderedDict(batchnorm=nn.BatchNorm1d(channels), relu=nn.ReLU()))


class BasicResBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a residual; strides only the mel axis.

    (batch, in_channels, mel, frames) -> (batch, channels, mel / stride, frames), masked.
    """

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, kernel_size=3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, kernel_size=1, stride=(stride, 1), bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`mask`: (batch, 1, 1, frames) bool."""
        out = torch.relu(self.bn1(self.conv1(x))) * mask
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x)) * mask


class FCM(nn.Module):
    """The 2-D front: (batch, frames, mel) fbank -> (batch, channels * mel / 8, frames)."""

    def __init__(self, channels: int = 32, num_mel_bins: int = 80):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layer1 = nn.ModuleList([BasicResBlock(channels, channels, 2), BasicResBlock(channels, channels, 1)])
        self.layer2 = nn.ModuleList([BasicResBlock(channels, channels, 2), BasicResBlock(channels, channels, 1)])
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        mel = num_mel_bins
        for _ in range(3):
            mel = (mel - 1) // 2 + 1
        self.out_channels = channels * mel

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """features: (batch, frames, mel); mask: (batch, 1, frames) bool -> (batch, C * mel', frames), masked."""
        mask4 = mask.unsqueeze(1)  # (B, 1, 1, T)
        x = features.transpose(1, 2).unsqueeze(1) * mask4  # (B, 1, mel, T)
        x = torch.relu(self.bn1(self.conv1(x))) * mask4
        for block in (*self.layer1, *self.layer2):
            x = block(x, mask4)
        x = torch.relu(self.bn2(self.conv2(x))) * mask4
        return x.flatten(1, 2)


class TDNNLayer(nn.Module):
    """Conv1d (no bias) -> BatchNorm -> ReLU. (batch, in, frames) -> (batch, out, frames / stride)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride,
                                padding=(kernel_size - 1) // 2 * dilation, dilation=dilation, bias=False)
        self.nonlinear = batchnorm_relu(out_channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`mask`: (batch, 1, output frames) bool."""
        return self.nonlinear(self.linear(x)) * mask


class CAMLayer(nn.Module):
    """A TDNN convolution gated by context-aware masking: sigmoid(MLP(utterance mean + segment mean))."""

    def __init__(self, bn_channels: int, out_channels: int, kernel_size: int, dilation: int, segment_frames: int,
                 reduction: int = 2):
        super().__init__()
        self.segment_frames = segment_frames
        self.linear_local = nn.Conv1d(bn_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2 * dilation,
                                      dilation=dilation, bias=False)
        self.linear1 = nn.Conv1d(bn_channels, bn_channels // reduction, 1)
        self.linear2 = nn.Conv1d(bn_channels // reduction, out_channels, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (batch, bn_channels, frames), zero on padded frames; mask (batch, 1, frames) -> (batch, out, frames)."""
        mean, _ = masked_mean_std(x, mask.squeeze(1))
        context = mean.unsqueeze(-1) + masked_segment_mean(x, mask, self.segment_frames)
        gate = torch.sigmoid(self.linear2(torch.relu(self.linear1(context))))
        return self.linear_local(x) * gate * mask


class CAMDenseTDNNLayer(nn.Module):
    """BatchNorm-ReLU -> 1x1 bottleneck -> BatchNorm-ReLU -> CAM layer: `growth_rate` new channels."""

    def __init__(self, in_channels: int, out_channels: int, bn_channels: int, kernel_size: int, dilation: int,
                 segment_frames: int):
        super().__init__()
        self.nonlinear1 = batchnorm_relu(in_channels)
        self.linear1 = nn.Conv1d(in_channels, bn_channels, 1, bias=False)
        self.nonlinear2 = batchnorm_relu(bn_channels)
        self.cam_layer = CAMLayer(bn_channels, out_channels, kernel_size, dilation, segment_frames)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))) * mask, mask)


class CAMDenseTDNNBlock(nn.ModuleDict):
    """`num_layers` dense layers (`tdnnd1`, ...); each appends its output to the channels it read."""

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, bn_channels: int, kernel_size: int,
                 dilation: int, segment_frames: int):
        super().__init__({f"tdnnd{i + 1}": CAMDenseTDNNLayer(in_channels + i * growth_rate, growth_rate, bn_channels,
                                                             kernel_size, dilation, segment_frames)
                          for i in range(num_layers)})

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in self.values():
            x = torch.cat([x, layer(x, mask)], dim=1)
        return x


class TransitLayer(nn.Module):
    """BatchNorm-ReLU -> 1x1 convolution (no bias) halving the channels."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.nonlinear = batchnorm_relu(in_channels)
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.linear(self.nonlinear(x)) * mask


class DenseLayer(nn.Module):
    """Pooled statistics (batch, in) -> embedding (batch, out): a 1x1 convolution and a BatchNorm without affine
    parameters (3D-Speaker's `batchnorm_`), followed by a ReLU only when `relu` (senko's copy of the module)."""

    def __init__(self, in_channels: int, out_channels: int, relu: bool = False):
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        layers = {"batchnorm": nn.BatchNorm1d(out_channels, affine=False)}
        if relu:
            layers["relu"] = nn.ReLU()
        self.nonlinear = nn.Sequential(OrderedDict(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x.unsqueeze(-1)).squeeze(-1))


class CAMPPlusXVector(nn.Module):
    """Everything after the front, under 3D-Speaker's names: `tdnn`, `block1`, `transit1`, ..., `dense`."""

    def __init__(self, config, in_channels: int):
        super().__init__()
        growth, bn_channels = config.campplus_growth_rate, config.campplus_bn_size * config.campplus_growth_rate
        self.tdnn = TDNNLayer(in_channels, config.campplus_init_channels, 5, stride=2)
        channels = config.campplus_init_channels
        for index, (num_layers, dilation) in enumerate(zip(config.campplus_block_layers, config.campplus_block_dilations)):
            self.add_module(f"block{index + 1}", CAMDenseTDNNBlock(num_layers, channels, growth, bn_channels, 3, dilation,
                                                                  config.campplus_segment_frames))
            channels += num_layers * growth
            self.add_module(f"transit{index + 1}", TransitLayer(channels, channels // 2))
            channels //= 2
        self.num_blocks = len(config.campplus_block_layers)
        self.out_nonlinear = batchnorm_relu(channels)
        self.dense = DenseLayer(2 * channels, config.embedding_size, config.campplus_embedding_relu)
        self.out_channels = channels


class CAMPPlusEncoder(nn.Module):
    """Frame features -> speaker embedding.

    Example:
        >>> from modeling_eisv import EISVConfig
        >>> config = EISVConfig(encoder_type="campplus", campplus_block_layers=[2, 2, 2], campplus_init_channels=32)
        >>> encoder = CAMPPlusEncoder(config).eval()
        >>> encoder(torch.randn(2, 300, 80), torch.ones(2, 300, dtype=torch.int)).shape
        torch.Size([2, 192])

    Args of forward:
        features: (batch, frames, num_mel_bins) log fbank (10 ms frames).
        mask: (batch, frames), 1 for real frames.
    Returns:
        (batch, embedding_size) embeddings (not normalised): 3D-Speaker's `dense` output.
    """

    def __init__(self, config):
        super().__init__()
        self.pooling_eps = config.campplus_pooling_eps
        self.head = FCM(config.campplus_fcm_channels, config.num_mel_bins)
        self.xvector = CAMPPlusXVector(config, self.head.out_channels)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.long().sum(-1)  # (B,)
        x = self.head(features, frame_mask(lengths, features.shape[1]))
        lengths = (lengths - 1) // 2 + 1  # the TDNN layer's stride 2 (kernel 5, padding 2)
        mask3 = frame_mask(lengths, (x.shape[-1] - 1) // 2 + 1)
        xv = self.xvector
        x = xv.tdnn(x, mask3)
        for index in range(1, xv.num_blocks + 1):
            x = getattr(xv, f"transit{index}")(getattr(xv, f"block{index}")(x, mask3), mask3)
        x = (xv.out_nonlinear(x) * mask3).float()
        mean, std = masked_mean_std(x, mask3.squeeze(1), eps=self.pooling_eps, unbiased=True)
        return xv.dense(torch.cat([mean, std], dim=1))
