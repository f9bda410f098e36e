"""Waveform -> frame features for EISV encoders: Kaldi-style log fbank (ECAPA), GE2E power mel,
SpeechBrain's dB fbank (ECAPA converted from SpeechBrain), or the waveform itself (speech backbones)."""

import math

import numpy as np
import torch
from transformers import BatchFeature, SequenceFeatureExtractor
from transformers.audio_utils import mel_filter_bank
from transformers.utils import logging

from .audio_io import to_mono
from .frontends import frame_features, normalized_waveforms, speechbrain_mel_filters
from .voice_activity import trim_long_silences as vad_trim

logger = logging.get_logger(__name__)
FEATURE_TYPES = ("kaldi_fbank", "ge2e_mel", "speechbrain_fbank", "waveform")
KALDI_WINDOWS = ("povey", "hamming")


class EISVFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Turns 16 kHz speech into `input_features` (batch, frames, mel bins) and a frame-level
    `attention_mask` (batch, frames), 1 for real frames and 0 for padding.

    Four frontends, all with a 10 ms frame step:

    - `"kaldi_fbank"` (ECAPA-TDNN): 25 ms frames taken inside the signal (Kaldi's `snip_edges`, so
      `1 + (samples - 400) // 160` frames at 16 kHz), DC removal, pre-emphasis 0.97, Povey window,
      512-point FFT, Kaldi mel filters from 20 Hz to Nyquist, natural log, then the utterance mean
      is subtracted over real frames only. No dither: features are deterministic. With
      `window_type="hamming"` and `waveform_scale=32768` this is what WeSpeaker and pyannote.audio's
      WeSpeaker ResNets compute (`torchaudio.compliance.kaldi.fbank(waveform * (1 << 15),
      window_type="hamming", dither=0)` minus the utterance mean).
    - `"ge2e_mel"` (GE2E LSTM): what `resemblyzer` computes with librosa: centred 25 ms Hann frames
      (`1 + samples // 160` frames), 400-point FFT, Slaney mel filters, power, no log. Quiet
      audio is first raised to -30 dBFS (`min_level_dbfs`), as resemblyzer's `preprocess_wav` does;
      its voice-activity trimming of long silences is applied with `trim_long_silences=True`.
    - `"speechbrain_fbank"` (ECAPA-TDNN converted from SpeechBrain): SpeechBrain's `Fbank()` then
      `InputNormalization(norm_type="sentence", std_norm=False)`, as `spkrec-ecapa-voxceleb` uses
      them: centred 25 ms periodic Hamming frames zero-padded at the ends (`1 + samples // 160`
      frames), 400-point FFT, power, SpeechBrain's triangular mel filters from 0 Hz to Nyquist,
      `10 * log10(max(x, 1e-10))` floored at 80 dB below the utterance's maximum (over its real
      frames and all bands), then the utterance mean is subtracted over real frames. No pre-emphasis.
    - `"waveform"` (transformers speech backbones, `ssl_backbone`): `input_features` are the samples
      themselves, (batch, samples), with an `attention_mask` over samples; with `do_normalize` each
      utterance is scaled to zero mean and unit variance over its real samples, as transformers'
      `Wav2Vec2FeatureExtractor(do_normalize=True)` does (padding stays `padding_value`). Its frame
      grid (used by emotion-aware masking only) is `kaldi_fbank`'s: 25 ms frames every 10 ms.

    Input: one waveform or a list of them, each a 1-D array, list or tensor of samples at
    16 kHz. Floats are taken as they are (nominally in [-1, 1]); int16 / int32 / uint8 PCM is
    scaled to [-1, 1]. A 2-D array is one multi-channel recording (channels on the axis of at most
    8 entries, either `(channels, samples)` as torchaudio loads or `(samples, channels)` as
    soundfile loads) and is averaged to mono (`modeling_eisv.audio_io.to_mono`, the package's one
    channel rule). Batches are passed as lists, never as 2-D arrays.

    Args:
        feature_type (`str`, defaults to `"kaldi_fbank"`): `"kaldi_fbank"`, `"ge2e_mel"` or
            `"speechbrain_fbank"`.
        feature_size (`int`, *optional*): mel bins; 40 for GE2E and 80 for the others when not given.
        sampling_rate (`int`, defaults to 16000): the only rate accepted, in Hz.
        padding_value (`float`, defaults to 0.0): value of padded feature frames.
        min_level_dbfs (`float`, *optional*): utterances quieter than this RMS level (dB relative
            to full scale) are amplified to it; louder ones are left alone. Defaults to -30 for
            `ge2e_mel` (whose power features depend on level) and to None (off) for the fbank
            frontends (whose mean normalisation removes level).
        trim_long_silences (`bool`, defaults to False): before features, remove pauses longer than
            ~180 ms with WebRTC's voice-activity detector, as resemblyzer's `preprocess_wav` does
            (`modeling_eisv.voice_activity`; needs `pip install webrtcvad-wheels`). Applied to every
            waveform `__call__` gets (so the tools' windows and the pipeline's inputs too), after
            the `min_level_dbfs` gain; `extract` (batched tensors, used by the training collator)
            does not apply it. A waveform in which the detector keeps less than 0.3 s is left
            untrimmed, with a warning: never an empty clip.
        vad_aggressiveness (`int`, defaults to 3): WebRTC VAD mode, 0 (keeps most) to 3 (resemblyzer's).
        window_type (`str`, *optional*): window of the `kaldi_fbank` frames, `"povey"` (the default,
            Kaldi's) or `"hamming"` (WeSpeaker's). Only for `kaldi_fbank`.
        waveform_scale (`float`, defaults to 1.0): samples (nominally in [-1, 1]) are multiplied by
            this before the features, after the `min_level_dbfs` gain. WeSpeaker uses 32768 (16-bit
            integer range); after mean normalisation a scale only matters where the log's floor
            (float32 eps) is reached, i.e. in near-digital silence.
        do_normalize (`bool`, defaults to True): `waveform` only: zero-mean unit-variance per utterance
            (set it as the backbone's checkpoint was trained: its `preprocessor_config.json`).
    """

    model_input_names = ["input_features", "attention_mask"]

    def __init__(self, feature_type="kaldi_fbank", feature_size=None, sampling_rate=16000, padding_value=0.0,
                 min_level_dbfs="default", trim_long_silences=False, vad_aggressiveness=3, window_type=None,
                 waveform_scale=1.0, do_normalize=True, **kwargs):
        if feature_type not in FEATURE_TYPES:
            raise ValueError(f"EISVFeatureExtractor: feature_type={feature_type!r}; choose one of {FEATURE_TYPES}")
        if feature_size is None:
            feature_size = {"ge2e_mel": 40, "waveform": 1}.get(feature_type, 80)
        kwargs.setdefault("return_attention_mask", True)
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate, padding_value=padding_value, **kwargs)
        self.feature_type = feature_type
        if min_level_dbfs == "default":
            min_level_dbfs = -30.0 if feature_type == "ge2e_mel" else None
        self.min_level_dbfs = min_level_dbfs
        if vad_aggressiveness not in (0, 1, 2, 3):
            raise ValueError(f"EISVFeatureExtractor: vad_aggressiveness={vad_aggressiveness!r}; choose 0, 1, 2 or 3")
        if trim_long_silences and sampling_rate not in (8000, 16000, 32000, 48000):
            raise ValueError(f"EISVFeatureExtractor: trim_long_silences needs 8, 16, 32 or 48 kHz; got {sampling_rate}")
        if window_type is not None and feature_type != "kaldi_fbank":
            raise ValueError(f"EISVFeatureExtractor: window_type={window_type!r} is a kaldi_fbank setting; "
                             f"the {feature_type} frontend has a fixed window")
        self.window_type = window_type = window_type or ("povey" if feature_type == "kaldi_fbank" else None)
        if feature_type == "kaldi_fbank" and window_type not in KALDI_WINDOWS:
            raise ValueError(f"EISVFeatureExtractor: window_type={window_type!r}; choose one of {KALDI_WINDOWS}")
        if not (isinstance(waveform_scale, (int, float)) and math.isfinite(waveform_scale) and waveform_scale > 0):
            raise ValueError(f"EISVFeatureExtractor: waveform_scale={waveform_scale!r}; must be a finite number > 0")
        self.waveform_scale = float(waveform_scale)
        self.trim_long_silences = bool(trim_long_silences)
        self.vad_aggressiveness = int(vad_aggressiveness)
        self.do_normalize = bool(do_normalize)
        self.win_length = int(round(0.025 * sampling_rate))  # 400 samples
        self.hop_length = sampling_rate // 100  # 160 samples
        self.center = feature_type in ("ge2e_mel", "speechbrain_fbank")
        if feature_type == "kaldi_fbank":
            self.n_fft = 1 << math.ceil(math.log2(self.win_length))  # 512
            filters = mel_filter_bank(self.n_fft // 2 + 1, feature_size, 20.0, sampling_rate / 2, sampling_rate,
                                      norm=None, mel_scale="kaldi", triangularize_in_mel_space=True)
            if window_type == "povey":
                window = torch.hann_window(self.win_length, periodic=False, dtype=torch.float64).pow(0.85)
            else:
                window = torch.hamming_window(self.win_length, periodic=False, dtype=torch.float64)
        elif feature_type == "speechbrain_fbank":
            self.n_fft = self.win_length
            filters = speechbrain_mel_filters(self.n_fft // 2 + 1, feature_size, sampling_rate)
            window = torch.hamming_window(self.win_length)
        elif feature_type == "waveform":  # no spectrum: only the frame grid, for emotion-aware masking
            self.n_fft, filters, window = self.win_length, np.zeros((0, 0)), torch.ones(self.win_length)
        else:
            self.n_fft = self.win_length
            filters = mel_filter_bank(self.n_fft // 2 + 1, feature_size, 0.0, sampling_rate / 2, sampling_rate,
                                      norm="slaney", mel_scale="slaney")
            window = torch.hann_window(self.win_length, periodic=True, dtype=torch.float64)
        self._mel_filters = torch.from_numpy(np.asarray(filters, dtype=np.float32))  # (n_fft // 2 + 1, mel)
        self._window = window.float()

    def to_dict(self):
        output = super().to_dict()
        for key in ("_mel_filters", "_window", "_device_buffers", "win_length", "hop_length", "center", "n_fft"):
            output.pop(key, None)
        return output

    def __getstate__(self):  # data workers get the CPU buffers only
        state = self.__dict__.copy()
        state.pop("_device_buffers", None)
        return state

    def _buffers_on(self, device):
        """(window, mel filters) on `device`, copied once per device: a copy at every call would make the
        host wait for the device at every batch."""
        cached = self.__dict__.get("_device_buffers")
        if cached is None or cached[0] != device:
            cached = self.__dict__["_device_buffers"] = (device, self._window.to(device), self._mel_filters.to(device))
        return cached[1], cached[2]

    # -- frame grid -----------------------------------------------------------------------------

    def num_frames(self, num_samples: int) -> int:
        """Feature frames produced for a waveform of `num_samples` samples."""
        if self.center:
            return 1 + num_samples // self.hop_length
        return 0 if num_samples < self.win_length else 1 + (num_samples - self.win_length) // self.hop_length

    def num_frames_tensor(self, num_samples: torch.Tensor) -> torch.Tensor:
        """`num_frames` of each entry of a (batch,) integer tensor."""
        if self.center:
            return 1 + num_samples // self.hop_length
        return torch.where(num_samples < self.win_length, 0, 1 + (num_samples - self.win_length) // self.hop_length)

    @property
    def min_samples(self) -> int:
        """Shortest waveform that gives at least one frame, in samples."""
        return 1 if self.center else self.win_length

    def frame_waveforms(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> (batch, frames, win_length) windows on the feature frame grid.

        Frame i of the features is computed from row i here, so other frame-level quantities
        (e.g. RMS energy for emotion-aware masking) line up with the features exactly.
        """
        if self.center:
            pad = self.n_fft // 2
            waveforms = torch.nn.functional.pad(waveforms, (pad, pad))
        if waveforms.shape[-1] < self.win_length:
            waveforms = torch.nn.functional.pad(waveforms, (0, self.win_length - waveforms.shape[-1]))
        return waveforms.unfold(-1, self.win_length, self.hop_length)

    # -- validation -----------------------------------------------------------------------------

    def _to_mono_float(self, waveform, index: int) -> np.ndarray:
        """One input -> 1-D float32 array; errors name the input's position in the batch."""
        where = f"EISVFeatureExtractor: input {index}"
        if isinstance(waveform, torch.Tensor):
            waveform = waveform.detach().cpu().numpy()
        try:
            array = np.asarray(waveform)
        except (ValueError, TypeError) as error:
            raise TypeError(f"{where} is not a numeric array ({error})") from None
        if array.dtype.kind in "iu":
            if array.dtype == np.uint8:
                array = (array.astype(np.float32) - 128.0) / 128.0
            else:
                array = array.astype(np.float32) / float(np.iinfo(array.dtype).max + 1)
        elif array.dtype.kind == "f":
            array = array.astype(np.float32, copy=False)
        else:
            raise TypeError(f"{where} has non-numeric dtype {array.dtype}; pass audio samples as floats or PCM integers")
        array = to_mono(array, where)
        if array.size == 0:
            raise ValueError(f"{where} is empty (0 samples)")
        if not np.isfinite(array).all():
            bad = int(np.flatnonzero(~np.isfinite(array))[0])
            raise ValueError(f"{where} contains NaN or Inf (first at sample {bad})")
        if array.size < self.min_samples:
            raise ValueError(
                f"{where} has {array.size} samples; the {self.feature_type} frontend needs at least "
                f"{self.min_samples} ({1000 * self.min_samples / self.sampling_rate:.0f} ms)")
        return array

    def _check_sampling_rate(self, sampling_rate):
        if sampling_rate is None:
            raise ValueError(
                f"EISVFeatureExtractor needs sampling_rate=... with every call (the model expects "
                f"{self.sampling_rate} Hz audio); pass the rate of your audio so a mismatch is caught.")
        if sampling_rate != self.sampling_rate:
            raise ValueError(
                f"EISVFeatureExtractor: audio at {sampling_rate} Hz, but the model expects {self.sampling_rate} Hz. "
                f"Resample first, e.g. torchaudio.functional.resample(waveform, {sampling_rate}, {self.sampling_rate}) "
                f"or datasets' dataset.cast_column('audio', Audio(sampling_rate={self.sampling_rate})).")

    def _trim(self, array: np.ndarray, index: int) -> np.ndarray:
        """The `min_level_dbfs` gain, then the voice-activity trim (resemblyzer's order)."""
        if self.min_level_dbfs is not None:
            rms = max(float(np.sqrt(np.mean(np.square(array, dtype=np.float64)))), 1e-10)
            array = (array * max(1.0, 10 ** (self.min_level_dbfs / 20) / rms)).astype(np.float32)
        kept, trimmed = vad_trim(array, self.sampling_rate, self.vad_aggressiveness)
        if not trimmed:
            logger.warning(f"EISVFeatureExtractor: input {index} ({array.size / self.sampling_rate:.2f} s): the "
                           f"voice-activity detector found less than 0.3 s of speech; embedding it untrimmed")
        if kept.size < self.min_samples:
            return array
        return np.ascontiguousarray(kept)

    def prepare(self, waveform, index: int = 0) -> np.ndarray:
        """One input of `__call__` -> the (samples,) float32 mono array `pad_waveforms` takes:
        validated, and trimmed with `trim_long_silences`. Errors name the input as `input {index}`.

        `__call__` is `extract(*pad_waveforms([prepare(w, i) ...]))`; callers that prepare waveforms
        in worker processes and extract features on a GPU use the three steps.
        """
        array = self._to_mono_float(waveform, index)
        return self._trim(array, index) if self.trim_long_silences else array

    @staticmethod
    def pad_waveforms(arrays) -> tuple:
        """List of (samples,) float32 arrays -> (waveforms (batch, longest) float32 zero-padded,
        num_samples (batch,) int64), the inputs of `extract`."""
        num_samples = torch.tensor([array.size for array in arrays])
        waveforms = torch.zeros(len(arrays), int(num_samples.max()))
        for row, array in enumerate(arrays):
            waveforms[row, : array.size] = torch.from_numpy(array)
        return waveforms, num_samples

    # -- features -------------------------------------------------------------------------------

    def extract(self, waveforms: torch.Tensor, num_samples: torch.Tensor):
        """Batched features of already validated, zero-padded mono audio, on the waveforms' device
        (so a training loop can compute them on the GPU).

        Args:
            waveforms: (batch, samples) float32.
            num_samples: (batch,) real samples of each row.
        Returns:
            features (batch, frames, feature_size) float32, padded frames set to `padding_value`;
            attention_mask (batch, frames) int32. For the `waveform` frontend: (batch, samples) both.
        """
        device = waveforms.device
        waveforms = waveforms.float()
        if torch.is_tensor(num_samples) and num_samples.device == device:
            max_frames = None  # read from the device below
        else:  # counts on the host (a training loop's pinned batch): the frame count without a device read
            num_samples = torch.as_tensor(num_samples).long()
            max_frames = int(self.num_frames_tensor(num_samples).max())
            num_samples = num_samples.to(device, non_blocking=True)
        num_samples = num_samples.long()
        if self.min_level_dbfs is not None:
            rms = (waveforms.pow(2).sum(-1) / num_samples.clamp_min(1)).sqrt().clamp_min(1e-10)
            gain = (10 ** (self.min_level_dbfs / 20) / rms).clamp_min(1.0)
            waveforms = waveforms * gain.unsqueeze(-1)
        if self.feature_type == "waveform":
            return normalized_waveforms(waveforms, num_samples, self.do_normalize, self.padding_value)
        if self.waveform_scale != 1.0:
            waveforms = waveforms * self.waveform_scale
        frames = self.frame_waveforms(waveforms)  # (B, T, win)
        lengths = self.num_frames_tensor(num_samples)
        frames = frames[:, : int(lengths.max()) if max_frames is None else max_frames]
        mask = torch.arange(frames.shape[1], device=device)[None, :] < lengths[:, None]  # (B, T)
        window, mel_filters = self._buffers_on(device)
        features = frame_features(frames, mask, self.feature_type, window, mel_filters, self.n_fft, self.padding_value)
        return features, mask.int()

    def __call__(self, raw_speech, sampling_rate=None, return_tensors=None, return_attention_mask=None, padding=True,
                 **kwargs):
        """Features of one waveform or a list of waveforms, padded to the longest.

        Returns a `BatchFeature` with `input_features` (batch, frames, feature_size) and, unless
        `return_attention_mask=False`, `attention_mask` (batch, frames); for the `waveform` frontend
        both are (batch, samples).
        """
        self._check_sampling_rate(sampling_rate)
        if padding not in (True, "longest"):
            raise ValueError(f"EISVFeatureExtractor pads to the longest input; padding={padding!r} is not supported")
        if kwargs:
            unknown = ", ".join(sorted(kwargs))
            raise TypeError(f"EISVFeatureExtractor got unexpected arguments: {unknown}")
        is_batched = isinstance(raw_speech, (list, tuple)) and len(raw_speech) > 0 and not np.isscalar(raw_speech[0])
        items = list(raw_speech) if is_batched else [raw_speech]
        if not items:
            raise ValueError("EISVFeatureExtractor: the batch is empty")
        waveforms, num_samples = self.pad_waveforms([self.prepare(item, i) for i, item in enumerate(items)])
        features, mask = self.extract(waveforms, num_samples)
        data = {"input_features": features}
        if return_attention_mask if return_attention_mask is not None else self.return_attention_mask:
            data["attention_mask"] = mask
        if return_tensors == "pt":
            return BatchFeature(data, tensor_type="pt")
        return BatchFeature({k: v.numpy() for k, v in data.items()}, tensor_type=return_tensors)
