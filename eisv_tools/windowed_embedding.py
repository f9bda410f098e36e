"""Embedding audio files of any length with bounded memory: fixed windows, averaged.

A file no longer than `window_s` is embedded whole. A longer one is read from disk window by
window (`window_s` long, one every `hop_s` seconds, the last one aligned with the end of the
file, so every window is full length); the unit-norm window embeddings are averaged and the
mean is normalised again, as GE2E averages its partials. Memory is bounded whatever the file
length: a batch holds at most `batch_size` windows and at most `max_batch_s` seconds of audio
(16 ten-second windows through a C=512 ECAPA-TDNN take ~0.7 GB of activations on CPU, 8 take
~0.35 GB). Every returned embedding has unit L2 norm.

A file with less than `min_speech_s` seconds of active signal (default
`modeling_eisv.speech_activity.MIN_SPEECH_S`, 0.3 s; the rule is described there) is refused
with an `AudioFileError` naming it, before its last window is embedded: silence and blips would
otherwise get a confident embedding. Overlapping windows of a long file are counted once.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile
import torch
from tqdm.auto import tqdm

from data_collators.audio import AudioError, load_audio, resample
from modeling_eisv.speech_activity import MIN_SPEECH_S, active_seconds, too_little_speech

from .errors import AudioFileError, ToolError


@dataclass
class AudioFileInfo:
    """What the header of an audio file says (nothing is decoded)."""

    path: Path
    num_frames: int  # samples per channel at the file's own rate
    sampling_rate: int  # Hz

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.sampling_rate


def probe_audio(path) -> AudioFileInfo:
    """Read the header of `path`; raises `ToolError` naming the file when missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(path, f"{path}: no such audio file")
    try:
        info = soundfile.info(str(path))
    except Exception as error:  # soundfile raises several types for corrupt or unknown formats
        raise AudioFileError(path, f"{path}: cannot read audio ({error})") from None
    if info.frames <= 0:
        raise AudioFileError(path, f"{path}: audio file holds no samples")
    return AudioFileInfo(path, int(info.frames), int(info.samplerate))


def window_starts(num_samples: int, window: int, hop: int) -> list:
    """Start samples of full-length windows covering `num_samples`; `[0]` when it fits in one."""
    if num_samples <= window:
        return [0]
    starts = list(range(0, num_samples - window + 1, hop))
    if starts[-1] != num_samples - window:
        starts.append(num_samples - window)
    return starts


def read_windows(info: AudioFileInfo, window_s: float, hop_s: float, sampling_rate: int = 16000) -> Iterator[np.ndarray]:
    """Yield the (samples,) float32 mono windows of a file at `sampling_rate`, reading one at a time."""
    for waveform, _ in _windows(info, window_s, hop_s, sampling_rate):
        yield waveform


def _windows(info: AudioFileInfo, window_s: float, hop_s: float, sampling_rate: int):
    """Yield `(window, first_new_sample)`: each window at `sampling_rate` and the sample of it from
    which on the audio was not in an earlier window (0 for the first)."""
    window = int(round(window_s * info.sampling_rate))
    starts = window_starts(info.num_frames, window, int(round(hop_s * info.sampling_rate)))
    if len(starts) == 1:
        try:
            yield load_audio(info.path, sampling_rate), 0
        except AudioError as error:
            raise AudioFileError(info.path, str(error)) from None
        return
    try:
        with soundfile.SoundFile(str(info.path)) as handle:
            previous_end = 0
            for start in starts:
                handle.seek(start)
                chunk = handle.read(window, dtype="float32", always_2d=True).mean(axis=1)
                if not np.isfinite(chunk).all():
                    raise AudioFileError(info.path, f"{info.path}: audio contains NaN or Inf samples near "
                                                    f"{start / info.sampling_rate:.1f} s")
                new_from = int(round(max(0, previous_end - start) * sampling_rate / info.sampling_rate))
                previous_end = start + window
                chunk = np.ascontiguousarray(resample(chunk, info.sampling_rate, sampling_rate), dtype=np.float32)
                yield chunk, new_from
    except ToolError:
        raise
    except Exception as error:
        raise AudioFileError(info.path, f"{info.path}: cannot decode audio ({error})") from None


def count_windows(info: AudioFileInfo, window_s: float, hop_s: float) -> int:
    window = int(round(window_s * info.sampling_rate))
    return len(window_starts(info.num_frames, window, int(round(hop_s * info.sampling_rate))))


