"""`eisv-convert --from transformers`: a converted `*ForXVector` checkpoint gives transformers' own embeddings on
real speech; other checkpoints keep their backbone; converted folders and a `train_eisv.py --init_from` run
from a tiny WavLM folder load through remote code without the package.

Tiny random-weight models (hidden size 32, 2 layers) are saved as transformers saves them; nothing is downloaded.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (AutoModel, AutoModelForAudioXVector, HubertModel, UniSpeechSatForXVector, Wav2Vec2FeatureExtractor,
                          Wav2Vec2ForXVector, WavLMForXVector, WavLMModel)

from _tiny import TINY_XVECTOR, eisv_embeddings, real_clips, remote_code_embedding, tiny_backbone_config
from eisv_tools.convert import main
from modeling_eisv import EISVFeatureExtractor, EISVForSpeakerVerification

REPO = Path(__file__).resolve().parents[1]
XVECTORS = {"wavlm": WavLMForXVector, "wav2vec2": Wav2Vec2ForXVector, "unispeech-sat": UniSpeechSatForXVector}


def save_transformers_model(model, folder: Path, do_normalize=True) -> Path:
    """A transformers model folder with its preprocessor_config.json, as the Hub holds one."""
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=do_normalize, return_attention_mask=True).save_pretrained(folder)
    return folder


def tiny_xvector(model_type="wavlm", seed=0, **kwargs):
    """A random `*ForXVector` with non-uniform layer weights (so the weighted sum is exercised)."""
    torch.manual_seed(seed)
    model = XVECTORS[model_type](tiny_backbone_config(model_type, **TINY_XVECTOR, **kwargs)).eval()
    with torch.no_grad():
        if model.config.use_weighted_layer_sum:
            model.layer_weights.normal_()
        for layer in model.tdnn:
            layer.kernel.bias.normal_(0, 0.1)
    return model




def transformers_embeddings(source: Path, waves) -> np.ndarray:
    """transformers' own `outputs.embeddings`, one clip at a time, with its own feature extractor."""
    model = AutoModelForAudioXVector.from_pretrained(source).eval()
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(source)
    with torch.no_grad():
        return np.concatenate([model(**extractor(w, sampling_rate=16000, return_tensors="pt")).embeddings.numpy()
                               for w in waves])


def cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def wavlm_sv(tmp_path_factory):
    """(transformers folder, converted folder) of a tiny WavLMForXVector with a GroupNorm CNN (as WavLM-base)."""
    root = tmp_path_factory.mktemp("wavlm-sv")
    source = save_transformers_model(tiny_xvector("wavlm", feat_extract_norm="group"), root / "wavlm-tiny-sv")
    assert main(["--from", "transformers", str(source), "--output", str(root / "converted")]) == 0
    return source, root / "converted"


def test_parity_with_wavlm_for_xvector_on_real_clips(wavlm_sv):
    source, converted = wavlm_sv
    waves = real_clips(10)
    ours, reference = eisv_embeddings(converted, waves), transformers_embeddings(source, waves)
    assert cosines(ours, reference).min() >= 0.9999, cosines(ours, reference)
    np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=0)


@pytest.mark.parametrize("model_type, options", [("wav2vec2", dict(feat_extract_norm="layer", do_stable_layer_norm=True)),
                                                 ("unispeech-sat", {}), ("wavlm", dict(use_weighted_layer_sum=False))])
def test_parity_with_other_xvector_models(model_type, options, tmp_path):
    source = save_transformers_model(tiny_xvector(model_type, seed=1, **options), tmp_path / "source",
                                     do_normalize=False)
    assert main(["--from", "transformers", str(source), "--output", str(tmp_path / "converted")]) == 0
    waves = real_clips(4)
    cosine = cosines(eisv_embeddings(tmp_path / "converted", waves), transformers_embeddings(source, waves))
    assert cosine.min() >= 0.9999, cosine
    assert EISVFeatureExtractor.from_pretrained(tmp_path / "converted").do_normalize is False


def test_padded_batch_equals_single_clips(wavlm_sv):
    _, converted = wavlm_sv
    waves = real_clips(10)
    single = np.concatenate([eisv_embeddings(converted, [w]) for w in waves])
    np.testing.assert_allclose(eisv_embeddings(converted, waves), single, atol=2e-5, rtol=0)


def test_a_plain_backbone_gets_a_new_attentive_head(tmp_path):
    torch.manual_seed(2)
    source = save_transformers_model(HubertModel(tiny_backbone_config("hubert")), tmp_path / "hubert")
    assert main(["--from", "transformers", str(source), "--output", str(tmp_path / "converted")]) == 0
    model = EISVForSpeakerVerification.from_pretrained(tmp_path / "converted", num_speakers=5)
    assert (model.config.ssl_head, model.config.backbone_config["model_type"]) == ("attentive", "hubert")
    expected = AutoModel.from_pretrained(source).state_dict()
    got = model.eisv.encoder.backbone.state_dict()
    assert set(got) == set(expected) and all(torch.equal(got[k], expected[k]) for k in expected)
    assert model.aam.weight.shape == (5, 192)


def test_bad_sources_are_named(tmp_path, capsys):
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    assert main(["--from", "transformers", str(tmp_path / "bert"), "--output", str(tmp_path / "out")]) == 1
    assert "model_type 'bert'" in capsys.readouterr().err
    assert main(["--from", "transformers", str(tmp_path / "nothing"), "--output", str(tmp_path / "out")]) == 1
    assert "nothing" in capsys.readouterr().err and not (tmp_path / "out").exists()




def test_converted_folder_loads_through_remote_code_without_the_package(wavlm_sv, tmp_path):
    _, converted = wavlm_sv
    wave = real_clips(2)[1]
    assert (converted / "ssl_backbone.py").is_file()
    np.testing.assert_allclose(remote_code_embedding(converted, wave, tmp_path), eisv_embeddings(converted, [wave])[0],
                               atol=1e-6, rtol=0)


def test_train_eisv_from_a_tiny_wavlm_folder_with_the_full_recipe(tmp_path):
    torch.manual_seed(3)
    source = save_transformers_model(WavLMModel(tiny_backbone_config("wavlm")), tmp_path / "wavlm-tiny")
    output = tmp_path / "run"
    command = [sys.executable, str(REPO / "train_eisv.py"), "--init_from", str(source), "--output_dir", str(output),
               "--max_steps", "5", "--crop_seconds", "1.0", "--speakers_per_batch", "3", "--utterances_per_speaker",
               "2", "--eval_max_trials", "300", "--logging_steps", "2", "--seed", "3", "--copypaste",
               "--erl_weight", "0.5", "--em_select", "energy", "--freeze_layers", "1"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "step 5/5" in result.stdout + result.stderr
    model = output / "model"
    assert EISVFeatureExtractor.from_pretrained(model).feature_type == "waveform"
    wave = real_clips(1)[0]
    np.testing.assert_allclose(remote_code_embedding(model, wave, tmp_path), eisv_embeddings(model, [wave])[0],
                               atol=1e-6, rtol=0)
