import pytest

from modeling_eisv import EISVConfig


def test_defaults_follow_the_encoder():
    ecapa = EISVConfig()
    assert (ecapa.frontend, ecapa.num_mel_bins, ecapa.embedding_size, ecapa.ecapa_mfa_channels) == ("kaldi_fbank", 80, 192, 1536)
    ge2e = EISVConfig(encoder_type="ge2e_lstm")
    assert (ge2e.frontend, ge2e.num_mel_bins, ge2e.embedding_size, ge2e.ge2e_partial_step) == ("ge2e_mel", 40, 256, 77)
    assert EISVConfig(ecapa_channels=1024).ecapa_mfa_channels == 3072


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"encoder_type": "xvector"}, "encoder_type"),
        ({"frontend": "mfcc"}, "frontend"),
        ({"encoder_type": "ge2e_lstm", "frontend": "kaldi_fbank"}, "frontend"),
        ({"ecapa_channels": 100}, "ecapa_res2net_scale"),
        ({"ecapa_kernel_sizes": [5, 3, 3]}, "ecapa_kernel_sizes"),
        ({"ecapa_kernel_sizes": [4, 3, 3, 3]}, "ecapa_kernel_sizes"),
        ({"num_speakers": 0}, "num_speakers"),
        ({"aam_margin": -0.1}, "aam_margin"),
        ({"erl_weight": -1.0}, "erl_weight"),
        ({"encoder_type": "ge2e_lstm", "ge2e_min_coverage": 0.0}, "ge2e_min_coverage"),
        ({"encoder_type": "ge2e_lstm", "ge2e_partial_rate": 0.1}, "ge2e_partial_rate"),
    ],
)
def test_impossible_combinations_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"EISVConfig\.{field}="):
        EISVConfig(**kwargs)


def test_round_trip_keeps_every_field(tmp_path):
    config = EISVConfig(encoder_type="ge2e_lstm", num_speakers=83, erl_weight=0.5, verification_threshold=0.61)
    config.save_pretrained(tmp_path)
    loaded = EISVConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert "id2label" not in (tmp_path / "config.json").read_text()