class WindowedEmbedder:
    """Batched, windowed embedding of audio files with an `EISVModel`.

    Args:
        model: an `EISVModel`, `EISVForSpeakerVerification` or `onnx_backend.OnnxModel` (anything
            whose output has `.embeddings`).
        feature_extractor: its `EISVFeatureExtractor`.
        batch_size: at most this many windows per forward pass.
        max_batch_s: at most this much audio per forward pass, in seconds (bounds memory).
        window_s, hop_s: window length and step for long files, in seconds.
        device: where the model runs; defaults to the model's device.
        min_speech_s: refuse a file with less active signal than this, in seconds (0: accept anything).
    """

    def __init__(self, model, feature_extractor, batch_size=16, window_s=10.0, hop_s=5.0, device=None,
                 max_batch_s=80.0, min_speech_s=MIN_SPEECH_S):
        if not (np.isfinite(window_s) and np.isfinite(hop_s)) or window_s <= 0 or not 0 < hop_s <= window_s:
            raise ToolError(f"need window_s > 0 and 0 < hop_s <= window_s; got window_s={window_s}, hop_s={hop_s}")
        if batch_size < 1:
            raise ToolError(f"batch_size must be positive; got {batch_size}")
        if not (np.isfinite(max_batch_s) and max_batch_s > 0):
            raise ToolError(f"max_batch_s must be a positive number of seconds; got {max_batch_s}")
        if min_speech_s is not None and not (np.isfinite(min_speech_s) and min_speech_s >= 0):
            raise ToolError(f"min_speech_s must be a number of seconds >= 0; got {min_speech_s}")
        self.min_speech_s = float(min_speech_s or 0.0)
        self.model, self.feature_extractor = model, feature_extractor
        self.batch_size, self.window_s, self.hop_s = int(batch_size), float(window_s), float(hop_s)
        if device is None:  # an `OnnxModel` has no parameters, only a device
            device = getattr(model, "device", None) or next(model.parameters()).device
        self.device = torch.device(device)
        self.sampling_rate = int(feature_extractor.sampling_rate)
        self.max_batch_samples = int(max(max_batch_s, window_s) * self.sampling_rate)

    @torch.inference_mode()
    def embed_waveforms(self, waveforms) -> np.ndarray:
        """List of (samples,) float32 arrays at 16 kHz -> (batch, embedding_size) unit-norm float32."""
        inputs = self.feature_extractor(list(waveforms), sampling_rate=self.sampling_rate, return_tensors="pt")
        inputs = {key: value.to(self.device) for key, value in inputs.items()}
        embeddings = self.model(**inputs).embeddings.float()
        return torch.nn.functional.normalize(embeddings, dim=-1).cpu().numpy()

    def _checked_windows(self, info: AudioFileInfo, num_windows: int, min_samples: int) -> Iterator[np.ndarray]:
        """The windows of one file; raises `AudioFileError` before its last window when the file has
        too little speech or a window is shorter than the frontend needs."""
        speech_s = 0.0
        for number, (waveform, new_from) in enumerate(_windows(info, self.window_s, self.hop_s, self.sampling_rate)):
            if self.min_speech_s:
                speech_s += active_seconds(waveform, self.sampling_rate, count_from=new_from)
                if number == num_windows - 1 and speech_s < self.min_speech_s:
                    raise AudioFileError(info.path, too_little_speech(info.path, speech_s, self.min_speech_s))
            if waveform.size < min_samples:
                raise AudioFileError(info.path, f"{info.path}: too short to embed ({waveform.size} samples; at least "
                                                f"{min_samples} at {self.sampling_rate} Hz are needed)")
            yield waveform

    def embed_files(self, paths, progress=False, infos=None) -> Iterator[tuple]:
        """Yield `(position, embedding (D,) float32 unit-norm, AudioFileInfo, num_windows)` per file.

        Files are probed up front (a missing or unreadable one raises `ToolError` before any
        computation), then embedded shortest first to limit padding; yields come in that order.
        When a file fails while being read (undecodable, too little speech), the files read before
        it are still yielded, then the `AudioFileError` is raised.
        """
        infos = list(infos) if infos is not None else [probe_audio(path) for path in paths]
        counts = [count_windows(info, self.window_s, self.hop_s) for info in infos]
        order = sorted(range(len(infos)), key=lambda i: min(infos[i].duration_s, self.window_s))
        min_samples = getattr(self.feature_extractor, "min_samples", 1)
        sums, left = {}, {}
        batch = []  # (position, waveform)
        bar = tqdm(total=sum(counts), unit="window", desc="embedding", disable=not progress, dynamic_ncols=True)

        def flush():
            finished = []
            embeddings = self.embed_waveforms([waveform for _, waveform in batch])
            for (position, waveform), embedding in zip(batch, embeddings):
                sums[position] = sums.get(position, 0.0) + embedding
                left[position] -= 1
                if left[position] == 0:
                    finished.append(position)
            bar.update(len(batch))
            batch.clear()
            for position in finished:
                mean = sums.pop(position)
                yield position, (mean / max(np.linalg.norm(mean), 1e-12)).astype(np.float32), infos[position], counts[position]

        try:
            for position in order:
                left[position] = counts[position]
                try:
                    for waveform in self._checked_windows(infos[position], counts[position], min_samples):
                        batch.append((position, waveform))
                        batch_samples = sum(w.size for _, w in batch)
                        if len(batch) >= self.batch_size or batch_samples >= self.max_batch_samples:
                            yield from flush()
                except ToolError:
                    # Finish the files read before this one, so a caller that saves what it got loses nothing.
                    batch[:] = [item for item in batch if item[0] != position]
                    if batch:
                        yield from flush()
                    raise
            if batch:
                yield from flush()
        finally:
            bar.close()


def embed_paths(model, feature_extractor, paths, progress=False, **embedder_kwargs) -> np.ndarray:
    """Convenience: list of audio paths -> (files, embedding_size) unit-norm float32, in input order."""
    embedder = WindowedEmbedder(model, feature_extractor, **embedder_kwargs)
    out = None
    for position, embedding, _, _ in embedder.embed_files(paths, progress=progress):
        if out is None:
            out = np.zeros((len(paths), embedding.size), dtype=np.float32)
        out[position] = embedding
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)
