"""Audio of an indexed dataset held for training, so that steps do not decode files.

`AudioStore` decodes every clip once into ONE int16 array plus (rows + 1) int64 offsets:
2 bytes per sample, i.e. 32 kB per second or about 115 MB per hour of 16 kHz audio (the `shared/data`
train split, 3.2 h, takes about 370 MB). A forked DataLoader worker shares these pages copy-on-write:
a numpy array is one object, so reading from it never touches (and never copies) its pages.
`max_bytes` (default 2 GiB, about 18 h) bounds it; beyond that, use `LazyAudioStore`, which decodes
the file on every access instead (slow, no memory).

Both also hold the per-row labels (`speaker_ids`, `emotion_ids`, `is_neutral`) and per-row RMS
that CopyPaste and the collator need.
"""

import numpy as np

from .audio import load_audio


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
        """A random window of `num_samples` samples of clip `row` (the whole clip when shorter), float32."""
        length = int(self.lengths[row])
        if num_samples is None or length <= num_samples:
            return self.waveform(row)
        start = int(rng.integers(0, length - num_samples + 1))
        return self.waveform(row, start, start + num_samples)


class AudioStore(_StoreBase):
    """Every clip decoded once into one int16 array (see module docstring for memory).

    Args:
        dataset: output of `index_dataset`.
        sampling_rate: Hz, as indexed.
        max_bytes: refuse to hold more than this many bytes of audio (2 bytes per sample).
    """

    def __init__(self, dataset, sampling_rate: int = 16000, max_bytes: int = 2 * 1024**3):
        super().__init__(dataset, sampling_rate)
        total = int(self.lengths.sum())
        if 2 * total > max_bytes:
            raise MemoryError(
                f"AudioStore: {total / sampling_rate / 3600:.1f} h of audio needs {2 * total / 2**30:.2f} GiB "
                f"(> max_bytes={max_bytes / 2**30:.2f} GiB); raise max_bytes or use LazyAudioStore")
        self.offsets = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=self.offsets[1:])
        self.samples = np.empty(total, dtype=np.int16)
        self.rms = np.empty(len(self.lengths), dtype=np.float32)  # (rows,) RMS of each clip, full scale 1.0
        for row, path in enumerate(self.paths):
            waveform = load_audio(path, sampling_rate)
            if waveform.size != self.lengths[row]:
                raise ValueError(f"{path}: {waveform.size} samples now, {self.lengths[row]} when indexed; "
                                 f"the file changed since indexing, index the dataset again")
            self.rms[row] = np.sqrt(np.mean(np.square(waveform, dtype=np.float64)))
            self.samples[self.offsets[row]:self.offsets[row + 1]] = np.round(np.clip(waveform, -1.0, 1.0) * 32767.0)

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
        self.rms = _LazyRMS(self)

    nbytes = 0

    def waveform(self, row: int, start: int = 0, stop: int = None) -> np.ndarray:
        return load_audio(self.paths[row], self.sampling_rate)[start:stop]


class _LazyRMS:
    """`store.rms[row]` computed on demand for `LazyAudioStore`."""

    def __init__(self, store):
        self._store = store

    def __getitem__(self, row):
        waveform = self._store.waveform(int(row))
        return np.float32(np.sqrt(np.mean(np.square(waveform, dtype=np.float64))))
