"""Tiny configs and signals shared by the model tests."""

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile
from transformers import AutoConfig

from modeling_eisv import EISVConfig

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
