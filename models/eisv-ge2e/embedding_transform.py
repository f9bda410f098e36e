"""An affine transform of speaker embeddings inside the model: domain centring, whitening and
emotion nuisance-attribute projection (NAP).

`EmbeddingTransform` maps encoder output `e` (batch, D) to `(e / |e| - mean) @ matrix.T`; the
callers (tools, pipeline, scoring) L2-normalise after it, so cosine scoring then compares
centred / whitened / projected directions. `mean` (D,) and `matrix` (D, D) are buffers, saved in
`model.safetensors`; the identity (`mean` 0, `matrix` I) leaves the directions unchanged. The
model holds the module only when `config.embedding_transform == "affine"`, so folders without it
load and embed exactly as before.

The fits take unit-norm embeddings (N, D) as numpy arrays:

- `fit_mean`: the domain mean of unlabeled embeddings (centring; Garcia-Romero & Espy-Wilson's
  length normalisation after centring).
- `fit_whitening`: ZCA whitening `C^-1/2` of the centred embeddings, with the eigenvalues floored
  at `shrinkage` times their mean so few adaptation files stay stable.
- `fit_nap`: the `dims` leading directions of within-speaker, across-emotion variation (per
  speaker, the mean of each emotion minus the speaker's mean), removed by `I - U U^T`
  (Solomonoff et al.'s nuisance attribute projection, with emotion as the nuisance).

`compose(mean, whitening, projection)` gives the `(mean, matrix)` of applying them in that order.
"""

import numpy as np
import torch
from torch import nn


class EmbeddingTransform(nn.Module):
    """(batch, D) embeddings -> (batch, D): `(e / |e| - mean) @ matrix.T` (see the module docstring)."""

    def __init__(self, embedding_size: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(embedding_size))
        self.register_buffer("matrix", torch.eye(embedding_size))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        unit = nn.functional.normalize(embeddings, dim=-1)
        return (unit - self.mean.to(unit.dtype)) @ self.matrix.to(unit.dtype).T

    @torch.no_grad()
    def set(self, mean, matrix):
        """Load a fitted `mean` (D,) and `matrix` (D, D) (numpy or torch)."""
        self.mean.copy_(torch.as_tensor(np.asarray(mean), dtype=self.mean.dtype))
        self.matrix.copy_(torch.as_tensor(np.asarray(matrix), dtype=self.matrix.dtype))


def _unit(embeddings) -> np.ndarray:
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if embeddings.ndim != 2 or len(embeddings) == 0:
        raise ValueError(f"need (N, D) embeddings with N >= 1; got shape {embeddings.shape}")
    return embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)


def fit_mean(embeddings) -> np.ndarray:
    """(N, D) -> (D,) mean of the unit-norm rows."""
    return _unit(embeddings).mean(0)


def fit_whitening(embeddings, mean, shrinkage: float = 0.1) -> np.ndarray:
    """(N, D), (D,) -> (D, D) symmetric `C^-1/2` of the centred rows (eigenvalues floored at
    `shrinkage * mean eigenvalue`), scaled so that its mean eigenvalue is 1."""
    centred = _unit(embeddings) - np.asarray(mean)
    covariance = centred.T @ centred / max(len(centred) - 1, 1)
    values, vectors = np.linalg.eigh(covariance)
    values = np.maximum(values, shrinkage * max(values.mean(), 1e-12))
    inverse_sqrt = 1.0 / np.sqrt(values)
    inverse_sqrt /= inverse_sqrt.mean()
    return (vectors * inverse_sqrt) @ vectors.T


def fit_nap(embeddings, speakers, emotions, dims: int = 10, mean=None, matrix=None) -> tuple:
    """Emotion NAP: -> `(projection (D, D), directions (dims, D), explained (dims,))`.

    `embeddings` (N, D) with a speaker and an emotion label per row; the nuisance directions are
    estimated from the rows after the `(mean, matrix)` transform given (identity when None), i.e.
    in the space the projection will act on. Speakers with one emotion contribute nothing.
    """
    rows = _unit(embeddings)
    if mean is not None:
        rows = rows - np.asarray(mean)
    if matrix is not None:
        rows = rows @ np.asarray(matrix).T
    rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    speakers, emotions = np.asarray(speakers), np.asarray(emotions)
    offsets = []
    for speaker in np.unique(speakers):
        mine = speakers == speaker
        speaker_mean = rows[mine].mean(0)
        for emotion in np.unique(emotions[mine]):
            offsets.append(rows[mine & (emotions == emotion)].mean(0) - speaker_mean)
    offsets = np.array(offsets)
    if len(offsets) < 2 or not np.abs(offsets).max() > 0:
        raise ValueError("emotion NAP needs speakers recorded in at least two emotions")
    _, singular, directions = np.linalg.svd(offsets, full_matrices=False)
    dims = int(min(dims, len(directions)))
    directions = directions[:dims]
    explained = singular[:dims] ** 2 / (singular ** 2).sum()
    return np.eye(rows.shape[1]) - directions.T @ directions, directions, explained


def compose(dim: int, mean=None, whitening=None, projection=None) -> tuple:
    """-> `(mean (D,), matrix (D, D))` of centring, then whitening, then projecting (each optional)."""
    matrix = np.eye(dim)
    for step in (whitening, projection):
        if step is not None:
            matrix = np.asarray(step) @ matrix
    return (np.zeros(dim) if mean is None else np.asarray(mean, dtype=np.float64)), matrix
