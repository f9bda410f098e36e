"""modeling_eisv.speech_activity: the one "too little speech" rule of the tools and the pipeline."""

import numpy as np
import pytest

from _tiny import voice_like
from modeling_eisv.speech_activity import MIN_SPEECH_S, active_seconds, check_speech


def test_active_seconds_of_voice_silence_and_blips():
    assert active_seconds(voice_like(1.0), 16000) == pytest.approx(1.0, abs=0.02)
    assert active_seconds(np.zeros(48000, np.float32), 16000) == 0.0
    assert active_seconds(np.zeros(0, np.float32), 16000) == 0.0
    assert active_seconds(np.full(1, 0.5), 16000) == pytest.approx(1 / 16000)
    assert active_seconds(voice_like(0.01), 16000) == pytest.approx(0.01, abs=1e-3)
    dither = np.random.default_rng(0).uniform(-3e-5, 3e-5, 48000)  # about -96 dBFS: silence
    assert active_seconds(dither, 16000) == 0.0


def test_a_quiet_recording_still_counts_and_pauses_do_not():
    quiet = voice_like(1.0) * 10 ** (-40 / 20)  # 40 dB down: still speech
    assert active_seconds(quiet, 16000) == pytest.approx(1.0, abs=0.02)
    gap = np.concatenate([voice_like(0.5), np.zeros(16000, np.float32), voice_like(0.5, seed=1)])
    assert active_seconds(gap, 16000) == pytest.approx(1.0, abs=0.02)


def test_count_from_skips_what_an_earlier_window_counted():
    wave = np.concatenate([voice_like(1.0), voice_like(1.0, seed=1)])
    assert active_seconds(wave, 16000, count_from=16000) == pytest.approx(1.0, abs=0.02)


def test_check_speech_names_the_input_and_can_be_switched_off():
    with pytest.raises(ValueError, match=r"clip.wav: too little speech to embed \(0.00 s .* at least 0.3 s"):
        check_speech(np.zeros(16000, np.float32), 16000, "clip.wav")
    assert check_speech(np.zeros(16000, np.float32), 16000, "clip.wav", min_speech_s=0) == 0.0
    assert check_speech(voice_like(MIN_SPEECH_S + 0.05), 16000, "ok") >= MIN_SPEECH_S
