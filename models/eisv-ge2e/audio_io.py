"""Audio in: decode (soundfile), one channel rule, one resampler, the windows of long files.

Every layer reads audio through this module: the feature extractor and the pipeline (so it is
part of the remote code), the training collators' stores and the tools' windowed embedding.

- Channel rule: a multi-channel recording becomes mono by the mean over its channels. A decoded
  file is `(samples, channels)` (soundfile's layout); an array may also be `(channels, samples)`
  (torchaudio's): the channel axis is the shorter one, and it may have at most `MAX_CHANNELS`
  entries (a longer one is a batch passed by mistake, refused).
- Resampler: `torchaudio.functional.resample` (windowed sinc), only when the rates differ.
- Windows: a file longer than one window is covered by full-length windows every `hop` samples,
  the last one aligned with the end of the file (`window_starts`).

Errors are `AudioError` (a `ValueError`) whose message starts with the file's name.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# A 2-D array whose shorter axis has at most this many entries is one multi-channel recording.
MAX_CHANNELS = 8
# File endings that folder inputs (eisv-embed, eisv-adapt) read as audio; soundfile decodes them.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif", ".au")


class AudioError(ValueError):
    """An audio file that cannot be used; the message names the file and the problem."""


@dataclass
class AudioInfo:
    """What the header of an audio file says (nothing is decoded)."""

    path: Path
    num_frames: int  # samples per channel at the file's own rate
    sampling_rate: int  # Hz

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.sampling_rate


def to_mono(array: np.ndarray, where: str = "audio", channel_axis=None) -> np.ndarray:
    """(samples,) as it is; a 2-D array -> (samples,) mean over its channel axis.

    `channel_axis=None` (arrays from users): the shorter axis, so `(channels, samples)` and
    `(samples, channels)` both work, and at most `MAX_CHANNELS` channels. Decoded files pass
    `channel_axis=1` (soundfile's layout; any number of channels). Raises `ValueError` starting
    with `where` for more than 2 axes or, when guessing, a channel axis longer than `MAX_CHANNELS`.
    """
    if array.ndim == 1:
        return array
    if array.ndim != 2:
        raise ValueError(f"{where} has shape {array.shape}; expected 1-D samples or (channels, samples)")
    if channel_axis is None:
        channel_axis = int(np.argmin(array.shape))
        if array.shape[channel_axis] > MAX_CHANNELS:
            raise ValueError(f"{where} is a 2-D array of shape {array.shape}; a 2-D array is read as one "
                             f"multi-channel recording (at most {MAX_CHANNELS} channels). Pass a batch as a list "
                             f"of 1-D arrays.")
    if array.shape[channel_axis] == 1:  # the same values as the mean, without the pass over them
        return array[:, 0] if channel_axis == 1 else array[0]
    return array.mean(axis=channel_axis)


def resample(waveform: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """(samples,) float32 at `orig_rate` Hz -> (samples',) float32 at `target_rate` Hz (torchaudio sinc)."""
    if orig_rate == target_rate:
        return waveform
    import torchaudio  # lazily: arrays at the model's rate need no torchaudio

    return torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(waveform)), orig_rate,
                                          target_rate).numpy()


def probe_audio(path) -> AudioInfo:
    """Read the header of `path`; raises `AudioError` naming the file when missing, unreadable or empty."""
    import soundfile  # lazily: the model package needs it only for paths

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    try:
        info = soundfile.info(str(path))
    except Exception as error:  # soundfile raises several types for corrupt or unknown formats
        raise AudioError(f"{path}: cannot read audio ({error})") from None
    if info.frames <= 0:
        raise AudioError(f"{path}: audio file holds no samples")
    return AudioInfo(path, int(info.frames), int(info.samplerate))


def _checked(waveform: np.ndarray, path, rate: int, sampling_rate: int, check_finite: bool, near_s=None):
    """Mono samples at `rate` -> checked, contiguous float32 at `sampling_rate`."""
    if waveform.size == 0:
        raise AudioError(f"{path}: audio file holds no samples")
    if check_finite and not np.isfinite(waveform).all():
        near = "" if near_s is None else f" near {near_s:.1f} s"
        raise AudioError(f"{path}: audio contains NaN or Inf samples{near}")
    return np.ascontiguousarray(resample(waveform, rate, sampling_rate), dtype=np.float32)


def load_audio(path, sampling_rate: int = 16000, check_finite: bool = True) -> np.ndarray:
    """Decode `path` to a (samples,) float32 mono array at `sampling_rate` Hz.

    Raises `AudioError` naming the file for a missing, undecodable, empty or non-finite file.
    """
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    try:
        waveform, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # soundfile raises several types for corrupt or unknown formats
        raise AudioError(f"{path}: cannot decode audio ({error})") from None
    return _checked(to_mono(waveform, str(path), channel_axis=1), path, rate, sampling_rate, check_finite)


def window_starts(num_samples: int, window: int, hop: int) -> list:
    """Start samples of full-length windows covering `num_samples`; `[0]` when it fits in one."""
    if num_samples <= window:
        return [0]
    starts = list(range(0, num_samples - window + 1, hop))
    if starts[-1] != num_samples - window:
        starts.append(num_samples - window)
    return starts


def count_windows(info: AudioInfo, window_s: float, hop_s: float) -> int:
    """How many windows `read_windows` yields for the file."""
    window = int(round(window_s * info.sampling_rate))
    return len(window_starts(info.num_frames, window, int(round(hop_s * info.sampling_rate))))


def read_windows(info: AudioInfo, window_s: float, hop_s: float, sampling_rate: int = 16000, first: int = 0,
                 stop=None):
    """Yield `(window, first_new_sample)` for windows `first` to `stop - 1` (default: all) of a file:
    each window (samples,) float32 mono at `sampling_rate`, read from disk one at a time, and the
    sample of it from which on the audio was in no earlier window (0 for the first). A file no
    longer than `window_s` is one window, whole.

    Raises `AudioError` naming the file (and the time, for non-finite samples).
    """
    import soundfile

    window = int(round(window_s * info.sampling_rate))
    starts = window_starts(info.num_frames, window, int(round(hop_s * info.sampling_rate)))
    if len(starts) == 1:
        if first == 0 and (stop is None or stop > 0):
            yield load_audio(info.path, sampling_rate), 0
        return
    try:
        with soundfile.SoundFile(str(info.path)) as handle:
            previous_end = starts[first - 1] + window if first > 0 else 0
            for start in starts[first:stop]:
                handle.seek(start)
                chunk = to_mono(handle.read(window, dtype="float32", always_2d=True), str(info.path), channel_axis=1)
                new_from = int(round(max(0, previous_end - start) * sampling_rate / info.sampling_rate))
                previous_end = start + window
                yield _checked(chunk, info.path, info.sampling_rate, sampling_rate, True,
                               start / info.sampling_rate), new_from
    except AudioError:
        raise
    except Exception as error:
        raise AudioError(f"{info.path}: cannot decode audio ({error})") from None
