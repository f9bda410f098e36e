"""The `speaker-verification` transformers pipeline: two recordings -> cosine score + decision.

    >>> import modeling_eisv  # registers the task
    >>> from transformers import pipeline
    >>> verify = pipeline("speaker-verification", model="path/to/eisv-model")
    >>> verify("a.wav", "b.wav")
    {'score': 0.71, 'same_speaker': True, 'threshold': 0.42}

Each input is a path, a (samples,) array at the model's rate (16 kHz), or a dict
`{"array": ..., "sampling_rate": ...}` (resampled when needed, as `datasets` Audio gives).
The decision: with the call's `threshold=`, `score >= threshold`; else, for a calibrated model
(`config.calibration_scale`, cosine scores), `llr >= log((1 - p_target) / p_target)` with
`llr = calibration_scale * score + calibration_offset` and `p_target=` defaulting to 0.5 (equal
priors and costs), the result then also holding `"llr"` and `"p_target"`; else
`config.verification_threshold` (older folders); `same_speaker` is `None` when none is set. Each input is embedded whole (no
windowing; `eisv-embed` windows files of any length).

An input with less than `min_speech_s` seconds of active signal (default 0.3 s; the rule of
`modeling_eisv.speech_activity`, the same as the eisv tools') raises `ValueError` naming it:
digital silence or a 10 ms clip would otherwise get a confident score. `min_speech_s=0` allows it.

`pipeline("speaker-verification", model=..., backend="onnxruntime")` runs the model with ONNX
Runtime on the CPU (the graph cached per model identity by `eisv_evaluation.onnx_backend`, exported on
the first use); it needs the eisv package with its `onnx` extra, not only the remote code.
"""

import numpy as np
import torch
from transformers import Pipeline

from .audio_io import load_audio, resample, to_mono
from .calibration import DEFAULT_P_TARGET, bayes_threshold
from .speech_activity import MIN_SPEECH_S, check_speech


def _load_input(item, sampling_rate: int) -> np.ndarray:
    """Path / array / {"array", "sampling_rate"} dict -> (samples,) float32 mono at `sampling_rate`
    (`audio_io`'s decode, channel rule and resampler)."""
    if isinstance(item, (str,)) or hasattr(item, "__fspath__"):
        return load_audio(item, sampling_rate)
    rate = sampling_rate
    if isinstance(item, dict):
        if "array" not in item or "sampling_rate" not in item:
            raise ValueError(f"an audio dict needs 'array' and 'sampling_rate' keys; got {sorted(item)}")
        array, rate = item["array"], int(item["sampling_rate"])
    else:
        array = item
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = to_mono(np.asarray(array, dtype=np.float32))
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"audio must be a non-empty 1-D waveform; got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("audio contains NaN or Inf samples")
    return resample(array, rate, sampling_rate)


class SpeakerVerificationPipeline(Pipeline):
    """`pipe(a, b, threshold=None, min_speech_s=0.3)` -> `{"score": float, "same_speaker": bool | None,
    "threshold": float | None}`.

    A list of `(a, b)` pairs gives a list of such dicts.
    """

    _load_feature_extractor = True
    _load_tokenizer = False
    _load_processor = False
    _load_image_processor = False

    def __init__(self, *args, backend="torch", onnx_threads=None, **kwargs):
        super().__init__(*args, **kwargs)
        if backend not in ("torch", "onnxruntime"):
            raise ValueError(f"backend={backend!r}: choose 'torch' or 'onnxruntime'")
        self.backend, self.onnx_model = backend, None
        if backend == "onnxruntime":
            if self.device.type != "cpu":
                raise ValueError(f"backend='onnxruntime' runs on the CPU; this pipeline is on {self.device}")
            try:
                from eisv_evaluation.onnx_backend import onnx_model_for
            except ImportError as error:  # the remote code alone has no exporter
                raise ImportError(f"backend='onnxruntime' needs the eisv package (pip install 'eisv[onnx]'): "
                                  f"{error}") from None
            self.onnx_model, _ = onnx_model_for(self.model, self.feature_extractor,
                                                getattr(self.model, "name_or_path", None), onnx_threads)

    def __call__(self, audio_a, audio_b=None, **kwargs):
        if audio_b is not None:
            return super().__call__((audio_a, audio_b), **kwargs)
        if isinstance(audio_a, list):
            return super().__call__([tuple(pair) for pair in audio_a], **kwargs)
        if isinstance(audio_a, tuple) and len(audio_a) == 2:
            return super().__call__(audio_a, **kwargs)
        raise ValueError("speaker-verification needs two recordings: pipe(a, b) or pipe([(a, b), ...])")

    def _sanitize_parameters(self, threshold=None, min_speech_s=None, p_target=None, **kwargs):
        preprocess = {} if min_speech_s is None else {"min_speech_s": float(min_speech_s)}
        post = {"threshold": threshold}
        if p_target is not None:
            post["p_target"] = float(p_target)
        return preprocess, {}, post

    def preprocess(self, pair, min_speech_s=MIN_SPEECH_S):
        rate = self.feature_extractor.sampling_rate
        waveforms = []
        for which, item in zip("ab", pair):
            waveform = _load_input(item, rate)
            name = str(item) if isinstance(item, str) or hasattr(item, "__fspath__") else f"audio {which}"
            check_speech(waveform, rate, name, min_speech_s)
            waveforms.append(waveform)
        return self.feature_extractor(waveforms, sampling_rate=rate, return_tensors="pt")

    def _forward(self, model_inputs):
        model = self.onnx_model if self.onnx_model is not None else self.model
        return {"embeddings": model(**model_inputs).embeddings}

    def postprocess(self, model_outputs, threshold=None, p_target=DEFAULT_P_TARGET):
        embeddings = torch.nn.functional.normalize(model_outputs["embeddings"].float(), dim=-1)
        score = float((embeddings[0] * embeddings[1]).sum())
        config = self.model.config
        calibrated = (getattr(config, "calibration_scale", None) is not None
                      and getattr(config, "calibration_scores", "cosine") == "cosine")
        if threshold is None and calibrated:
            llr = config.calibration_scale * score + config.calibration_offset
            cut = bayes_threshold(p_target)
            return {"score": score, "same_speaker": bool(llr >= cut), "llr": llr, "p_target": p_target,
                    "threshold": (cut - config.calibration_offset) / config.calibration_scale}
        if threshold is None:
            threshold = getattr(self.model.config, "verification_threshold", None)
        same = None if threshold is None else bool(score >= float(threshold))
        return {"score": score, "same_speaker": same, "threshold": None if threshold is None else float(threshold)}
