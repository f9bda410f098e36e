r"""CopyPaste parallel pairs: two inputs of one speaker with different emotional content.

A pair is (first, second). `first` is always an original utterance (a plain crop); `second` is a
CopyPaste composite: a window of one utterance followed by a window of another, loudness-matched.
The pattern says what the composite holds and what it is paired with:

| pattern               | first (original)   | second (composite)                                  |
|-----------------------|--------------------|-----------------------------------------------------|
| `neutral_emotional`   | neutral N          | [other neutral N' \| emotional E]                    |
| `emotional_neutral`   | neutral N          | [emotional E \| other neutral N']                    |
| `emotional_emotional` | emotional E1       | [emotional E2 \| emotional E3], E2 != E3, both != E1 where the speaker has them |
| `original_copypaste`  | any utterance U    | U's own window joined (random order) to a window of another emotion |

So the two members always share the speaker, and the composite carries an emotion the original
lacks. The neutral anchor of the first two follows Pappagari et al. (ICASSP 2021), where
neutral+emotional concatenations keep the emotional label; ERL then pulls such mixed inputs towards
the speaker's neutral embedding. `N'` is another neutral utterance where the speaker has one, else
another window of N.

Defaults, which the paper (abstract only) does not give: the four patterns equally likely
(`DEFAULT_PATTERN_PROBS`), as we have no evidence yet to favour one; at least 25% of the crop from
each segment (`min_segment_share`), so the join is never just a few frames at an edge; the share of
the first segment uniform in [25%, 75%]. Loudness: both segments are scaled to the geometric mean of
their clips' RMS (over active speech, see `audio_store`), so neither dominates and the overall level stays that of the speaker.

Fallbacks (counted in `CopyPaste.counts`): a pattern that the speaker cannot fill (e.g. no neutral
utterance) is redrawn among the feasible ones (`pattern_redrawn`); a speaker with one emotion only
gets a same-emotion composite (`same_emotion`, counted as `single_emotion_fallback`).
"""

from collections import Counter
from dataclasses import dataclass

import numpy as np

PATTERNS = ("neutral_emotional", "emotional_neutral", "emotional_emotional", "original_copypaste")
DEFAULT_PATTERN_PROBS = {pattern: 0.25 for pattern in PATTERNS}


@dataclass
class ParallelPair:
    """One CopyPaste pair. Waveforms are (samples,) float32; rows index the audio store."""

    first: np.ndarray
    second: np.ndarray
    pattern: str
    first_row: int
    second_rows: tuple  # (row of the composite's first segment, row of its second segment)
    second_split: int  # sample of `second` where its second segment starts


def loudness_match(first: np.ndarray, second: np.ndarray, first_rms: float, second_rms: float):
    """Scale two segments to the geometric mean of their RMS levels (RMS of each clip's active span,
    full scale 1.0: a level of the whole utterance, steadier than that of a short window)."""
    first_rms, second_rms = max(float(first_rms), 1e-5), max(float(second_rms), 1e-5)
    target = np.sqrt(first_rms * second_rms)
    return first * np.float32(target / first_rms), second * np.float32(target / second_rms)


def join_segments(store, first_row: int, second_row: int, crop_samples: int, rng: np.random.Generator,
                  min_segment_share: float = 0.25):
    """A composite of two clips: a random window of `first_row`, then one of `second_row`.

    The first window takes a share of `crop_samples` drawn uniformly from
    [min_segment_share, 1 - min_segment_share]; a clip shorter than its share gives all it has and
    the other fills up. Segments are loudness-matched first.
    Returns ((samples,) float32 with samples <= crop_samples, split sample where segment two starts).
    """
    len1, len2 = int(store.lengths[first_row]), int(store.lengths[second_row])
    share = rng.uniform(min_segment_share, 1.0 - min_segment_share)
    n1 = min(len1, int(round(share * crop_samples)))
    n2 = min(len2, crop_samples - n1)
    n1 = min(len1, crop_samples - n2)  # the second clip was short: give the room back to the first
    first, second = store.crop(first_row, n1, rng), store.crop(second_row, n2, rng)
    first, second = loudness_match(first, second, store.rms[first_row], store.rms[second_row])
    return np.concatenate([first, second]), n1


