"""A saved folder loads through the Auto classes, in this process and in one that never saw the package."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import torch
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForAudioXVector

from modeling_eisv import EISVConfig, EISVFeatureExtractor, EISVForSpeakerVerification, EISVModel
from _tiny import tiny_config, voice_like


def test_auto_classes_are_registered(tmp_path):
    model = EISVForSpeakerVerification(tiny_config(num_speakers=3))
    model.save_pretrained(tmp_path)
    EISVFeatureExtractor().save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), EISVConfig)
    assert isinstance(AutoModel.from_pretrained(tmp_path), EISVModel)
    assert isinstance(AutoModelForAudioXVector.from_pretrained(tmp_path), EISVForSpeakerVerification)
    assert isinstance(AutoFeatureExtractor.from_pretrained(tmp_path), EISVFeatureExtractor)


def test_remote_code_gives_the_same_embeddings_without_the_package(tmp_path):
    torch.manual_seed(0)
    folder = tmp_path / "model"
    model = EISVForSpeakerVerification(tiny_config(num_speakers=3)).eval()
    model.save_pretrained(folder)
    EISVFeatureExtractor().save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_eisv.EISVModel"
    assert config["auto_map"]["AutoModelForAudioXVector"] == "modeling_eisv.EISVForSpeakerVerification"
    assert {"modeling_eisv.py", "configuration_eisv.py", "feature_extraction_eisv.py", "ecapa_tdnn.py",
            "pooling.py", "model.safetensors"} <= {p.name for p in folder.iterdir()}

    wave = voice_like(2.0)
    np.save(tmp_path / "wave.npy", wave)
    extractor = EISVFeatureExtractor()
    with torch.no_grad():
        expected = model(**extractor(wave, sampling_rate=16000, return_tensors="pt")).embeddings[0].numpy()
    script = textwrap.dedent(f"""
        import sys
        sys.path = [p for p in sys.path if p not in ("", ".")]
        import numpy as np, torch
        from transformers import AutoModel, AutoFeatureExtractor
        model = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        extractor = AutoFeatureExtractor.from_pretrained({str(folder)!r}, trust_remote_code=True)
        assert "modeling_eisv" not in sys.modules, "the installed package was imported"
        wave = np.load({str(tmp_path / 'wave.npy')!r})
        with torch.no_grad():
            emb = model(**extractor(wave, sampling_rate=16000, return_tensors="pt")).embeddings[0].numpy()
        np.save({str(tmp_path / 'remote.npy')!r}, emb)
    """)
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HF_HOME": str(tmp_path / "hf"),
           "PYTHONNOUSERSITE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"),
           # the same intra-op threads as this process, so both sum in the same order (OMP_NUM_THREADS=1 runs)
           "OMP_NUM_THREADS": str(torch.get_num_threads())}
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, check=True, timeout=300)
    assert np.abs(np.load(tmp_path / "remote.npy") - expected).max() <= 1e-6
