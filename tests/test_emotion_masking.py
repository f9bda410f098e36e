import numpy as np
import pytest
import torch

from data_collators import AudioStore, emotion_aware_mask, frame_rms, index_dataset, load_source
from modeling_eisv import EISVFeatureExtractor


def _bursty(seconds=2.0, seed=0):
    """(samples,) speech-like energy: quiet noise with a few loud bursts of 50-300 ms."""
    rng = np.random.default_rng(seed)
    wave = 0.01 * rng.standard_normal(int(seconds * 16000))
    for _ in range(4):
        start, length = rng.integers(0, len(wave) - 5000), rng.integers(800, 4800)
        wave[start:start + length] *= rng.uniform(10, 40)
    return wave.astype(np.float32)


@pytest.mark.parametrize("feature_type", ["kaldi_fbank", "ge2e_mel"])
def test_frame_rms_is_on_the_feature_grid(feature_type):
    fe = EISVFeatureExtractor(feature_type)
    wave = np.zeros(32000, np.float32)
    wave[16000:16160] = 1.0  # one 10 ms click at 1.0 s
    features, _ = fe.extract(torch.from_numpy(wave)[None], torch.tensor([32000]))
    energy = frame_rms(fe, torch.from_numpy(wave)[None], features.shape[1])
    assert energy.shape == (1, fe.num_frames(32000)) == features.shape[:2]
    loud = torch.nonzero(energy[0] > 0).flatten()
    frames = fe.frame_waveforms(torch.from_numpy(wave)[None])[0]
    assert all(frames[i].abs().sum() > 0 for i in loud)  # exactly the frames whose window holds the click
    assert 97 <= int(loud.float().mean()) <= 101  # around frame 100 = 1.0 s at a 10 ms hop


@pytest.mark.parametrize("select", ["energy", "random"])
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("ratio", [0.1, 0.2, 0.37])
def test_masked_share_matches_the_ratio_within_two_frames(select, contiguous, ratio):
    rng = np.random.default_rng(0)
    lengths = np.asarray([198, 150, 61, 198])
    energy = rng.random((4, 198))
    mask = emotion_aware_mask(energy, lengths, ratio, select, contiguous, block_frames=20, rng=rng)
    assert mask.dtype == torch.bool and mask.shape == (4, 198)
    for b, n in enumerate(lengths):
        assert abs(int(mask[b].sum()) - ratio * n) <= 2
        assert not mask[b, n:].any()  # padding is never masked


def test_energy_masks_loud_frames_random_does_not():
    fe = EISVFeatureExtractor("kaldi_fbank")
    waves = torch.from_numpy(np.stack([_bursty(seed=s) for s in range(24)]))
    energy = frame_rms(fe, waves, fe.num_frames(waves.shape[1]))
    lengths = torch.full((24,), energy.shape[1])
    rng = np.random.default_rng(0)
    for contiguous in (True, False):
        hidden_e = emotion_aware_mask(energy, lengths, 0.2, "energy", contiguous)
        hidden_r = emotion_aware_mask(energy, lengths, 0.2, "random", contiguous, rng=rng)
        gain_e = [(energy[b][hidden_e[b]].mean() / energy[b].mean()).item() for b in range(24)]
        gain_r = [(energy[b][hidden_r[b]].mean() / energy[b].mean()).item() for b in range(24)]
        assert min(gain_e) > 1.0 and np.mean(gain_e) > 2.0  # every row: above the utterance mean
        assert 0.6 < np.mean(gain_r) < 1.4  # random: about the utterance mean on average


def test_contiguous_masks_come_in_blocks_and_options_are_respected():
    rng = np.random.default_rng(1)
    energy = rng.random((3, 200))
    mask = emotion_aware_mask(energy, [200, 200, 200], 0.2, "random", True, block_frames=20,
                              rows=np.asarray([True, False, True]), rng=rng)
    runs = np.diff(np.concatenate([[0], mask[0].numpy().astype(int), [0]]))
    starts, stops = np.flatnonzero(runs == 1), np.flatnonzero(runs == -1)
    assert ((stops - starts) % 20 == 0).all() and (stops - starts).sum() == 40  # two 20-frame blocks (maybe adjacent)
    assert not mask[1].any()  # rows=False: untouched
    assert not emotion_aware_mask(energy, [200] * 3, 0.2, "none").any()
    one = emotion_aware_mask(energy, [200] * 3, 0.3, "random", False, rng=np.random.default_rng(5))
    two = emotion_aware_mask(energy, [200] * 3, 0.3, "random", False, rng=np.random.default_rng(5))
    assert torch.equal(one, two)


def test_bad_settings_are_explained():
    energy = np.ones((1, 10))
    with pytest.raises(ValueError, match="select='loud'"):
        emotion_aware_mask(energy, [10], 0.2, "loud")
    with pytest.raises(ValueError, match=r"ratio=1.5"):
        emotion_aware_mask(energy, [10], 1.5)
    with pytest.raises(ValueError, match="needs rng"):
        emotion_aware_mask(energy, [10], 0.2, "random")


def test_real_speech_energy_masks_select_loud_frames(shared_data):
    ds = load_source(shared_data / "ravdess")
    ds = ds.filter(lambda s: s == "ravdess_Actor_01", input_columns="speaker").select(range(0, 60, 4))
    ds, _ = index_dataset(ds)
    store = AudioStore(ds)
    fe = EISVFeatureExtractor("kaldi_fbank")
    rng = np.random.default_rng(0)
    waves = torch.from_numpy(np.stack([store.crop(r, 32000, rng) for r in range(len(store))]))
    energy = frame_rms(fe, waves, fe.num_frames(32000))
    lengths = torch.full((len(store),), energy.shape[1])
    for select, low, high in (("energy", 1.5, np.inf), ("random", 0.5, 1.5)):
        mask = emotion_aware_mask(energy, lengths, 0.2, select, True, rng=rng)
        assert (mask.sum(1) - 0.2 * lengths).abs().max() <= 2
        gains = [(energy[b][mask[b]].mean() / energy[b].mean()).item() for b in range(len(store))]
        assert low < np.mean(gains) < high, (select, gains)
        if select == "energy":
            assert min(gains) > 1.0
