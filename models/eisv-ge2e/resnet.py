"""ResNet speaker encoder with temporal statistics pooling: WeSpeaker's ResNet34 (Wang et al. 2023), as
`pyannote.audio` packages it (`pyannote/wespeaker-voxceleb-resnet34-LM`).

The log fbank (batch, frames, mel) is read as a one-channel image (mel x frames); four stages of
basic residual blocks (3x3 convolutions, the last three stages halving both axes) are followed by
the mean and standard deviation over time of every (channel, mel band) pair and one linear layer.
Parameter names are WeSpeaker's (`conv1`, `layer1.0.bn2`, `seg_1`, ...), so its checkpoints load
after dropping their `resnet.` prefix.

Every block multiplies its output by the frame mask of its own time resolution, and a padded frame
is zero where a convolution reads it, exactly as the zero padding of a lone utterance: an utterance
embedded inside a padded batch gives the same embedding as alone.
"""

import torch
from torch import nn

from .pooling import masked_mean_std

STAGE_STRIDES = (1, 2, 2, 2)  # of the first block of each stage, on both axes


def downsampled_lengths(lengths: torch.Tensor, stride: int) -> torch.Tensor:
    """Frames left by a 3-wide convolution with padding 1 and `stride`: (batch,) -> (batch,)."""
    return (lengths - 1) // stride + 1


def frame_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """(batch,) real frames -> (batch, 1, 1, frames) bool mask broadcasting over channels and mel bands
    (a product with it keeps the activations' dtype, bf16 under autocast)."""
    mask = torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]
    return mask[:, None, None, :]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a residual (a strided 1x1 convolution when the shape changes).

    (batch, in_channels, mel, frames) -> (batch, channels, mel / stride, frames / stride), masked.
    """

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(in_channels, channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, channels, kernel_size=1, stride=stride, bias=False),
                                          nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`mask`: (batch, 1, 1, frames of the output) bool, True for real frames."""
        out = torch.relu(self.bn1(self.conv1(x))) * mask
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x)) * mask


class ResNetEncoder(nn.Module):
    """Frame features -> speaker embedding.

    Example:
        >>> from modeling_eisv import EISVConfig
        >>> config = EISVConfig(encoder_type="resnet", resnet_channels=4, resnet_num_blocks=[1, 1, 1, 1])
        >>> encoder = ResNetEncoder(config)
        >>> encoder(torch.randn(2, 300, 80), torch.ones(2, 300, dtype=torch.int)).shape
        torch.Size([2, 256])

    Args of forward:
        features: (batch, frames, num_mel_bins).
        mask: (batch, frames), 1 for real frames.
    Returns:
        (batch, embedding_size) embeddings (not normalised): WeSpeaker's `seg_1` output.
    """

    def __init__(self, config):
        super().__init__()
        channels = config.resnet_channels
        self.pooling_eps = config.resnet_pooling_eps
        self.conv1 = nn.Conv2d(1, channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        in_channels, mel_bins = channels, config.num_mel_bins
        for stage, (num_blocks, stride) in enumerate(zip(config.resnet_num_blocks, STAGE_STRIDES)):
            blocks = []
            for index in range(num_blocks):
                blocks.append(BasicBlock(in_channels, channels << stage, stride if index == 0 else 1))
                in_channels = channels << stage
            setattr(self, f"layer{stage + 1}", nn.ModuleList(blocks))
            mel_bins = (mel_bins - 1) // stride + 1
        self.seg_1 = nn.Linear(2 * in_channels * mel_bins, config.embedding_size)

    @property
    def stages(self) -> list:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.long().sum(-1)  # (B,)
        x = features.transpose(1, 2).unsqueeze(1)  # (B, 1, mel, T)
        frames_mask = frame_mask(lengths, x.shape[-1])
        x = torch.relu(self.bn1(self.conv1(x * frames_mask))) * frames_mask
        for stage, stride in zip(self.stages, STAGE_STRIDES):
            lengths = downsampled_lengths(lengths, stride)
            frames_mask = frame_mask(lengths, (x.shape[-1] - 1) // stride + 1)
            for block in stage:  # the first block strides, the others keep the size
                x = block(x, frames_mask)
        batch, channels, mel_bins, frames = x.shape
        x = x.reshape(batch, channels * mel_bins, frames).float()  # channel-major, as pyannote's TSTP; float32
        mean, std = masked_mean_std(x, frames_mask[:, 0, 0], eps=self.pooling_eps, unbiased=True)  # statistics
        return self.seg_1(torch.cat([mean, std], dim=1))
