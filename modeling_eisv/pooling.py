"""Padding-aware pooling over time: masked mean/std and attentive statistics pooling."""

import torch
from torch import nn


def masked_mean_std(x: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor = None, eps: float = 1e-6,
                    unbiased: bool = False):
    """Mean and standard deviation over time of the real frames only.

    Args:
        x: (batch, channels, frames).
        mask: (batch, frames), 1/True for real frames.
        weights: optional (batch, channels or 1, frames) non-negative weights that sum to 1 over the
            real frames (attention); when given, the statistics are weighted.
        eps: floor of the variance, before the square root.
        unbiased: divide the squared deviations by n - 1 instead of n (Bessel's correction, as
            `torch.std` and pyannote's `StatsPool`); unweighted statistics only.
    Returns:
        mean, std: each (batch, channels).
    """
    maskf = mask.to(x.dtype).unsqueeze(1)  # (B, 1, T)
    count = maskf.sum(-1, keepdim=True)  # (B, 1, 1)
    if weights is None:
        weights = maskf / count.clamp_min(1.0)
    elif unbiased:
        raise ValueError("masked_mean_std: unbiased=True is for unweighted statistics only")
    else:
        weights = weights * maskf
    mean = (weights * x).sum(-1)
    variance = (weights * (x - mean.unsqueeze(-1)).pow(2)).sum(-1)
    if unbiased:
        variance = variance * (count / (count - 1).clamp_min(1.0)).squeeze(-1)
    return mean, variance.clamp_min(eps).sqrt()


class AttentiveStatisticsPooling(nn.Module):
    """Channel- and context-dependent attentive statistics pooling (ECAPA-TDNN, section 2.3).

    (batch, channels, frames) + mask (batch, frames) -> (batch, 2 * channels): attention-weighted
    mean and std. Padded frames get zero attention weight, so they never reach the embedding.
    """

    def __init__(self, channels: int, attention_channels: int = 128, global_context: bool = True, eps: float = 1e-6):
        super().__init__()
        self.global_context = global_context
        self.eps = eps  # variance floor of both statistics
        in_channels = 3 * channels if global_context else channels
        self.attention = nn.Sequential(
            nn.Conv1d(in_channels, attention_channels, kernel_size=1),
            nn.ReLU(),
            nn.BatchNorm1d(attention_channels),
            nn.Tanh(),
            nn.Conv1d(attention_channels, channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.global_context:
            mean, std = masked_mean_std(x, mask, eps=self.eps)
            frames = x.shape[-1]
            context = torch.cat([x, mean.unsqueeze(-1).expand(-1, -1, frames), std.unsqueeze(-1).expand(-1, -1, frames)], 1)
        else:
            context = x
        scores = self.attention(context).float()  # (B, C, T)
        scores = scores.masked_fill(~mask.bool().unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1).to(x.dtype)
        mean, std = masked_mean_std(x, mask, weights, self.eps)
        return torch.cat([mean, std], dim=1)
