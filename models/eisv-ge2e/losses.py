"""Training losses: AAM-softmax (ArcFace) speaker classification and the ERL cosine term on parallel pairs."""

import math

import torch
from torch import nn


class AAMSoftmaxHead(nn.Module):
    """Additive angular margin softmax (Deng et al. 2019) on the embedding itself.

    `margin` is a plain attribute so that a training schedule can warm it up per step.
    The logits returned are the plain scaled cosines (no margin), which is what accuracy and
    inference use; the loss uses cos(theta + m) for the target class.
    """

    def __init__(self, embedding_size: int, num_speakers: int, margin: float = 0.2, scale: float = 30.0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_speakers, embedding_size))
        self.margin = margin
        self.scale = scale

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor = None):
        """embeddings (batch, dim), labels (batch,) -> logits (batch, speakers), loss (scalar or None)."""
        cosine = nn.functional.linear(nn.functional.normalize(embeddings.float()),
                                      nn.functional.normalize(self.weight.float())).clamp(-1 + 1e-7, 1 - 1e-7)
        logits = self.scale * cosine
        if labels is None:
            return logits, None
        m = float(self.margin)
        sine = (1.0 - cosine.pow(2)).sqrt()
        with_margin = cosine * math.cos(m) - sine * math.sin(m)
        # Past theta = pi - m, cos(theta + m) stops decreasing; use the linear penalty instead (ArcFace).
        with_margin = torch.where(cosine > math.cos(math.pi - m), with_margin, cosine - math.sin(math.pi - m) * m)
        target = nn.functional.one_hot(labels, cosine.shape[-1]).bool()
        margin_logits = self.scale * torch.where(target, with_margin, cosine)
        return logits, nn.functional.cross_entropy(margin_logits, labels)


def erl_loss(embeddings: torch.Tensor, pair_index: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cos(e_i, e_j) over the parallel pairs.

    Args:
        embeddings: (batch, dim).
        pair_index: (pairs, 2) long, row indices into the batch of the two members of each pair.
    Returns:
        scalar tensor; 0 when there are no pairs.
    """
    if pair_index is None or pair_index.numel() == 0:
        return embeddings.new_zeros(()).float()
    first, second = embeddings[pair_index[:, 0]].float(), embeddings[pair_index[:, 1]].float()
    return (1.0 - nn.functional.cosine_similarity(first, second, dim=-1)).mean()
