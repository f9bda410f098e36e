"""Emotion-aware masking (EM): hide the frames where emotion shows most, on the feature frame grid.

High arousal shows as energy, so `energy` selection hides the frames of highest RMS energy; `random`
hides as many frames chosen at random (the control that tells whether the energy guidance matters);
`none` hides nothing. Frames come in contiguous blocks of `block_frames` (default 20 frames = 200 ms,
about a syllable, where emotional emphasis lives) or scattered one by one. Each masked row hides
exactly round(ratio * real frames) frames; padding is never masked.

Defaults (`em_ratio=0.2` in the collator): the paper does not give its ratio; 20% is the usual
upper range of SpecAugment-style time masking, enough to remove the loudest syllables of a 2 s crop
(two 200 ms blocks) while leaving most of the speaker's voice.
"""

import numpy as np
import torch

SELECTIONS = ("energy", "random", "none")


def frame_rms(feature_extractor, waveforms: torch.Tensor, num_frames: int) -> torch.Tensor:
    """RMS energy of each feature frame.

    Args:
        feature_extractor: `EISVFeatureExtractor` (its `frame_waveforms` defines the grid).
        waveforms: (batch, samples) float32, zero-padded.
        num_frames: frames of the features (their time axis T).
    Returns:
        (batch, num_frames) float32 RMS of the samples under each feature frame.
    """
    frames = feature_extractor.frame_waveforms(waveforms.float())[:, :num_frames]  # (B, T, win)
    return frames.pow(2).mean(dim=-1).sqrt()


def emotion_aware_mask(energy, lengths, ratio: float = 0.2, select: str = "energy", contiguous: bool = True,
                       block_frames: int = 20, rows=None, rng: np.random.Generator = None) -> torch.Tensor:
    """Frames to hide, per row.

    Args:
        energy: (batch, frames) frame RMS (tensor or array), padded frames arbitrary.
        lengths: (batch,) real frames of each row.
        ratio: share of each masked row's real frames to hide, in [0, 1).
        select: `"energy"` (highest energy), `"random"` or `"none"`.
        contiguous: blocks of `block_frames` frames (True) or single frames (False).
        rows: (batch,) bool, which rows to mask; all rows when None.
        rng: `numpy.random.Generator` for `random` selection.
    Returns:
        (batch, frames) bool, True = frame hidden.
    """
    if select not in SELECTIONS:
        raise ValueError(f"emotion_aware_mask: select={select!r}; choose from {SELECTIONS}")
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"emotion_aware_mask: ratio={ratio} must lie in [0, 1)")
    if block_frames < 1:
        raise ValueError(f"emotion_aware_mask: block_frames={block_frames} must be >= 1")
    energy = np.asarray(energy.detach().cpu() if isinstance(energy, torch.Tensor) else energy, dtype=np.float64)
    lengths = np.asarray(lengths.cpu() if isinstance(lengths, torch.Tensor) else lengths, dtype=np.int64)
    mask = np.zeros(energy.shape, dtype=bool)
    if select == "none" or ratio == 0.0:
        return torch.from_numpy(mask)
    if select == "random" and rng is None:
        raise ValueError("emotion_aware_mask: select='random' needs rng=numpy.random.Generator")
    for b in range(energy.shape[0]):
        if rows is not None and not rows[b]:
            continue
        n = int(lengths[b])
        k = int(round(ratio * n))
        if k == 0:
            continue
        row_energy = energy[b, :n] if select == "energy" else rng.random(n)  # random = energy-blind ranking
        if contiguous:
            mask[b, :n] = _blocks(row_energy, k, block_frames, rng if select == "random" else None)
        else:
            mask[b, np.argsort(-row_energy, kind="stable")[:k]] = True
    return torch.from_numpy(mask)


def _blocks(score: np.ndarray, k: int, block: int, rng) -> np.ndarray:
    """Exactly k of len(score) frames in blocks of up to `block`: greedily the free block of highest
    total score (rng None), or random free blocks; frames left when blocks no longer fit go by score."""
    n = len(score)
    hidden = np.zeros(n, dtype=bool)
    sizes = [block] * (k // block) + ([k % block] if k % block else [])
    for size in sizes:
        windows = np.lib.stride_tricks.sliding_window_view(hidden, size)  # (n - size + 1, size)
        free = np.flatnonzero(~windows.any(axis=1))
        if len(free) == 0:
            break
        if rng is None:
            totals = np.convolve(score, np.ones(size), mode="valid")[free]
            start = int(free[np.argmax(totals)])
        else:
            start = int(rng.choice(free))
        hidden[start:start + size] = True
    missing = k - int(hidden.sum())
    if missing > 0:  # fragmentation: finish frame by frame, best score first
        order = np.argsort(-np.where(hidden, -np.inf, score), kind="stable")
        hidden[order[:missing]] = True
    return hidden
