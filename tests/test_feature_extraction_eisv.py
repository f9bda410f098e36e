import numpy as np
import pytest
import torch
import torchaudio

from modeling_eisv import EISVFeatureExtractor


def tone(seconds=1.0, rate=16000, freq=220.0, amplitude=0.3):
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(0).normal(scale=0.01, size=t.size)
    return (amplitude * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def test_fbank_matches_kaldi_without_dither():
    wave = tone(1.3)
    ours = EISVFeatureExtractor()(wave, sampling_rate=16000, return_tensors="pt")["input_features"][0]
    kaldi = torchaudio.compliance.kaldi.fbank(torch.from_numpy(wave)[None], num_mel_bins=80, dither=0.0,
                                               sample_frequency=16000)
    kaldi = kaldi - kaldi.mean(0)
    assert ours.shape == kaldi.shape == (1 + (wave.size - 400) // 160, 80)
    assert (ours - kaldi).abs().max() < 1e-3


def test_ge2e_mel_matches_librosa():
    librosa = pytest.importorskip("librosa")
    wave = tone(1.1)
    ours = EISVFeatureExtractor("ge2e_mel", min_level_dbfs=None)(wave, sampling_rate=16000)["input_features"][0]
    reference = librosa.feature.melspectrogram(y=wave, sr=16000, n_fft=400, hop_length=160, n_mels=40).T
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5 * reference.max())


@pytest.mark.parametrize("feature_type", ["kaldi_fbank", "ge2e_mel"])
def test_batch_padding_and_mask(feature_type):
    extractor = EISVFeatureExtractor(feature_type)
    short, long = tone(0.5), tone(1.0, freq=330)
    batch = extractor([short, long], sampling_rate=16000, return_tensors="pt")
    alone = extractor(short, sampling_rate=16000, return_tensors="pt")
    n = extractor.num_frames(short.size)
    assert batch["attention_mask"][0].sum() == n and batch["attention_mask"][1].sum() == extractor.num_frames(long.size)
    assert torch.allclose(batch["input_features"][0, :n], alone["input_features"][0], atol=1e-5)
    assert (batch["input_features"][0, n:] == 0).all()


def test_int16_and_stereo_inputs():
    extractor = EISVFeatureExtractor()
    wave = tone(0.5)
    reference = extractor(wave, sampling_rate=16000)["input_features"]
    pcm = np.round(wave * 32768).astype(np.int16)
    assert np.abs(extractor(pcm, sampling_rate=16000)["input_features"] - reference).max() < 1e-2
    stereo_channels_first = np.stack([wave, wave])  # torchaudio layout
    stereo_channels_last = stereo_channels_first.T  # soundfile layout
    for stereo in (stereo_channels_first, stereo_channels_last):
        assert np.abs(extractor(stereo, sampling_rate=16000)["input_features"] - reference).max() < 1e-5


def test_quiet_audio_is_raised_for_ge2e_only():
    quiet = tone(0.5, amplitude=0.001)
    at_minus_30_dbfs = quiet * (10 ** (-30 / 20) / np.sqrt(np.mean(quiet**2)))
    loud = at_minus_30_dbfs * 3
    ge2e, plain = EISVFeatureExtractor("ge2e_mel"), EISVFeatureExtractor("ge2e_mel", min_level_dbfs=None)
    raised = ge2e(quiet, sampling_rate=16000)["input_features"]
    reference = plain(at_minus_30_dbfs, sampling_rate=16000)["input_features"]
    np.testing.assert_allclose(raised, reference, rtol=1e-3, atol=1e-6 * reference.max())
    np.testing.assert_array_equal(ge2e(loud, sampling_rate=16000)["input_features"],
                                  plain(loud, sampling_rate=16000)["input_features"])  # never lowered
    assert EISVFeatureExtractor().min_level_dbfs is None


def test_bad_inputs_give_clear_errors():
    extractor = EISVFeatureExtractor()
    with pytest.raises(ValueError, match="expects 16000 Hz.*resample"):
        extractor(tone(), sampling_rate=8000)
    with pytest.raises(ValueError, match="sampling_rate"):
        extractor(tone())
    with pytest.raises(ValueError, match="input 1 is empty"):
        extractor([tone(), np.zeros(0, np.float32)], sampling_rate=16000)
    bad = tone()
    bad[100] = np.nan
    with pytest.raises(ValueError, match="input 0 contains NaN or Inf .*sample 100"):
        extractor(bad, sampling_rate=16000)
    with pytest.raises(TypeError, match="non-numeric"):
        extractor(np.array(["a", "b"]), sampling_rate=16000)
    with pytest.raises(ValueError, match="at least 400"):
        extractor(tone(0.01), sampling_rate=16000)
    with pytest.raises(ValueError, match="list of 1-D arrays"):
        extractor(np.zeros((16, 16000), np.float32), sampling_rate=16000)


def test_save_and_reload(tmp_path):
    extractor = EISVFeatureExtractor("ge2e_mel")
    extractor.save_pretrained(tmp_path)
    loaded = EISVFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.feature_type == "ge2e_mel" and loaded.feature_size == 40 and loaded.min_level_dbfs == -30.0
    wave = tone()
    assert np.array_equal(loaded(wave, sampling_rate=16000)["input_features"],
                          extractor(wave, sampling_rate=16000)["input_features"])


@pytest.mark.parametrize("do_normalize", [True, False])
def test_waveform_frontend_matches_wav2vec2_feature_extractor(do_normalize, tmp_path):
    from transformers import Wav2Vec2FeatureExtractor

    waves = [tone(1.3), tone(0.6, freq=330.0, amplitude=0.1)]
    reference = Wav2Vec2FeatureExtractor(do_normalize=do_normalize, return_attention_mask=True)(
        waves, sampling_rate=16000, padding=True, return_tensors="pt")
    extractor = EISVFeatureExtractor("waveform", do_normalize=do_normalize)
    ours = extractor(waves, sampling_rate=16000, return_tensors="pt")
    assert ours["input_features"].shape == (2, waves[0].size) and ours["attention_mask"].sum(1).tolist() == [20800, 9600]
    torch.testing.assert_close(ours["input_features"], reference["input_values"], atol=2e-5, rtol=0)
    assert ours["attention_mask"].tolist() == reference["attention_mask"].tolist()
    padded = torch.from_numpy(np.stack([waves[0], np.pad(waves[1], (0, waves[0].size - waves[1].size))]))
    batched, mask = extractor.extract(padded, torch.tensor([20800, 9600]))  # the training loop's path
    torch.testing.assert_close(batched, ours["input_features"])
    assert torch.equal(mask, ours["attention_mask"])
    extractor.save_pretrained(tmp_path)
    loaded = EISVFeatureExtractor.from_pretrained(tmp_path)
    assert (loaded.feature_type, loaded.feature_size, loaded.do_normalize) == ("waveform", 1, do_normalize)
    # Emotion-aware masking uses the kaldi_fbank frame grid (25 ms frames, 10 ms step).
    assert loaded.num_frames(16000) == EISVFeatureExtractor("kaldi_fbank").num_frames(16000) == 98


@pytest.mark.parametrize("feature_type", ["kaldi_fbank", "speechbrain_fbank", "ge2e_mel"])
def test_extract_gives_the_same_features_with_sample_counts_on_the_host(feature_type):
    # A training loop passes the counts as a host list/tensor beside device waveforms, to avoid a device read.
    extractor = EISVFeatureExtractor(feature_type)
    waves = torch.zeros(2, 16000)
    waves[0, :8000], waves[1] = torch.from_numpy(tone(0.5)), torch.from_numpy(tone(1.0, freq=330))
    on_device = extractor.extract(waves, torch.tensor([8000, 16000]))
    on_host = extractor.extract(waves, [8000, 16000])
    assert all(torch.equal(a, b) for a, b in zip(on_device, on_host))
    features, mask = extractor.extract(waves, [8000, 12000])  # trimmed to the longest real row, not the padding
    assert features.shape[1] == mask.shape[1] == extractor.num_frames(12000)
    assert "_device_buffers" not in extractor.to_dict()  # the per-device copies are not configuration


def test_wespeaker_fbank_hamming_window_and_waveform_scale(tmp_path):
    """window_type="hamming", waveform_scale=32768: torchaudio's kaldi.fbank of the 16-bit-scaled waveform
    minus its mean, as WeSpeaker computes it; the scale shows in near-silent frames, where the log floors."""
    wave = tone(1.3)
    wave[8000:12000] = np.random.default_rng(1).normal(scale=1e-5, size=4000)  # a near-silent quarter second
    extractor = EISVFeatureExtractor(window_type="hamming", waveform_scale=32768)
    ours = extractor(wave, sampling_rate=16000, return_tensors="pt")["input_features"][0]
    kaldi = torchaudio.compliance.kaldi.fbank(torch.from_numpy(wave)[None] * 32768, num_mel_bins=80, dither=0.0,
                                               window_type="hamming", sample_frequency=16000)
    torch.testing.assert_close(ours, kaldi - kaldi.mean(0), atol=2e-3, rtol=0)
    unscaled = EISVFeatureExtractor(window_type="hamming")(wave, sampling_rate=16000, return_tensors="pt")
    assert (unscaled["input_features"][0] - ours).abs().max() > 1.0  # floored at float32 eps without the scale
    extractor.save_pretrained(tmp_path)
    loaded = EISVFeatureExtractor.from_pretrained(tmp_path)
    assert (loaded.window_type, loaded.waveform_scale) == ("hamming", 32768.0)
    assert torch.equal(loaded(wave, sampling_rate=16000, return_tensors="pt")["input_features"][0], ours)


@pytest.mark.parametrize("kwargs, message", [
    (dict(window_type="hann"), "window_type='hann'"),
    (dict(feature_type="ge2e_mel", window_type="hamming"), "kaldi_fbank setting"),
    (dict(waveform_scale=0), "waveform_scale=0"),
    (dict(waveform_scale=float("nan")), "waveform_scale=nan"),
])
def test_bad_frontend_settings_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EISVFeatureExtractor(**kwargs)
