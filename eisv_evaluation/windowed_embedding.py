"""Embedding audio files of any length with bounded memory: fixed windows, averaged.

A file no longer than `window_s` is embedded whole. A longer one is read from disk window by
window (`window_s` long, one every `hop_s` seconds, the last one aligned with the end of the
file, so every window is full length: `modeling_eisv.audio_io.read_windows`); the unit-norm
window embeddings are averaged and the mean is normalised again, as GE2E averages its partials.
Memory is bounded whatever the file length: a batch holds at most `batch_size` windows and at
most `max_batch_s` seconds of audio (16 ten-second windows through a C=512 ECAPA-TDNN take
~0.7 GB of activations on CPU, 8 take ~0.35 GB). Every returned embedding has unit L2 norm.

Decoding, windowing and the feature extractor's per-waveform step (`prepare`) run in
`num_workers` DataLoader worker processes (0: in this process), one item per file or per
`batch_size` windows of a long file; batching, features (`extract`, on the model's device) and
the model run here, in the same order whatever `num_workers`, so the results are the same.

A file with less than `min_speech_s` seconds of active signal (default
`modeling_eisv.speech_activity.MIN_SPEECH_S`, 0.3 s; the rule is described there) is refused
with an `AudioFileError` naming it, before its last window is embedded: silence and blips would
otherwise get a confident embedding. Overlapping windows of a long file are counted once.
"""

from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from modeling_eisv.audio_io import AudioError, AudioInfo, count_windows, read_windows, window_starts
from modeling_eisv.audio_io import probe_audio as _probe_audio
from modeling_eisv.speech_activity import MIN_SPEECH_S, active_seconds, too_little_speech

from eisv_io.errors import AudioFileError, ToolError

AudioFileInfo = AudioInfo  # the name the tools used before audio_io held it
__all__ = ["AudioFileInfo", "WindowedEmbedder", "count_windows", "embed_paths", "probe_audio", "window_starts"]


def probe_audio(path) -> AudioInfo:
    """Read the header of `path`; raises `AudioFileError` naming the file when missing or unreadable."""
    try:
        return _probe_audio(path)
    except AudioError as error:
        raise AudioFileError(Path(path), str(error)) from None


class FileWindows(torch.utils.data.Dataset):
    """Item `(position, first, stop)` -> `(position, first, windows, error)`: windows `first` to
    `stop - 1` of file `position`, each as `(waveform, active_s)`: the (samples,) float32 window
    after the feature extractor's `prepare` (None for one too short to embed) and its active speech
    in seconds (overlaps counted once). Reading stops at the first bad window; `error` is then the
    `(path, message)` of the `AudioFileError` to raise after it, else None. (An exception itself
    would not survive the trip back from a worker: `AudioFileError` does not unpickle.)"""

    def __init__(self, infos, feature_extractor, window_s: float, hop_s: float, count_speech: bool):
        self.infos, self.feature_extractor = infos, feature_extractor
        self.window_s, self.hop_s, self.count_speech = window_s, hop_s, count_speech
        self.rate = int(feature_extractor.sampling_rate)
        self.min_samples = getattr(feature_extractor, "min_samples", 1)

    def __getitem__(self, item):
        position, first, stop = item
        info, windows = self.infos[position], []
        try:
            for number, (waveform, new_from) in enumerate(read_windows(info, self.window_s, self.hop_s, self.rate,
                                                                       first, stop), start=first):
                speech = active_seconds(waveform, self.rate, count_from=new_from) if self.count_speech else 0.0
                if waveform.size < self.min_samples:
                    windows.append((None, speech))
                    return position, first, windows, (info.path, f"{info.path}: too short to embed ({waveform.size} "
                                                                 f"samples; at least {self.min_samples} at {self.rate} "
                                                                 f"Hz are needed)")
                windows.append((self.feature_extractor.prepare(waveform, number), speech))
        except AudioError as error:
            return position, first, windows, (info.path, str(error))
        return position, first, windows, None


