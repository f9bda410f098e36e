"""Reading audio files as 16 kHz mono float32, with errors that name the file."""

from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio


class AudioError(ValueError):
    """An audio file that cannot be used; the message names the file and the problem."""


def resample(waveform: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """(samples,) float32 at `orig_rate` Hz -> (samples',) float32 at `target_rate` Hz (torchaudio sinc)."""
    if orig_rate == target_rate:
        return waveform
    return torchaudio.functional.resample(torch.from_numpy(waveform), orig_rate, target_rate).numpy()


def load_audio(path, sampling_rate: int = 16000, check_finite: bool = True) -> np.ndarray:
    """Decode `path` to a (samples,) float32 mono array at `sampling_rate` Hz.

    Channels are averaged; other rates are resampled. Raises `AudioError` naming the file for a
    missing, undecodable, empty or non-finite file.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    try:
        waveform, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # soundfile raises several types for corrupt or unknown formats
        raise AudioError(f"{path}: cannot decode audio ({error})") from None
    waveform = waveform.mean(axis=1) if waveform.shape[1] > 1 else waveform[:, 0]
    if waveform.size == 0:
        raise AudioError(f"{path}: audio file holds no samples")
    if check_finite and not np.isfinite(waveform).all():
        raise AudioError(f"{path}: audio contains NaN or Inf samples")
    return np.ascontiguousarray(resample(waveform, rate, sampling_rate), dtype=np.float32)
