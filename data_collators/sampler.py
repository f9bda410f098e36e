"""Batches of P speakers x K utterances, each speaker's K spread over its emotions."""

import numpy as np
import torch


class SpeakerEmotionBatchSampler(torch.utils.data.Sampler):
    """Yields lists of P*K row indices: `speakers_per_batch` distinct speakers, `utterances_per_speaker`
    consecutive rows each.

    Each epoch, every speaker's rows are shuffled within each emotion and interleaved round-robin over
    its emotions (in a shuffled order), so K consecutive rows cover min(K, emotions) different
    emotions, and the collator's pairs (rows 0-1, 2-3, ... of a speaker) differ in emotion whenever
    the speaker has two. The stream is cut into chunks of K (a speaker with fewer than K rows repeats
    them); batches draw P speakers without replacement, weighted by their chunks left, until fewer
    than P speakers have chunks. One epoch thus shows about every row once.

    Under multi-process training, the epoch's batches are dealt out round-robin: process `rank` of
    `num_replicas` gets batches rank, rank + num_replicas, ... and every process gets the same
    number (the last few are dropped), so no process waits on another. With Accelerate, either shard
    here and do not `prepare` the DataLoader, or pass `num_replicas=1, rank=0` and let it shard.

    Args:
        speaker_ids: (rows,) speaker id of each row, e.g. `dataset["speaker_id"]`.
        emotion_ids: (rows,) emotion id of each row.
        speakers_per_batch: P.
        utterances_per_speaker: K (even, so that every row has a partner for a pair).
        seed: with `set_epoch(e)`, fixes every epoch's batches.
        num_replicas, rank: processes and this one's rank; default from `torch.distributed` when it
            is initialised, else 1 and 0.
    """

    def __init__(self, speaker_ids, emotion_ids, speakers_per_batch: int = 16, utterances_per_speaker: int = 2,
                 seed: int = 0, num_replicas: int = None, rank: int = None):
        self.speaker_ids = np.asarray(speaker_ids, dtype=np.int64)
        self.emotion_ids = np.asarray(emotion_ids, dtype=np.int64)
        if self.speaker_ids.shape != self.emotion_ids.shape or self.speaker_ids.ndim != 1:
            raise ValueError(f"speaker_ids {self.speaker_ids.shape} and emotion_ids {self.emotion_ids.shape} "
                             f"must be two 1-D sequences of the same length")
        num_speakers = len(np.unique(self.speaker_ids))
        if not 1 <= speakers_per_batch <= num_speakers:
            raise ValueError(f"speakers_per_batch={speakers_per_batch}, but the data has {num_speakers} speakers")
        if utterances_per_speaker < 1:
            raise ValueError(f"utterances_per_speaker={utterances_per_speaker} must be >= 1")
        if num_replicas is None or rank is None:
            distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
            num_replicas = num_replicas if num_replicas is not None else (
                torch.distributed.get_world_size() if distributed else 1)
            rank = rank if rank is not None else (torch.distributed.get_rank() if distributed else 0)
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank={rank} must lie in [0, num_replicas={num_replicas})")
        self.speakers_per_batch = speakers_per_batch
        self.utterances_per_speaker = utterances_per_speaker
        self.seed, self.epoch = seed, 0
        self.num_replicas, self.rank = num_replicas, rank
        self._groups = {}  # speaker -> {emotion -> rows}
        for row, (speaker, emotion) in enumerate(zip(self.speaker_ids.tolist(), self.emotion_ids.tolist())):
            self._groups.setdefault(speaker, {}).setdefault(emotion, []).append(row)
        self._plan_cache = None

    def set_epoch(self, epoch: int):
        """Reshuffle for `epoch` (call before iterating, like DistributedSampler)."""
        self.epoch = int(epoch)

    def _speaker_stream(self, emotions: dict, rng: np.random.Generator) -> list:
        """One speaker's rows, shuffled per emotion, interleaved round-robin over shuffled emotions."""
        lists = [list(rng.permutation(emotions[e])) for e in rng.permutation(sorted(emotions))]
        longest = max(len(rows) for rows in lists)
        return [rows[i] for i in range(longest) for rows in lists if i < len(rows)]

    def _plan(self) -> list:
        """All batches of this epoch (every process computes the same list), cached per epoch."""
        if self._plan_cache is not None and self._plan_cache[0] == self.epoch:
            return self._plan_cache[1]
        rng = np.random.default_rng([self.seed, self.epoch])
        k = self.utterances_per_speaker
        chunks = {}
        for speaker in sorted(self._groups):
            stream = self._speaker_stream(self._groups[speaker], rng)
            if len(stream) % k:  # complete the last chunk from the start of the stream (wrapping)
                stream = stream + [stream[i % len(stream)] for i in range(k - len(stream) % k)]
            chunks[speaker] = [stream[i:i + k] for i in range(0, len(stream), k)]
        speakers = np.asarray(sorted(chunks))
        left = np.asarray([len(chunks[s]) for s in speakers], dtype=np.float64)
        taken = np.zeros(len(speakers), dtype=np.int64)
        batches = []
        while (left > 0).sum() >= self.speakers_per_batch:
            picks = rng.choice(len(speakers), size=self.speakers_per_batch, replace=False, p=left / left.sum())
            batch = []
            for pick in picks:
                batch.extend(int(r) for r in chunks[speakers[pick]][taken[pick]])
                taken[pick] += 1
                left[pick] -= 1
            batches.append(batch)
        per_process = len(batches) // self.num_replicas
        mine = batches[self.rank::self.num_replicas][:per_process]
        self._plan_cache = (self.epoch, mine)
        return mine

    def __iter__(self):
        return iter(self._plan())

    def __len__(self):
        return len(self._plan())
