"""Tiny configs and signals shared by the model tests."""

import numpy as np

from modeling_eisv import EISVConfig

TINY_ECAPA = dict(ecapa_channels=32, ecapa_mfa_channels=96, ecapa_attention_channels=16, ecapa_se_channels=16,
                  embedding_size=32)
TINY_GE2E = dict(encoder_type="ge2e_lstm", ge2e_hidden_size=24, ge2e_num_layers=2, embedding_size=16)


def tiny_config(encoder_type="ecapa_tdnn", **kwargs):
    base = dict(TINY_ECAPA if encoder_type == "ecapa_tdnn" else TINY_GE2E)
    base.update(kwargs)
    return EISVConfig(**base)


def voice_like(seconds, seed=0, rate=16000):
    """(samples,) float32: a harmonic tone with a wobbling pitch plus noise, not silence."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = rng.uniform(100, 250) * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t) ** 2)
    return (0.2 * wave + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