class CopyPaste:
    """Builds `ParallelPair`s from an audio store.

    Args:
        store: `AudioStore` / `LazyAudioStore` (rows, labels, RMS).
        crop_samples: length of each member, in samples (None: whole clips; composites then take
            each clip whole).
        pattern_probs: {pattern: probability} over `PATTERNS` (normalised; missing ones are 0).
        min_segment_share: least share of the composite from each segment, in [0, 0.5].
    """

    def __init__(self, store, crop_samples: int = 32000, pattern_probs=None, min_segment_share: float = 0.25):
        probs = dict(DEFAULT_PATTERN_PROBS if pattern_probs is None else pattern_probs)
        unknown = set(probs) - set(PATTERNS)
        if unknown:
            raise ValueError(f"CopyPaste: unknown pattern(s) {sorted(unknown)}; choose from {PATTERNS}")
        weights = np.asarray([float(probs.get(p, 0.0)) for p in PATTERNS])
        if (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"CopyPaste: pattern_probs={probs} need non-negative values with a positive sum")
        if not 0.0 <= min_segment_share <= 0.5:
            raise ValueError(f"CopyPaste: min_segment_share={min_segment_share} must lie in [0, 0.5]")
        self.store, self.crop_samples = store, crop_samples
        self.pattern_probs = weights / weights.sum()
        self.min_segment_share = min_segment_share
        self.counts = Counter()

    def make_pair(self, row: int, partner: int, rng: np.random.Generator) -> ParallelPair:
        """A pair for the speaker of `row`; `row` and `partner` (same speaker) fill slots first, so
        the sampler's choice of utterances is used; other utterances of the speaker fill the rest."""
        store = self.store
        speaker = int(store.speaker_ids[row])
        if int(store.speaker_ids[partner]) != speaker:
            raise ValueError(f"CopyPaste: rows {row} and {partner} belong to different speakers")
        by_emotion = store.rows_by_emotion(speaker)
        neutral = {e for e, rows in by_emotion.items() if store.is_neutral[rows[0]]}
        emotional = set(by_emotion) - neutral
        feasible = np.asarray([bool(neutral and emotional)] * 2 + [len(emotional) >= 2, len(by_emotion) >= 2])
        if not feasible.any():
            self.counts["single_emotion_fallback"] += 1
            return self._same_emotion(row, partner, rng)
        pattern = PATTERNS[rng.choice(len(PATTERNS), p=self.pattern_probs)]
        if not feasible[PATTERNS.index(pattern)]:
            self.counts["pattern_redrawn"] += 1
            weights = self.pattern_probs * feasible
            if weights.sum() == 0:  # only infeasible patterns were given a probability
                weights = feasible.astype(float)
            pattern = PATTERNS[rng.choice(len(PATTERNS), p=weights / weights.sum())]
        self.counts[pattern] += 1
        prefer = (row, partner)
        pick = lambda **kw: self._pick(by_emotion, rng, **{"prefer": prefer, **kw})  # noqa: E731
        if pattern in ("neutral_emotional", "emotional_neutral"):
            anchor = pick(emotions=neutral)
            other_neutral = pick(emotions=neutral, avoid_rows={anchor}, prefer=())
            emotive = pick(emotions=emotional)
            segments = (other_neutral, emotive) if pattern == "neutral_emotional" else (emotive, other_neutral)
        elif pattern == "emotional_emotional":
            anchor = pick(emotions=emotional)
            second = pick(emotions=emotional - {store.emotion_ids[anchor]})
            third = pick(emotions=emotional - {store.emotion_ids[anchor], store.emotion_ids[second]},
                         fallback=emotional - {store.emotion_ids[second]}, avoid_rows={anchor}, prefer=())
            segments = (second, third)
        else:
            anchor = row
            other = pick(emotions=set(by_emotion) - {store.emotion_ids[row]})
            segments = (anchor, other) if rng.random() < 0.5 else (other, anchor)
        return self._pair(pattern, anchor, segments, rng)

    def _same_emotion(self, row, partner, rng):
        """Fallback for a one-emotion speaker: `row` against [partner | another utterance]."""
        rows = np.concatenate(list(self.store.rows_by_emotion(int(self.store.speaker_ids[row])).values()))
        others = rows[(rows != row) & (rows != partner)]
        third = int(rng.choice(others)) if len(others) else partner
        return self._pair("same_emotion", row, (partner, third), rng)

    def _pair(self, pattern, anchor, segments, rng):
        first = self.store.crop(anchor, self.crop_samples, rng)
        crop = self.crop_samples or int(self.store.lengths[segments[0]] + self.store.lengths[segments[1]])
        second, split = join_segments(self.store, segments[0], segments[1], crop, rng, self.min_segment_share)
        return ParallelPair(first, second, pattern, int(anchor), tuple(int(s) for s in segments), split)

    def _pick(self, by_emotion, rng, emotions, prefer=(), avoid_rows=(), fallback=None):
        """A row whose emotion is in `emotions` (else in `fallback`): a preferred row if one fits,
        else a random one not in `avoid_rows` (else any)."""
        store = self.store
        for row in prefer:
            if store.emotion_ids[row] in emotions and row not in avoid_rows:
                return int(row)
        for allowed in (emotions, fallback):
            if not allowed:
                continue
            rows = np.concatenate([by_emotion[e] for e in sorted(allowed)])
            kept = rows[~np.isin(rows, list(avoid_rows))] if avoid_rows else rows
            if len(kept):
                return int(rng.choice(kept))
            if len(rows):
                return int(rng.choice(rows))
        raise ValueError(f"CopyPaste: no utterance with emotion ids {sorted(emotions)} for this speaker")
