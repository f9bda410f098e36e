import logging

import numpy as np
import pytest

from modeling_eisv import EISVFeatureExtractor
from modeling_eisv.voice_activity import trim_long_silences
from _tiny import voice_like

pytest.importorskip("webrtcvad")


def speech_with_pause(rate=16000):
    """0.8 s voice, 1.5 s digital silence, 0.8 s voice."""
    return np.concatenate([voice_like(0.8, seed=1), np.zeros(int(1.5 * rate), np.float32), voice_like(0.8, seed=2)])


def test_a_long_pause_is_removed_and_matches_resemblyzer():
    audio = pytest.importorskip("resemblyzer.audio")
    wave = speech_with_pause()
    kept, trimmed = trim_long_silences(wave, 16000)
    assert trimmed and kept.size < wave.size - 16000  # most of the 1.5 s pause is gone
    np.testing.assert_array_equal(kept, audio.trim_long_silences(wave))


def test_all_silence_is_never_an_empty_clip(caplog):
    silence = np.zeros(16000, np.float32)
    kept, trimmed = trim_long_silences(silence, 16000)
    assert not trimmed and kept is silence
    extractor = EISVFeatureExtractor(feature_type="ge2e_mel", trim_long_silences=True)
    with caplog.at_level(logging.WARNING):
        features = extractor(silence, sampling_rate=16000)["input_features"]
    assert features.shape[1] == 1 + 16000 // 160  # untrimmed, not empty
    assert "untrimmed" in caplog.text


def test_the_option_is_saved_and_changes_only_what_it_should(tmp_path):
    wave = speech_with_pause()
    plain = EISVFeatureExtractor(feature_type="ge2e_mel")
    trimming = EISVFeatureExtractor(feature_type="ge2e_mel", trim_long_silences=True, vad_aggressiveness=2)
    trimming.save_pretrained(tmp_path)
    loaded = EISVFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.trim_long_silences and loaded.vad_aggressiveness == 2
    assert not EISVFeatureExtractor.from_pretrained(tmp_path / "..", subfolder=tmp_path.name).to_dict() == plain.to_dict()
    assert loaded(wave, sampling_rate=16000)["input_features"].shape[1] < plain(wave, sampling_rate=16000)["input_features"].shape[1]


def test_bad_aggressiveness_is_refused():
    with pytest.raises(ValueError, match="vad_aggressiveness"):
        EISVFeatureExtractor(trim_long_silences=True, vad_aggressiveness=5)
