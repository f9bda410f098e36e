"""modeling_eisv.audio_io: one decode, one channel rule, one resampler, one window rule, errors naming the file."""

import numpy as np
import pytest
import soundfile
import torch
import torchaudio

from _tiny import voice_like
from modeling_eisv import EISVFeatureExtractor
from modeling_eisv.audio_io import (AudioError, count_windows, load_audio, probe_audio, read_windows, resample,
                                    to_mono, window_starts)


def test_a_stereo_file_is_the_mean_of_its_channels_in_every_layer(tmp_path):
    left, right = voice_like(1.0, seed=1), voice_like(1.0, seed=2)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    expected = np.stack([left, right], axis=1).mean(axis=1)
    np.testing.assert_array_equal(load_audio(path), expected)
    # Arrays in either layout give the same mono signal, in audio_io and in the feature extractor.
    np.testing.assert_array_equal(to_mono(np.stack([left, right])), expected)
    np.testing.assert_array_equal(to_mono(np.stack([left, right], axis=1)), expected)
    extractor = EISVFeatureExtractor()
    from_file = extractor(load_audio(path), sampling_rate=16000)["input_features"]
    from_array = extractor(np.stack([left, right]), sampling_rate=16000)["input_features"]
    np.testing.assert_array_equal(from_file, from_array)


def test_a_batch_passed_as_one_2d_array_is_refused():
    with pytest.raises(ValueError, match="list of 1-D arrays"):
        to_mono(np.zeros((9, 16000), np.float32), "input 0")
    with pytest.raises(ValueError, match=r"clip has shape \(2, 2, 10\)"):
        to_mono(np.zeros((2, 2, 10), np.float32), "clip")


def test_other_rates_are_resampled_with_torchaudio(tmp_path):
    audio = voice_like(1.0, rate=8000)
    path = tmp_path / "8k.flac"
    soundfile.write(path, audio, 8000, subtype="PCM_24")
    decoded = soundfile.read(path, dtype="float32")[0]
    expected = torchaudio.functional.resample(torch.from_numpy(decoded), 8000, 16000).numpy()
    np.testing.assert_array_equal(load_audio(path), expected)
    assert load_audio(path).shape == (16000,) and resample(decoded, 8000, 8000) is decoded


@pytest.mark.parametrize("name, content, message", [
    ("missing.wav", None, "no such audio file"),
    ("broken.wav", b"RIFF garbage", "cannot decode audio"),
])
def test_unusable_files_raise_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AudioError, match=f"{name}: {message}"):
        load_audio(path)
    with pytest.raises(AudioError, match=name):
        probe_audio(path)


def test_empty_and_non_finite_files_raise_naming_the_file(tmp_path):
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="empty.wav: audio file holds no samples"):
        load_audio(empty)
    with pytest.raises(AudioError, match="empty.wav: audio file holds no samples"):
        probe_audio(empty)
    audio = voice_like(25.0)
    audio[12 * 16000] = np.nan
    nan = tmp_path / "nan.wav"
    soundfile.write(nan, audio, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav: audio contains NaN or Inf samples"):
        load_audio(nan)
    with pytest.raises(AudioError, match=r"nan.wav: audio contains NaN or Inf samples near 5\.0 s"):
        list(read_windows(probe_audio(nan), 10.0, 5.0))


def test_windows_cover_a_long_file_and_can_be_read_from_any_window(tmp_path):
    audio = voice_like(27.0, seed=4)
    path = tmp_path / "long.wav"
    soundfile.write(path, audio, 16000, subtype="FLOAT")
    info = probe_audio(path)
    assert window_starts(27, 10, 5) == [0, 5, 10, 15, 17] and count_windows(info, 10.0, 5.0) == 5
    windows = list(read_windows(info, 10.0, 5.0))
    for (window, new_from), start in zip(windows, (0, 5, 10, 15, 17)):
        np.testing.assert_array_equal(window, audio[start * 16000:(start + 10) * 16000])
    assert [new_from for _, new_from in windows] == [0, 5 * 16000, 5 * 16000, 5 * 16000, 8 * 16000]
    later = list(read_windows(info, 10.0, 5.0, first=3, stop=5))
    assert len(later) == 2 and all(np.array_equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(later, windows[3:]))
    short = tmp_path / "short.wav"
    soundfile.write(short, audio[:16000], 16000, subtype="FLOAT")
    [(whole, new_from)] = read_windows(probe_audio(short), 10.0, 5.0)
    assert whole.size == 16000 and new_from == 0
