"""pipeline("speaker-verification"): paths, arrays, {array, sampling_rate} dicts, thresholds, errors."""

import numpy as np
import pytest
import soundfile
import torch
import torchaudio
from transformers import pipeline

import modeling_eisv  # noqa: F401  (registers the task)
from _tools import save_tiny_model, some_clips
from eisv_evaluation.loading import load_model
from eisv_evaluation.windowed_embedding import embed_paths


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny"), threshold=0.5)


@pytest.fixture(scope="module")
def verify(model_dir):
    return pipeline("speaker-verification", model=str(model_dir), device="cpu")


def test_paths_give_the_same_score_as_eisv_tools(shared_data, model_dir, verify):
    a, b = some_clips(shared_data, 4)[1:3]
    result = verify(str(a), str(b))
    assert set(result) == {"score", "same_speaker", "threshold"}
    assert result["threshold"] == 0.5 and result["same_speaker"] == (result["score"] >= 0.5)
    model, feature_extractor = load_model(model_dir, "cpu")
    embeddings = embed_paths(model, feature_extractor, [a, b])
    assert result["score"] == pytest.approx(float(embeddings[0] @ embeddings[1]), abs=1e-5)


def test_arrays_and_resampled_dicts(shared_data, verify):
    a, b = some_clips(shared_data, 4)[1:3]
    reference = verify(str(a), str(b))["score"]
    array, rate = soundfile.read(a, dtype="float32")
    assert verify(array, str(b))["score"] == pytest.approx(reference, abs=1e-5)
    upsampled = torchaudio.functional.resample(torch.from_numpy(array), rate, 48000).numpy()
    assert verify({"array": upsampled, "sampling_rate": 48000}, str(b))["score"] == pytest.approx(reference, abs=0.02)


def test_threshold_override_none_and_batches(shared_data, model_dir, tmp_path, verify):
    a, b = some_clips(shared_data, 4)[1:3]
    assert verify(str(a), str(a), threshold=0.999)["same_speaker"] is True
    assert verify(str(a), str(b), threshold=1.5)["same_speaker"] is False
    assert len(verify([(str(a), str(b)), (str(b), str(a))])) == 2
    uncalibrated = pipeline("speaker-verification", model=str(save_tiny_model(tmp_path / "u")), device="cpu")
    result = uncalibrated(str(a), str(b))
    assert result["same_speaker"] is None and result["threshold"] is None


def test_bad_inputs(tmp_path, verify):
    with pytest.raises(ValueError, match="nope.wav"):
        verify(str(tmp_path / "nope.wav"), np.zeros(16000, np.float32))
    with pytest.raises(ValueError, match="sampling_rate"):
        verify({"array": np.zeros(16000)}, np.zeros(16000, np.float32))
    with pytest.raises(ValueError, match="two recordings"):
        verify(np.zeros(16000, np.float32))


@pytest.mark.parametrize("audio", [np.zeros(32000, np.float32), np.full(160, 0.3, np.float32),
                                   np.full(1, 0.5, np.float32)], ids=["silence", "10ms", "one-sample"])
def test_too_little_speech_is_an_error_not_a_score(shared_data, verify, audio):
    a = some_clips(shared_data, 2)[0]
    with pytest.raises(ValueError, match="audio b: too little speech"):
        verify(str(a), audio)
    if audio.size == 32000:  # the documented way to allow it
        assert set(verify(str(a), audio, min_speech_s=0)) == {"score", "same_speaker", "threshold"}


def test_a_silent_file_is_named(tmp_path, verify):
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(32000, np.float32), 16000)
    with pytest.raises(ValueError, match="silent.wav: too little speech"):
        verify(str(silent), str(silent))
