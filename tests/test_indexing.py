import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile

from data_collators import AudioStore, BadRowError, LazyAudioStore, index_dataset, load_source
from data_collators.audio_store import active_span


def test_ids_follow_sorted_names_and_durations_are_measured(synthetic_corpus):
    ds, report = index_dataset(load_source(synthetic_corpus))
    assert report.speakers == ["spk0", "spk1", "spk2", "spk3"] and report.emotions == ["angry", "neutral", "sad"]
    assert ds.features["speaker_id"].names == report.speakers
    for row in ds:
        assert row["speaker_id"] == report.speakers.index(row["speaker"])
        assert row["emotion_id"] == report.emotions.index(row["emotion"])
        assert row["is_neutral"] == (row["emotion"] == "neutral")
        assert row["num_samples"] == soundfile.info(row["path"]).frames
        assert row["duration_s"] == pytest.approx(row["num_samples"] / 16000)
    assert ds["row_index"] == list(range(len(ds)))
    again, _ = index_dataset(load_source(synthetic_corpus))
    assert again.to_dict() == ds.to_dict()  # deterministic


def test_neutral_labels_are_configurable(synthetic_corpus):
    ds, _ = index_dataset(load_source(synthetic_corpus), neutral_emotions=("Sad", "calm"))
    assert {e for e, n in zip(ds["emotion"], ds["is_neutral"]) if n} == {"sad"}


def test_stereo_48k_is_measured_at_16k_mono(tmp_path):
    t = np.arange(48000) / 48000
    stereo = np.stack([np.sin(2 * np.pi * 300 * t), np.sin(2 * np.pi * 500 * t)], axis=1) * 0.3
    soundfile.write(tmp_path / "a.flac", stereo, 48000)
    (tmp_path / "metadata.csv").write_text("file_name,speaker,emotion\na.flac,s,happy\n")
    ds, _ = index_dataset(load_source(tmp_path))
    assert ds[0]["num_samples"] == 16000 and ds[0]["source_sampling_rate"] == 48000
    assert ds[0]["source_channels"] == 2


