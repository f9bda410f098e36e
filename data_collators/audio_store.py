"""Audio of an indexed dataset held for training, so that steps do not decode files.

`AudioStore` decodes every clip once into ONE int16 array plus (rows + 1) int64 offsets:
2 bytes per sample, i.e. 32 kB per second or about 115 MB per hour of 16 kHz audio (the `shared/data`
train split, 3.2 h, takes about 370 MB). A forked DataLoader worker shares these pages copy-on-write:
a numpy array is one object, so reading from it never touches (and never copies) its pages.
`max_bytes` (default 2 GiB, about 18 h) bounds it; beyond that, use `LazyAudioStore`, which decodes
the file on every access instead (slow, no memory).

`prepare` (AudioStore only) is applied to every decoded clip before it is held: the feature
extractor's own `prepare` when its `trim_long_silences` is on, so that training crops come from the
clip as the trained model will embed it (voice-activity trimmed, `modeling_eisv.voice_activity`).

Both also hold the per-row labels (`speaker_ids`, `emotion_ids`, `is_neutral`), and per row the
span of active speech (`active`: first and last sample of 25 ms frames within 40 dB of the loudest)
and the RMS over that span. Crops are drawn inside the active span where it is long enough: acted
corpora such as RAVDESS open with up to a second of silence, which would otherwise fill whole crops
and whole CopyPaste segments.
"""

import numpy as np

from modeling_eisv.audio_io import load_audio

ACTIVE_FLOOR_DB = 40.0  # frames quieter than the loudest by more than this are silence


def active_span(waveform: np.ndarray, frame: int = 400, hop: int = 160):
    """(samples,) -> (start, stop) samples of the span from the first to the last active frame, and the
    RMS over that span."""
    if waveform.size < frame:
        return 0, waveform.size, float(np.sqrt(np.mean(np.square(waveform, dtype=np.float64))))
    frames = np.lib.stride_tricks.sliding_window_view(waveform, frame)[::hop]
    energy = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    active = np.flatnonzero(energy >= energy.max() * 10 ** (-ACTIVE_FLOOR_DB / 20))
    start, stop = int(active[0] * hop), int(min(waveform.size, active[-1] * hop + frame))
    return start, stop, float(np.sqrt(np.mean(np.square(waveform[start:stop], dtype=np.float64))))


class _StoreBase:
    """Per-row labels and lookups shared by both stores; subclasses implement `waveform`."""

    def __init__(self, dataset, sampling_rate):
        missing = [c for c in ("path", "num_samples", "speaker_id", "emotion_id", "is_neutral")
                   if c not in dataset.column_names]
        if missing:
            raise ValueError(f"audio store: dataset lacks {missing}; index it first with data_collators.index_dataset")
        self.sampling_rate = sampling_rate
        self.paths = list(dataset["path"])
        self.lengths = np.asarray(dataset["num_samples"], dtype=np.int64)  # (rows,) samples
        self.speaker_ids = np.asarray(dataset["speaker_id"], dtype=np.int64)  # (rows,)
        self.emotion_ids = np.asarray(dataset["emotion_id"], dtype=np.int64)  # (rows,)
        self.is_neutral = np.asarray(dataset["is_neutral"], dtype=bool)  # (rows,)
        features = dataset.features
        self.speakers = list(getattr(features["speaker_id"], "names", []) or [])
        self.emotions = list(getattr(features["emotion_id"], "names", []) or [])
        self._index_speakers()

    @property
    def num_speakers(self) -> int:
        """Speakers of the store, speed-perturbed copies included."""
        return int(self.speaker_ids.max()) + 1 if len(self.speaker_ids) else 0

    @staticmethod
    def count_speakers(dataset, speed_factors=()) -> int:
        """The `num_speakers` a store of `dataset` with these speed factors will have, without decoding it
        (each speed copy is a new set of speakers: ids + k * (max id + 1))."""
        ids = dataset["speaker_id"]
        return (int(max(ids)) + 1) * (1 + len(speed_factors)) if len(ids) else 0

    def _index_speakers(self):
        self._by_speaker = {}  # speaker id -> {emotion id -> rows}
        for row, (speaker, emotion) in enumerate(zip(self.speaker_ids.tolist(), self.emotion_ids.tolist())):
            self._by_speaker.setdefault(speaker, {}).setdefault(emotion, []).append(row)
        self._by_speaker = {s: {e: np.asarray(r) for e, r in sorted(d.items())} for s, d in self._by_speaker.items()}

    def __len__(self):
        return len(self.lengths)

    def rows_by_emotion(self, speaker_id: int) -> dict:
        """{emotion id: (rows,) int array} of one speaker, emotions in id order."""
        return self._by_speaker[int(speaker_id)]

    def crop(self, row: int, num_samples: int, rng: np.random.Generator) -> np.ndarray:
        """A random window of `num_samples` samples of clip `row`, float32: inside the active span when
        that is long enough, else covering it; the whole clip when the clip is shorter."""
        length = int(self.lengths[row])
        if num_samples is None or length <= num_samples:
            return self.waveform(row)
        low, high = (int(x) for x in self.active[row])
        if high - low >= num_samples:
            start = int(rng.integers(low, high - num_samples + 1))
        else:  # placed at random among the windows that hold the whole active span
            start = int(rng.integers(max(0, high - num_samples), min(low, length - num_samples) + 1))
        return self.waveform(row, start, start + num_samples)


