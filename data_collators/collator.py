"""The DataLoader `collate_fn`: rows of an indexed dataset -> one batch that `model(**batch)` takes."""

import zlib
from collections import Counter

import numpy as np
import torch

from .copypaste import CopyPaste
from .emotion_masking import SELECTIONS, emotion_aware_mask, frame_rms

EM_MEMBERS = ("both", "second", "all")


class EISVCollator:
    """Crops, CopyPaste pairs, features, padding, EM mask, pair index and labels for one step.

    Items are rows of the indexed dataset (dicts with `row_index`) or plain row indices, as a
    `SpeakerEmotionBatchSampler` batch yields them: consecutive rows of one speaker are taken two
    by two as candidate pairs (u, v). Each candidate becomes, in this order of precedence:

    - with `copypaste` and probability `copypaste_prob`: a CopyPaste pair (see `copypaste.py`),
      first member at u's position, second at v's;
    - else with `pair_without_copypaste`: the pair (crop of u, crop of v), two real utterances that
      the sampler gave different emotions where the speaker has several;
    - else two unpaired crops.

    So the batch size is the number of items whatever the settings, and the ablation rows compare
    at equal compute. The paper's baseline (row 1) is `copypaste=False, pair_without_copypaste=False,
    em_select="none"`: plain crops, no pairs, no mask. The defaults are the full recipe.

    Randomness: each call draws from `numpy.random.default_rng([seed, epoch, crc32(rows)])`, so the
    same seed, epoch and items give the same batch in any process or DataLoader worker, whatever
    `num_workers`. `seed=None` instead seeds from `torch.initial_seed()` (distinct per worker and per
    epoch in a DataLoader) and a call counter; or pass `rng=` to `__call__`.

    Args:
        feature_extractor: `EISVFeatureExtractor`.
        store: `AudioStore` / `LazyAudioStore` of the same indexed dataset.
        crop_seconds: length of each input in seconds (2.0); shorter clips are used whole. None: whole clips.
        copypaste: build CopyPaste pairs.
        copypaste_prob: probability that a candidate pair becomes a CopyPaste pair (0.5: half the
            pairs stay natural speech, whose emotion was not spliced; the paper does not say).
        pattern_probs: {pattern: probability}, see `copypaste.PATTERNS` (default uniform).
        min_segment_share: least share of a composite from each of its two segments (0.25).
        pair_without_copypaste: pair real utterances when a candidate is not CopyPaste'd (True, so
            ERL has pairs in every batch even with CopyPaste off).
        em_select: `"energy"`, `"random"` or `"none"`.
        em_ratio: share of real frames hidden per masked row (0.2).
        em_contiguous: hide blocks of `em_block_frames` frames (True) or scattered frames.
        em_block_frames: block length in frames (20 = 200 ms).
        em_members: `"both"` members of each pair, `"second"` (the composite / second utterance)
            only, or `"all"` rows, unpaired included.
        seed: int, or None for the worker's torch seed.
        return_waveforms: return `waveforms` (B, samples) float32 and `num_samples` (B,) instead of
            `input_features` / `attention_mask`, for a training loop that computes the features on
            its accelerator with `feature_extractor.extract` (the data workers then skip the FFTs,
            about 80% of their time). The EM mask is on the same frame grid either way.
    """

    def __init__(self, feature_extractor, store, crop_seconds=2.0, copypaste=True, copypaste_prob=0.5,
                 pattern_probs=None, min_segment_share=0.25, pair_without_copypaste=True, em_select="energy",
                 em_ratio=0.2, em_contiguous=True, em_block_frames=20, em_members="both", seed=0,
                 return_waveforms=False):
        if em_select not in SELECTIONS:
            raise ValueError(f"EISVCollator: em_select={em_select!r}; choose from {SELECTIONS}")
        if em_members not in EM_MEMBERS:
            raise ValueError(f"EISVCollator: em_members={em_members!r}; choose from {EM_MEMBERS}")
        if not 0.0 <= copypaste_prob <= 1.0:
            raise ValueError(f"EISVCollator: copypaste_prob={copypaste_prob} must lie in [0, 1]")
        if crop_seconds is not None and crop_seconds * store.sampling_rate < feature_extractor.win_length:
            raise ValueError(f"EISVCollator: crop_seconds={crop_seconds} is shorter than one feature frame")
        if store.sampling_rate != feature_extractor.sampling_rate:
            raise ValueError(f"EISVCollator: audio store at {store.sampling_rate} Hz, features expect "
                             f"{feature_extractor.sampling_rate} Hz")
        self.feature_extractor, self.store = feature_extractor, store
        self.crop_samples = None if crop_seconds is None else int(round(crop_seconds * store.sampling_rate))
        self.copypaste, self.copypaste_prob = copypaste, copypaste_prob
        self.pair_without_copypaste = pair_without_copypaste
        self.em_select, self.em_ratio, self.em_contiguous = em_select, em_ratio, em_contiguous
        self.em_block_frames, self.em_members = em_block_frames, em_members
        self.builder = CopyPaste(store, self.crop_samples, pattern_probs, min_segment_share)
        self.seed, self.epoch, self._calls = seed, 0, 0
        self.return_waveforms = return_waveforms

    @property
    def counts(self) -> Counter:
        """Patterns and fallbacks built so far by this process (each DataLoader worker keeps its own)."""
        return self.builder.counts

    def set_epoch(self, epoch: int):
        """Mix `epoch` into the per-batch seed (reaches workers that are started after the call; for
        persistent workers, pass items `{"row_index": r, "epoch": e}` instead, which take precedence)."""
        self.epoch = int(epoch)

    def _rng(self, rows: np.ndarray, epoch: int) -> np.random.Generator:
        if self.seed is None:
            self._calls += 1
            return np.random.default_rng([torch.initial_seed() % 2**63, self._calls])
        return np.random.default_rng([int(self.seed), epoch, zlib.crc32(rows.astype(np.int64).tobytes())])

    def __call__(self, items, rng: np.random.Generator = None) -> dict:
        """Items -> {"input_features" (B, T, F) float32, "attention_mask" (B, T) int32, "labels" (B,)
        long, "pair_index" (pairs, 2) long, "em_mask" (B, T) bool, "neutral_rows" (B,) bool: a plain
        crop of a neutral utterance (the teacher anchor's reference)}; B = len(items)."""
        rows = np.asarray([int(item["row_index"]) if isinstance(item, dict) else int(item) for item in items])
        if len(rows) == 0:
            raise ValueError("EISVCollator: empty batch")
        if rows.min() < 0 or rows.max() >= len(self.store):
            raise ValueError(f"EISVCollator: row index {rows.max() if rows.max() >= 0 else rows.min()} outside "
                             f"the audio store ({len(self.store)} rows); store and dataset must match")
        tagged = {int(item["epoch"]) for item in items if isinstance(item, dict) and "epoch" in item}
        if len(tagged) > 1:
            raise ValueError(f"EISVCollator: one batch holds items of epochs {sorted(tagged)}")
        rng = self._rng(rows, tagged.pop() if tagged else self.epoch) if rng is None else rng
        waves, pairs, masked = [None] * len(rows), [], np.zeros(len(rows), dtype=bool)
        plain = np.zeros(len(rows), dtype=bool)  # a crop of one real utterance, not a CopyPaste composite
        for u, v in self._candidate_pairs(rows):
            if v is None:
                waves[u] = self.store.crop(rows[u], self.crop_samples, rng)
                plain[u] = True
                continue
            if self.copypaste and rng.random() < self.copypaste_prob:
                pair = self.builder.make_pair(rows[u], rows[v], rng)
                waves[u], waves[v] = pair.first, pair.second
                pairs.append((u, v))
            else:
                waves[u] = self.store.crop(rows[u], self.crop_samples, rng)
                waves[v] = self.store.crop(rows[v], self.crop_samples, rng)
                plain[[u, v]] = True
                if self.pair_without_copypaste:
                    pairs.append((u, v))
        pair_index = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)
        if self.em_members == "all":
            masked[:] = True
        elif len(pairs):
            masked[pair_index[:, 1].numpy()] = True
            if self.em_members == "both":
                masked[pair_index[:, 0].numpy()] = True

        num_samples = torch.tensor([w.size for w in waves])
        waveforms = torch.zeros(len(waves), int(num_samples.max()))
        for b, wave in enumerate(waves):
            waveforms[b, : wave.size] = torch.from_numpy(wave)
        lengths = self.feature_extractor.num_frames_tensor(num_samples)
        if self.em_select == "none":
            em_mask = torch.zeros(len(waves), int(lengths.max()), dtype=torch.bool)
        else:
            energy = frame_rms(self.feature_extractor, waveforms, int(lengths.max()))
            em_mask = emotion_aware_mask(energy, lengths, self.em_ratio, self.em_select,
                                         self.em_contiguous, self.em_block_frames, masked, rng)
        batch = {"labels": torch.from_numpy(self.store.speaker_ids[rows].copy()), "pair_index": pair_index,
                 "em_mask": em_mask, "neutral_rows": torch.from_numpy(plain & self.store.is_neutral[rows])}
        if self.return_waveforms:  # the consumer runs feature_extractor.extract, e.g. on the GPU
            batch.update(waveforms=waveforms, num_samples=num_samples)
        else:
            batch["input_features"], batch["attention_mask"] = self.feature_extractor.extract(waveforms, num_samples)
        return batch

    def _candidate_pairs(self, rows):
        """Positions (u, v) of consecutive same-speaker items, two by two; (u, None) for a leftover."""
        by_speaker = {}
        for position, row in enumerate(rows):
            by_speaker.setdefault(int(self.store.speaker_ids[row]), []).append(position)
        for positions in by_speaker.values():
            for i in range(0, len(positions) - 1, 2):
                yield positions[i], positions[i + 1]
            if len(positions) % 2:
                yield positions[-1], None
