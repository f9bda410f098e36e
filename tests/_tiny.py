"""Tiny configs and signals shared by the model tests."""

import csv
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from transformers import AutoConfig

from modeling_eisv import EISVConfig, EISVFeatureExtractor, EISVModel

REPO = Path(__file__).resolve().parents[1]

REPO = Path(__file__).resolve().parents[1]
CORPORA = [REPO / "data" / "emodb-mini", REPO.parent / "shared" / "data" / "emodb"]  # shipped first
# A transformers speech backbone of hidden size 32 with 2 layers; its 2-layer CNN keeps the usual 320-sample
# (20 ms) frame step, so sequence lengths are those of the real models.
TINY_BACKBONE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     conv_dim=(16, 16), conv_kernel=(10, 64), conv_stride=(5, 64), num_conv_pos_embeddings=16,
                     num_conv_pos_embedding_groups=4, layerdrop=0.0)
TINY_XVECTOR = dict(tdnn_dim=(32, 32, 48), tdnn_kernel=(5, 3, 1), tdnn_dilation=(1, 2, 1), xvector_output_dim=24)

TINY_ECAPA = dict(ecapa_channels=32, ecapa_mfa_channels=96, ecapa_attention_channels=16, ecapa_se_channels=16,
                  embedding_size=32)
TINY_GE2E = dict(encoder_type="ge2e_lstm", ge2e_hidden_size=24, ge2e_num_layers=2, embedding_size=16)


def tiny_config(encoder_type="ecapa_tdnn", **kwargs):
    base = dict(TINY_ECAPA if encoder_type == "ecapa_tdnn" else TINY_GE2E)
    base.update(kwargs)
    return EISVConfig(**base)


def tiny_backbone_config(model_type="wavlm", **kwargs):
    """A tiny random-weight backbone's transformers config (`TINY_BACKBONE`, `kwargs` on top)."""
    return AutoConfig.for_model(model_type, **{**TINY_BACKBONE, **kwargs})


def real_clips(count=20):
    """`count` real clips (float32 arrays) spread over the speakers and emotions of the first corpus present."""
    for corpus in CORPORA:
        if (corpus / "metadata.csv").is_file():
            with open(corpus / "metadata.csv") as handle:
                rows = list(csv.DictReader(handle))
            picked = rows[:: max(1, len(rows) // count)][:count]
            return [soundfile.read(corpus / row["file_name"], dtype="float32")[0] for row in picked]
    pytest.skip(f"no real speech: neither {CORPORA[0]} (ships in the repo) nor {CORPORA[1]} is present")


def voice_like(seconds, seed=0, rate=16000):
    """(samples,) float32: a harmonic tone with a wobbling pitch plus noise, not silence."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = rng.uniform(100, 250) * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t) ** 2)
    return (0.2 * wave + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def eisv_embeddings(folder: Path, waves) -> np.ndarray:
    """A model folder on all clips as one padded batch, through this package: (clips, embedding_size)."""
    model = EISVModel.from_pretrained(folder).eval()
    extractor = EISVFeatureExtractor.from_pretrained(folder)
    with torch.no_grad():
        return model(**extractor(waves, sampling_rate=16000, return_tensors="pt")).embeddings.numpy()


def remote_code_embedding(folder: Path, wave: np.ndarray, work: Path) -> np.ndarray:
    """`folder`'s embedding of `wave` through AutoModel/AutoFeatureExtractor(trust_remote_code=True), in a
    process that cannot import this repository (only what pip installed), offline, with this process's
    thread count (the same float sums)."""
    np.save(work / "wave.npy", wave)
    script = textwrap.dedent(f"""
        import sys
        sys.path = [p for p in sys.path if p not in ("", ".", {str(REPO)!r})]
        import numpy as np, torch
        from transformers import AutoFeatureExtractor, AutoModel
        model = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        extractor = AutoFeatureExtractor.from_pretrained({str(folder)!r}, trust_remote_code=True)
        assert "modeling_eisv" not in sys.modules, "the installed package was imported"
        with torch.no_grad():
            features = extractor(np.load({str(work / 'wave.npy')!r}), sampling_rate=16000, return_tensors="pt")
            np.save({str(work / 'remote.npy')!r}, model(**features).embeddings[0].numpy())
    """)
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1", "HF_HOME": str(work / "hf"),
           "HF_MODULES_CACHE": str(work / "modules"), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    result = subprocess.run([sys.executable, "-c", script], cwd=work, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return np.load(work / "remote.npy")