class AudioStore(_StoreBase):
    """Every clip decoded once into one int16 array (see module docstring for memory).

    Args:
        dataset: output of `index_dataset`.
        sampling_rate: Hz, as indexed.
        max_bytes: refuse to hold more than this many bytes of audio (2 bytes per sample).
        speed_factors: e.g. (0.9, 1.1): every clip is held again at each speed as a new speaker (rows
            `len(dataset) * k + row`, speakers `id + k * num_speakers`); `num_speakers` counts them.
        prepare: None, or (samples,) float32 -> (samples',) float32 applied to each decoded clip before it
            is held (e.g. `EISVFeatureExtractor.prepare` with `trim_long_silences`); `lengths` are then
            those of the prepared clips and `indexed_seconds` keeps what the index said.
    """

    def __init__(self, dataset, sampling_rate: int = 16000, max_bytes: int = 2 * 1024**3, speed_factors=(),
                 prepare=None):
        super().__init__(dataset, sampling_rate)
        total = int(self.lengths.sum())
        self.indexed_seconds = total / sampling_rate
        if 2 * total * (1 + sum(1.0 / f for f in speed_factors)) > max_bytes:
            raise MemoryError(
                f"AudioStore: {total / sampling_rate / 3600:.1f} h of audio needs {2 * total / 2**30:.2f} GiB "
                f"(> max_bytes={max_bytes / 2**30:.2f} GiB); raise max_bytes or use LazyAudioStore")
        self.offsets = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        self.samples = np.empty(total, dtype=np.int16)
        self.rms = np.empty(len(self.lengths), dtype=np.float32)  # (rows,) RMS of the active span, full scale 1.0
        self.active = np.empty((len(self.lengths), 2), dtype=np.int64)  # (rows, 2) start, stop samples
        for row, path in enumerate(self.paths):
            waveform = load_audio(path, sampling_rate)
            if waveform.size != self.lengths[row]:
                raise ValueError(f"{path}: {waveform.size} samples now, {self.lengths[row]} when indexed; "
                                 f"the file changed since indexing, index the dataset again")
            if prepare is not None:
                waveform = np.asarray(prepare(waveform), dtype=np.float32)
                if not 0 < waveform.size <= self.lengths[row]:
                    raise ValueError(f"{path}: prepare returned {waveform.size} samples from {self.lengths[row]}; "
                                     f"it may shorten a clip, not empty or lengthen it")
                self.lengths[row] = waveform.size
            self.offsets[row + 1] = self.offsets[row] + waveform.size
            start, stop, self.rms[row] = active_span(waveform)
            self.active[row] = start, stop
            self.samples[self.offsets[row]:self.offsets[row + 1]] = np.round(np.clip(waveform, -1.0, 1.0) * 32767.0)
        if self.offsets[-1] < total:  # prepared clips are shorter: give the rest back
            self.samples = self.samples[: self.offsets[-1]].copy()
        if speed_factors:
            self._add_speed_copies(speed_factors)

    def _add_speed_copies(self, factors):
        """Append every clip again at each speed factor (resampled by 1/factor: tempo and pitch change,
        as sox `speed`), each copy under a new speaker: `name@speed0.9`, id + k * speakers."""
        import torch
        import torchaudio

        if any(not 0.5 <= f <= 2.0 or f == 1.0 for f in factors):
            raise ValueError(f"AudioStore: speed factors {list(factors)} must lie in [0.5, 2] and differ from 1")
        num_rows, num_speakers = len(self.lengths), int(self.speaker_ids.max()) + 1
        names = self.speakers or [str(i) for i in range(num_speakers)]
        chunks, lengths, rms, active = [self.samples[: self.offsets[-1]]], [self.lengths], [self.rms], [self.active]
        for factor in factors:
            new_lengths = np.empty(num_rows, dtype=np.int64)
            for row in range(num_rows):
                wave = torch.from_numpy(self.waveform(row))
                changed = torchaudio.functional.resample(wave, int(round(100 * factor)), 100).numpy()
                new_lengths[row] = changed.size
                chunks.append(np.round(np.clip(changed, -1.0, 1.0) * 32767.0).astype(np.int16))
            lengths.append(new_lengths)
            rms.append(self.rms[:num_rows].copy())
            active.append(np.round(self.active[:num_rows] / factor).astype(np.int64).clip(0, new_lengths[:, None]))
        k = len(factors) + 1
        self.samples = np.concatenate(chunks)
        self.lengths, self.rms, self.active = np.concatenate(lengths), np.concatenate(rms), np.concatenate(active)
        self.offsets = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=self.offsets[1:])
        self.paths = self.paths * k
        self.speaker_ids = np.concatenate([self.speaker_ids + i * num_speakers for i in range(k)])
        self.emotion_ids = np.tile(self.emotion_ids, k)
        self.is_neutral = np.tile(self.is_neutral, k)
        self.speakers = names + [f"{name}@speed{f:g}" for f in factors for name in names]
        self._index_speakers()

    @property
    def nbytes(self) -> int:
        """Bytes held for audio and offsets."""
        return self.samples.nbytes + self.offsets.nbytes

    def waveform(self, row: int, start: int = 0, stop: int = None) -> np.ndarray:
        """Samples [start, stop) of clip `row` as (samples,) float32 in [-1, 1]."""
        begin = self.offsets[row]
        stop = self.lengths[row] if stop is None else stop
        return self.samples[begin + start: begin + stop].astype(np.float32) * np.float32(1.0 / 32767.0)


class LazyAudioStore(_StoreBase):
    """Same interface as `AudioStore`, decoding the file on every access: no memory, slower steps."""

    def __init__(self, dataset, sampling_rate: int = 16000):
        super().__init__(dataset, sampling_rate)
        self.rms = _LazySpan(self, 2)
        self.active = _LazySpan(self, slice(0, 2))

    nbytes = 0

    def waveform(self, row: int, start: int = 0, stop: int = None) -> np.ndarray:
        return load_audio(self.paths[row], self.sampling_rate)[start:stop]


class _LazySpan:
    """`store.active[row]` / `store.rms[row]` computed on demand (decoding the clip) for `LazyAudioStore`."""

    def __init__(self, store, part):
        self._store, self._part = store, part

    def __getitem__(self, row):
        return active_span(self._store.waveform(int(row)))[self._part]
