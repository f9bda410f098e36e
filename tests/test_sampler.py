import numpy as np
import pytest

from data_collators import SpeakerEmotionBatchSampler


def _labels(num_speakers=10, per_emotion=(6, 5, 4), seed=0):
    """Rows shuffled: speaker s has per_emotion[e] rows of emotion e (speaker 0 has only emotion 0)."""
    speakers, emotions = [], []
    for s in range(num_speakers):
        for e, count in enumerate(per_emotion if s else per_emotion[:1]):
            speakers += [s] * count
            emotions += [e] * count
    order = np.random.default_rng(seed).permutation(len(speakers))
    return np.asarray(speakers)[order], np.asarray(emotions)[order]


def test_batches_are_p_speakers_by_k_spread_over_emotions():
    speakers, emotions = _labels()
    sampler = SpeakerEmotionBatchSampler(speakers, emotions, speakers_per_batch=4, utterances_per_speaker=4)
    spread = []
    for batch in sampler:
        assert len(batch) == 16
        chunks = np.asarray(batch).reshape(4, 4)
        assert len({int(speakers[c[0]]) for c in chunks}) == 4  # P distinct speakers
        for chunk in chunks:
            assert len(set(speakers[chunk])) == 1  # K consecutive rows of one speaker
            if speakers[chunk[0]] != 0:
                spread.append(len(set(emotions[chunk])))
    assert np.mean(np.asarray(spread) == 3) > 0.8  # K=4 over 3 emotions: all three in most chunks


def test_pairs_of_consecutive_rows_differ_in_emotion():
    speakers, emotions = _labels()
    sampler = SpeakerEmotionBatchSampler(speakers, emotions, speakers_per_batch=5, utterances_per_speaker=2, seed=3)
    pairs = [np.asarray(b).reshape(-1, 2) for b in sampler]
    pairs = np.concatenate(pairs)
    multi = pairs[speakers[pairs[:, 0]] != 0]
    assert np.mean(emotions[multi[:, 0]] != emotions[multi[:, 1]]) > 0.9


def test_an_epoch_covers_almost_every_row_once():
    speakers, emotions = _labels()
    sampler = SpeakerEmotionBatchSampler(speakers, emotions, speakers_per_batch=4, utterances_per_speaker=2)
    rows = [r for batch in sampler for r in batch]
    assert len(rows) == len(sampler) * 8
    assert len(set(rows)) >= 0.9 * len(speakers)


def test_seeded_and_set_epoch_reshuffles():
    speakers, emotions = _labels()
    a = SpeakerEmotionBatchSampler(speakers, emotions, 4, 2, seed=7)
    b = SpeakerEmotionBatchSampler(speakers, emotions, 4, 2, seed=7)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    a.set_epoch(0)
    assert list(a) == first
    assert list(SpeakerEmotionBatchSampler(speakers, emotions, 4, 2, seed=8)) != first


def test_replicas_get_disjoint_equal_shares():
    speakers, emotions = _labels(num_speakers=12)
    full = list(SpeakerEmotionBatchSampler(speakers, emotions, 4, 2, seed=1))
    shares = [list(SpeakerEmotionBatchSampler(speakers, emotions, 4, 2, seed=1, num_replicas=3, rank=r))
              for r in range(3)]
    assert len({len(s) for s in shares}) == 1 and len(shares[0]) == len(full) // 3
    flat = [tuple(b) for s in shares for b in s]
    assert len(set(flat)) == len(flat) and set(flat) <= {tuple(b) for b in full}
    single = SpeakerEmotionBatchSampler(speakers, emotions, 4, 2)  # torch.distributed not initialised
    assert (single.num_replicas, single.rank) == (1, 0)


def test_bad_arguments_are_explained():
    speakers, emotions = _labels(num_speakers=3)
    with pytest.raises(ValueError, match="speakers_per_batch=5, but the data has 3 speakers"):
        SpeakerEmotionBatchSampler(speakers, emotions, 5, 2)
    with pytest.raises(ValueError, match="rank=2"):
        SpeakerEmotionBatchSampler(speakers, emotions, 2, 2, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="same length"):
        SpeakerEmotionBatchSampler(speakers, emotions[:-1], 2, 2)


def test_real_train_split_batches(shared_data):
    from data_collators import load_protocol_split

    ds = load_protocol_split(shared_data, "train")
    speakers = np.unique(ds["speaker"], return_inverse=True)[1]
    emotions = np.unique(ds["emotion"], return_inverse=True)[1]
    sampler = SpeakerEmotionBatchSampler(speakers, emotions, 16, 2, seed=0)
    assert len(sampler) >= 0.95 * len(ds) / 32
    pairs = np.concatenate([np.asarray(b).reshape(-1, 2) for b in sampler])
    assert (speakers[pairs[:, 0]] == speakers[pairs[:, 1]]).all()
    assert np.mean(emotions[pairs[:, 0]] != emotions[pairs[:, 1]]) > 0.95  # every train speaker has 5+ emotions
