import numpy as np
import pytest

from conftest import TONES
from data_collators import PATTERNS, AudioStore, CopyPaste, index_dataset, load_source

CROP = 32000


@pytest.fixture
def store(synthetic_corpus):
    ds, _ = index_dataset(load_source(synthetic_corpus))
    return AudioStore(ds)


def _rows(store, speaker, emotion=None):
    rows = np.flatnonzero(store.speaker_ids == store.speakers.index(speaker))
    if emotion is not None:
        rows = rows[store.emotion_ids[rows] == store.emotions.index(emotion)]
    return rows


def _tone_power(segment, emotion):
    """Power of `segment` at the tone frequency of `emotion` (synthetic corpus)."""
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment)))) ** 2
    freqs = np.fft.rfftfreq(len(segment), 1 / 16000)
    return spectrum[np.abs(freqs - TONES[emotion][0]) < 30].sum()


def _dominant(segment):
    return max(TONES, key=lambda e: _tone_power(segment, e))


def test_members_share_the_speaker_and_differ_in_emotion(store):
    builder = CopyPaste(store, CROP)
    rng = np.random.default_rng(0)
    for speaker in ("spk0", "spk1", "spk2"):
        rows = _rows(store, speaker)
        for _ in range(40):
            u, v = rng.choice(rows, 2, replace=False)
            pair = builder.make_pair(u, v, rng)
            members = {pair.first_row, *pair.second_rows}
            assert {int(store.speaker_ids[r]) for r in members} == {int(store.speaker_ids[u])}
            first_emotion = store.emotion_ids[pair.first_row]
            second_emotions = set(store.emotion_ids[list(pair.second_rows)].tolist())
            assert second_emotions - {first_emotion}, pair.pattern  # the composite brings another emotion
            assert pair.first.shape == (min(CROP, store.lengths[pair.first_row]),)  # shorter clips whole
            assert pair.second.shape == (CROP,)  # two clips of >= 1.5 s always fill the crop
    assert builder.counts["pattern_redrawn"] > 0  # spk2 has no neutral: neutral patterns redrawn
    assert sum(builder.counts[p] for p in PATTERNS) == 120


def test_every_composite_holds_both_segments_at_least_a_quarter(store):
    builder = CopyPaste(store, CROP, pattern_probs={"emotional_neutral": 1.0})
    rng = np.random.default_rng(1)
    rows = _rows(store, "spk0")
    for _ in range(30):
        pair = builder.make_pair(*rng.choice(rows, 2, replace=False), rng)
        assert 0.25 * CROP - 1 <= pair.second_split <= 0.75 * CROP + 1
        head, tail = pair.second[: CROP // 4], pair.second[-CROP // 4:]
        first_emotion, second_emotion = (store.emotions[store.emotion_ids[r]] for r in pair.second_rows)
        assert second_emotion == "neutral" and first_emotion != "neutral"  # emotional, then neutral
        assert _dominant(head) == first_emotion and _dominant(tail) == "neutral"
        assert _dominant(pair.first) == "neutral"


def test_segments_are_loudness_matched(store):
    builder = CopyPaste(store, CROP, pattern_probs={"neutral_emotional": 1.0})
    rng = np.random.default_rng(2)
    rows = _rows(store, "spk1")
    ratios = []
    for _ in range(20):
        pair = builder.make_pair(*rng.choice(rows, 2, replace=False), rng)
        a, b = pair.second[: pair.second_split], pair.second[pair.second_split:]
        ratios.append(np.sqrt(np.mean(a**2) / np.mean(b**2)))
    # raw clips differ 8x in amplitude (neutral 0.05 vs angry 0.4); matched within the envelope wobble
    assert 0.7 < np.median(ratios) < 1.4


def test_single_emotion_speaker_falls_back_and_is_counted(store):
    builder = CopyPaste(store, CROP)
    rng = np.random.default_rng(3)
    u, v = _rows(store, "spk3")[:2]
    pair = builder.make_pair(u, v, rng)
    assert pair.pattern == "same_emotion" and builder.counts["single_emotion_fallback"] == 1
    assert pair.first_row == u and pair.second_rows[0] == v and 0.25 * CROP - 1 <= pair.second_split


def test_patterns_follow_their_probabilities(store):
    probs = {"neutral_emotional": 0.7, "original_copypaste": 0.3}
    builder = CopyPaste(store, CROP, pattern_probs=probs)
    rng = np.random.default_rng(4)
    rows = _rows(store, "spk0")
    for _ in range(400):
        builder.make_pair(*rng.choice(rows, 2, replace=False), rng)
    assert set(builder.counts) == set(probs)
    assert builder.counts["neutral_emotional"] / 400 == pytest.approx(0.7, abs=0.07)


def test_original_copypaste_contains_the_original(store):
    builder = CopyPaste(store, CROP, pattern_probs={"original_copypaste": 1.0})
    rng = np.random.default_rng(5)
    u, v = _rows(store, "spk0", "angry")[0], _rows(store, "spk0", "sad")[0]
    pair = builder.make_pair(u, v, rng)
    assert pair.first_row == u and set(pair.second_rows) == {u, v}


def test_same_seed_same_pair_and_bad_knobs(store):
    rows = _rows(store, "spk0")
    one = CopyPaste(store, CROP).make_pair(rows[0], rows[4], np.random.default_rng(9))
    two = CopyPaste(store, CROP).make_pair(rows[0], rows[4], np.random.default_rng(9))
    np.testing.assert_array_equal(one.second, two.second)
    np.testing.assert_array_equal(one.first, two.first)
    with pytest.raises(ValueError, match="unknown pattern"):
        CopyPaste(store, CROP, pattern_probs={"neutral+emotional": 1.0})
    with pytest.raises(ValueError, match="different speakers"):
        CopyPaste(store, CROP).make_pair(rows[0], _rows(store, "spk1")[0], np.random.default_rng(0))


def test_real_speech_pairs(shared_data):
    ds = load_source(shared_data / "emodb")
    ds = ds.filter(lambda s: s in ("emodb_03", "emodb_08"), input_columns="speaker")
    ds, _ = index_dataset(ds)
    store = AudioStore(ds)
    builder = CopyPaste(store, CROP)
    rng = np.random.default_rng(0)
    for speaker in (0, 1):
        rows = np.flatnonzero(store.speaker_ids == speaker)
        for _ in range(10):
            pair = builder.make_pair(*rng.choice(rows, 2, replace=False), rng)
            assert store.speaker_ids[[pair.first_row, *pair.second_rows]].tolist() == [speaker] * 3
            assert set(store.emotion_ids[list(pair.second_rows)]) - {store.emotion_ids[pair.first_row]}
            length = len(pair.second)
            assert min(pair.second_split, length - pair.second_split) >= 0.25 * min(length, CROP) - 1
            assert np.sqrt(np.mean(pair.second[: pair.second_split] ** 2)) > 1e-3  # real audio in both parts
            assert np.sqrt(np.mean(pair.second[pair.second_split:] ** 2)) > 1e-3