def _as_they_are(item):
    return item


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
        num_workers: DataLoader worker processes that decode and window the files (0: this process).
    """

    def __init__(self, model, feature_extractor, batch_size=16, window_s=10.0, hop_s=5.0, device=None,
                 max_batch_s=80.0, min_speech_s=MIN_SPEECH_S, num_workers=0):
        if not (np.isfinite(window_s) and np.isfinite(hop_s)) or window_s <= 0 or not 0 < hop_s <= window_s:
            raise ToolError(f"need window_s > 0 and 0 < hop_s <= window_s; got window_s={window_s}, hop_s={hop_s}")
        if batch_size < 1:
            raise ToolError(f"batch_size must be positive; got {batch_size}")
        if not (np.isfinite(max_batch_s) and max_batch_s > 0):
            raise ToolError(f"max_batch_s must be a positive number of seconds; got {max_batch_s}")
        if min_speech_s is not None and not (np.isfinite(min_speech_s) and min_speech_s >= 0):
            raise ToolError(f"min_speech_s must be a number of seconds >= 0; got {min_speech_s}")
        if num_workers < 0:
            raise ToolError(f"num_workers must be >= 0; got {num_workers}")
        self.min_speech_s, self.num_workers = float(min_speech_s or 0.0), int(num_workers)
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
        return self._embed_prepared([self.feature_extractor.prepare(w, i) for i, w in enumerate(waveforms)])

    @torch.inference_mode()
    def _embed_prepared(self, arrays) -> np.ndarray:
        """Arrays from `feature_extractor.prepare` -> (batch, embedding_size) unit-norm float32; the
        features are computed on the model's device."""
        waveforms, num_samples = self.feature_extractor.pad_waveforms(arrays)
        non_blocking = self.device.type == "cuda"
        features, mask = self.feature_extractor.extract(waveforms.to(self.device, non_blocking=non_blocking),
                                                        num_samples.to(self.device))
        embeddings = self.model(input_features=features, attention_mask=mask).embeddings.float()
        return torch.nn.functional.normalize(embeddings, dim=-1).cpu().numpy()

    def _items(self, order, counts):
        """`(position, first, stop)` per file in `order`; a long file is cut into pieces of at most
        `batch_size` windows and `max_batch_s` of audio, so what a worker holds stays bounded."""
        window = max(1, int(self.window_s * self.sampling_rate))
        per_item = max(1, min(self.batch_size, self.max_batch_samples // window))
        for position in order:
            for first in range(0, counts[position], per_item):
                yield position, first, min(first + per_item, counts[position])

    def _read(self, infos, order, counts):
        """`FileWindows` items in `order`, read by `num_workers` worker processes (or here)."""
        dataset = FileWindows(infos, self.feature_extractor, self.window_s, self.hop_s, bool(self.min_speech_s))
        items = list(self._items(order, counts))
        if self.num_workers == 0:
            return map(dataset.__getitem__, items)
        return iter(torch.utils.data.DataLoader(dataset, batch_size=None, sampler=items, collate_fn=_as_they_are,
                                                num_workers=self.num_workers))

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
        sums, left, speech = {}, {}, {}
        batch = []  # (position, prepared waveform)
        bar = tqdm(total=sum(counts), unit="window", desc="embedding", disable=not progress, dynamic_ncols=True)

        def flush():
            finished = []
            embeddings = self._embed_prepared([waveform for _, waveform in batch])
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
            for position, first, windows, error in self._read(infos, order, counts):
                left.setdefault(position, counts[position])
                try:
                    for number, (waveform, active_s) in enumerate(windows, start=first):
                        speech[position] = speech.get(position, 0.0) + active_s
                        if self.min_speech_s and number == counts[position] - 1 and speech[position] < self.min_speech_s:
                            raise AudioFileError(infos[position].path, too_little_speech(
                                infos[position].path, speech[position], self.min_speech_s))
                        if waveform is None:
                            break
                        batch.append((position, waveform))
                        batch_samples = sum(w.size for _, w in batch)
                        if len(batch) >= self.batch_size or batch_samples >= self.max_batch_samples:
                            yield from flush()
                    if error is not None:
                        raise AudioFileError(*error)
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