def _corpus_with_bad_rows(root):
    """Two good clips and six bad rows of every kind; returns the bad file names."""
    rate = 16000
    good = (0.1 * np.sin(np.arange(rate) / 5)).astype(np.float32)
    soundfile.write(root / "good0.wav", good, rate)
    soundfile.write(root / "good1.wav", good, rate)
    (root / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    (root / "empty.wav").write_bytes(b"")
    soundfile.write(root / "noframes.wav", np.zeros(0, np.float32), rate)
    nan = good.copy()
    nan[100] = np.nan
    soundfile.write(root / "nan.wav", nan, rate, subtype="FLOAT")
    (root / "metadata.csv").write_text(
        "file_name,speaker,emotion\n"
        "good0.wav,s1,neutral\ncorrupt.wav,s1,angry\nempty.wav,s1,angry\nnoframes.wav,s1,sad\n"
        "nan.wav,s2,sad\ngood1.wav,,sad\ngood1.wav,s2,\ngood1.wav,s2,sad\n")


def test_bad_rows_raise_an_error_naming_each_line_and_file(tmp_path):
    _corpus_with_bad_rows(tmp_path)
    with pytest.raises(BadRowError) as caught:
        index_dataset(load_source(tmp_path))
    message = str(caught.value)
    table = tmp_path / "metadata.csv"
    assert "6 of 8 rows" in message and "skip_bad_rows=True" in message
    # Lines as the user's file numbers them: the header is line 1.
    for line, what in [(3, "corrupt.wav"), (4, "empty.wav"), (5, "noframes.wav"), (6, "nan.wav")]:
        assert f"{table}, line {line} ({tmp_path / what})" in message
    assert "cannot decode" in message and "NaN" in message and "no samples" in message
    assert f"{table}, line 7" in message and "missing speaker" in message
    assert f"{table}, line 8" in message and "missing emotion" in message


def test_a_cli_names_its_own_flag_and_repeats_are_counted(tmp_path, caplog):
    _corpus_with_bad_rows(tmp_path)
    with pytest.raises(BadRowError, match="pass --skip_bad_rows to drop"):
        index_dataset(load_source(tmp_path), skip_hint="--skip_bad_rows")
    (tmp_path / "metadata.csv").write_text("file_name,speaker,emotion\ngood0.wav,s1,neutral\ngood0.wav,s1,neutral\n"
                                           "good0.wav,s2,neutral\ngood1.wav,s2,sad\n")
    with caplog.at_level("WARNING"):
        indexed, _ = index_dataset(load_source(tmp_path))
    assert len(indexed) == 4  # kept, but said
    assert "1 repeated row(s)" in caplog.text and "1 file(s) are listed under more than one speaker" in caplog.text


def test_skip_bad_rows_drops_counts_and_logs_without_touching_sources(tmp_path, caplog):
    _corpus_with_bad_rows(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    log = tmp_path / "logs" / "bad_rows.csv"
    with caplog.at_level(logging.WARNING):
        ds, report = index_dataset(load_source(tmp_path), skip_bad_rows=True, bad_rows_log=log)
    assert len(ds) == 2 and report.num_bad_rows == 6 and report.num_source_rows == 8
    assert [r for r, _, _ in report.bad_rows] == [1, 2, 3, 4, 5, 6]
    assert "dropped 6 of 8" in caplog.text and "corrupt.wav" in caplog.text
    lines = log.read_text().splitlines()
    assert lines[0] == "row,path,reason" and len(lines) == 7 and "nan.wav" in log.read_text()
    assert ds["speaker"] == ["s1", "s2"] and ds["row_index"] == [0, 1]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != "logs"} == before


def test_digital_silence_and_too_short_are_bad(tmp_path):
    soundfile.write(tmp_path / "zero.wav", np.zeros(16000, np.float32), 16000)
    soundfile.write(tmp_path / "short.wav", np.full(800, 0.1, np.float32), 16000)
    (tmp_path / "metadata.csv").write_text("file_name,speaker,emotion\nzero.wav,a,sad\nshort.wav,a,sad\n")
    with pytest.raises(BadRowError, match=r"(?s)line 2.*digital silence.*line 3.*too short \(800 samples < 1600"):
        index_dataset(load_source(tmp_path))


def test_audio_store_holds_int16_and_returns_the_clips(synthetic_corpus):
    ds, _ = index_dataset(load_source(synthetic_corpus))
    store = AudioStore(ds)
    assert store.samples.dtype == np.int16 and store.nbytes == 2 * sum(ds["num_samples"]) + 8 * (len(ds) + 1)
    for row in (0, 7, len(ds) - 1):
        original, _ = soundfile.read(ds[row]["path"], dtype="float32")
        np.testing.assert_allclose(store.waveform(row), original, atol=1.0 / 32767)
        assert store.rms[row] == pytest.approx(np.sqrt(np.mean(original.astype(np.float64) ** 2)), rel=0.02)
    crop = store.crop(0, 8000, np.random.default_rng(0))
    assert crop.shape == (8000,) and crop.dtype == np.float32
    lazy = LazyAudioStore(ds)
    np.testing.assert_allclose(lazy.waveform(3), store.waveform(3), atol=1.0 / 32767)
    with pytest.raises(MemoryError, match="LazyAudioStore"):
        AudioStore(ds, max_bytes=1000)


def test_real_subset_indexes(shared_data):
    ds = load_source(shared_data / "emodb")
    ds = ds.select(range(40))
    ds, report = index_dataset(ds)
    assert report.num_bad_rows == 0 and len(ds) == 40
    assert set(report.emotions) <= {"angry", "happy", "neutral", "sad"}
    assert all(1.0 < d < 10.0 for d in ds["duration_s"]) and set(ds["source_sampling_rate"]) == {16000}


def test_crops_stay_in_the_active_span(tmp_path):
    rate = 16000
    wave = np.zeros(3 * rate, np.float32)  # 1 s silence, 1 s tone, 1 s near-silence
    wave[rate:2 * rate] = 0.3 * np.sin(np.arange(rate) / 3)
    wave[2 * rate:] = 1e-4 * np.random.default_rng(0).standard_normal(rate)
    soundfile.write(tmp_path / "a.wav", wave, rate, subtype="FLOAT")
    (tmp_path / "metadata.csv").write_text("file_name,speaker,emotion\na.wav,s,sad\n")
    ds, _ = index_dataset(load_source(tmp_path))
    for store in (AudioStore(ds), LazyAudioStore(ds)):
        start, stop = (int(x) for x in store.active[0])
        assert abs(start - rate) <= 400 and abs(stop - 2 * rate) <= 400
        assert store.rms[0] == pytest.approx(0.3 / np.sqrt(2), rel=0.05)  # RMS of the tone, not of the silence
        rng = np.random.default_rng(0)
        assert all(np.sqrt(np.mean(store.crop(0, rate // 2, rng) ** 2)) > 0.2 for _ in range(20))
        long = [store.crop(0, 2 * rate, rng) for _ in range(20)]  # longer than the span: holds all of it
        assert all(np.sum(c ** 2) == pytest.approx(np.sum(wave[rate:2 * rate] ** 2), rel=0.01) for c in long)


def test_a_clip_the_tools_would_refuse_is_not_trained_on(tmp_path):
    rate = 16000
    blip = np.zeros(rate, dtype=np.float32)
    blip[:80] = 0.5  # 5 ms of signal in a second of silence: "too little speech" for eisv-verify too
    soundfile.write(tmp_path / "blip.wav", blip, rate)
    (tmp_path / "metadata.csv").write_text("file_name,speaker,emotion\nblip.wav,s1,neutral\n")
    with pytest.raises(BadRowError, match=r"line 2 .*too little speech \(0\.01 s of active signal < 0\.3 s\)"):
        index_dataset(load_source(tmp_path))


def test_a_prepared_store_holds_the_clips_as_the_feature_extractor_trims_them(tmp_path):
    """With the feature extractor's trim on, training crops come from the trimmed clip, as inference embeds it."""
    from modeling_eisv import EISVFeatureExtractor

    rate = 16000
    speech = soundfile.read(sorted((Path(__file__).resolve().parents[1] / "data" / "emodb-mini" / "audio")
                                   .rglob("*.flac"))[0], dtype="float32")[0]
    wave = np.concatenate([np.zeros(rate, np.float32), speech, np.zeros(rate, np.float32)])  # 1 s pauses around it
    soundfile.write(tmp_path / "a.wav", wave, rate, subtype="FLOAT")
    soundfile.write(tmp_path / "b.wav", speech, rate, subtype="FLOAT")
    (tmp_path / "metadata.csv").write_text("file_name,speaker,emotion\na.wav,s,sad\nb.wav,t,sad\n")
    ds, _ = index_dataset(load_source(tmp_path))
    extractor = EISVFeatureExtractor(feature_type="ge2e_mel", feature_size=40, trim_long_silences=True)
    store = AudioStore(ds, prepare=extractor.prepare, speed_factors=(1.1,))
    for row in range(len(ds)):
        expected = extractor.prepare(soundfile.read(ds[row]["path"], dtype="float32")[0])
        assert store.lengths[row] == expected.size < ds[row]["num_samples"] + 1
        np.testing.assert_allclose(store.waveform(row), expected, atol=1.0 / 32767)
        assert tuple(store.active[row]) == active_span(expected)[:2]  # spans and RMS of the trimmed clip
        assert store.rms[row] == pytest.approx(active_span(expected)[2], rel=1e-3)
    assert store.lengths[0] < ds[0]["num_samples"] - rate  # the long pauses are gone
    assert store.samples.size == store.offsets[-1] and store.num_speakers == AudioStore.count_speakers(ds, (1.1,)) == 4
    assert store.lengths[2] == pytest.approx(store.lengths[0] / 1.1, abs=2)  # the speed copy of the trimmed clip
    with pytest.raises(ValueError, match="a.wav: prepare returned 0 samples"):
        AudioStore(ds, prepare=lambda w: w[:0])
