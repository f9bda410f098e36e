"""The spectral half of the EISV frontends, as functions of framed audio: Kaldi-style log fbank (ECAPA),
GE2E power mel, SpeechBrain's dB fbank, and the normalised waveform of the speech backbones.
`feature_extraction_eisv.EISVFeatureExtractor` frames the audio and keeps the settings; these compute."""

import math

import torch


def speechbrain_mel_filters(num_bins: int, num_mels: int, sampling_rate: int) -> torch.Tensor:
    """(num_bins, num_mels) triangular filters of SpeechBrain's `Filterbank` (0 Hz to Nyquist).

    Computed with the same float32 operations as SpeechBrain, so the matrix is identical. Unlike
    Kaldi's or Slaney's filters, each triangle is symmetric in Hz: both slopes span the distance
    from its centre down to the previous centre.
    """
    to_mel = lambda hz: 2595 * math.log10(1 + hz / 700)  # noqa: E731
    mel = torch.linspace(to_mel(0), to_mel(sampling_rate // 2), num_mels + 2)
    hz = 700 * (10 ** (mel / 2595) - 1)
    band, centre = (hz[1:] - hz[:-1])[:-1], hz[1:-1]
    slope = (torch.linspace(0, sampling_rate // 2, num_bins).unsqueeze(0) - centre.unsqueeze(1)) / band.unsqueeze(1)
    return torch.clamp(torch.min(slope + 1.0, 1.0 - slope), min=0.0).transpose(0, 1)


def frame_features(frames, mask, feature_type: str, window, mel_filters, n_fft: int, padding_value: float = 0.0):
    """(batch, frames, win_length) framed audio and its (batch, frames) bool mask -> (batch, frames, mel)
    float32 features of `feature_type`, per-utterance mean-normalised over the real frames (not GE2E's mel),
    padded frames set to `padding_value`. `window` is (win_length,), `mel_filters` (n_fft // 2 + 1, mel)."""
    if feature_type == "kaldi_fbank":
        frames = frames - frames.mean(dim=-1, keepdim=True)
        previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
        frames = frames - 0.97 * previous
    spectrum = torch.fft.rfft(frames * window, n=n_fft)
    if feature_type == "speechbrain_fbank":  # re^2 + im^2, as SpeechBrain's spectral_magnitude
        spectrum = torch.view_as_real(spectrum).pow(2).sum(-1)  # (B, T, n_fft//2+1)
    else:
        spectrum = spectrum.abs().pow(2)
    features = spectrum @ mel_filters  # (B, T, mel)
    if feature_type == "kaldi_fbank":
        features = features.clamp_min(torch.finfo(torch.float32).eps).log()
    elif feature_type == "speechbrain_fbank":  # dB, top_db=80 over the real frames only
        features = 10 * torch.log10(features.clamp_min(1e-10))
        floor = features.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=(1, 2), keepdim=True) - 80.0
        features = torch.maximum(features, floor)
    if feature_type != "ge2e_mel":
        maskf = mask.unsqueeze(-1).float()
        mean = (features * maskf).sum(1, keepdim=True) / maskf.sum(1, keepdim=True).clamp_min(1.0)
        features = features - mean
    features = features.masked_fill(~mask.unsqueeze(-1), padding_value)
    return features


def normalized_waveforms(waveforms, num_samples, do_normalize: bool = True, padding_value: float = 0.0):
    """The `waveform` frontend: (batch, samples) float32 audio and (batch,) real sample counts -> the audio
    (zero-mean unit-variance over the real samples when `do_normalize`, as Wav2Vec2FeatureExtractor) and its
    (batch, samples) int32 mask; padded samples set to `padding_value`."""
    mask = torch.arange(waveforms.shape[1], device=waveforms.device)[None, :] < num_samples[:, None]
    if do_normalize:
        count = num_samples.clamp_min(1)[:, None].float()
        mean = (waveforms * mask).sum(-1, keepdim=True) / count
        variance = ((waveforms - mean).pow(2) * mask).sum(-1, keepdim=True) / count
        waveforms = (waveforms - mean) / torch.sqrt(variance + 1e-7)
    return waveforms.masked_fill(~mask, padding_value), mask.int()
