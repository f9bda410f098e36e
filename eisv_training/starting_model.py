"""The model a run starts from: converted, loaded or new, with a head for the run's speakers; and its precision."""

import sys
from pathlib import Path

import torch

from modeling_eisv import EISVConfig, EISVFeatureExtractor, EISVForSpeakerVerification
from modeling_eisv.convert_transformers import is_transformers_speech_model


def starting_encoder_type(model_args) -> str:
    """The encoder type the run will train (`ge2e_lstm`, `ecapa_tdnn`, ...), known before the model is built."""
    if model_args.init_from == "resemblyzer":
        return "ge2e_lstm"
    if model_args.init_from == "scratch":
        return model_args.encoder_type
    if is_transformers_speech_model(model_args.init_from):
        return "ssl_backbone"
    try:
        return EISVConfig.from_pretrained(model_args.init_from).encoder_type
    except Exception as error:
        print(f"train_eisv: --init_from {model_args.init_from}: cannot read its config ({error})", file=sys.stderr)
        raise SystemExit(1) from None


def mixed_precision(requested: str, encoder_type: str) -> str:
    """--mixed_precision auto: bf16 on a GPU, except for GE2E, which runs in float32: its LSTM is small (bf16
    buys nothing) and its fine-tunes skipped non-finite steps under bf16 (results/generalisation, fragility)."""
    if requested != "auto":
        return requested
    return "bf16" if torch.cuda.is_available() and encoder_type != "ge2e_lstm" else "no"


def build_model(model_args, num_speakers, output_dir, accelerator):
    """-> (EISVForSpeakerVerification with a fresh head for `num_speakers`, its feature extractor)."""
    overrides = dict(num_speakers=num_speakers, aam_margin=model_args.aam_margin, aam_scale=model_args.aam_scale,
                     erl_weight=model_args.erl_weight, aam_weight=model_args.aam_weight)
    source = model_args.init_from
    if source == "resemblyzer":
        from modeling_eisv.convert_resemblyzer import convert

        source = Path(output_dir) / "init-resemblyzer"
        if accelerator.is_main_process:
            convert(source)
        accelerator.wait_for_everyone()
    elif source != "scratch" and is_transformers_speech_model(source):  # WavLM, wav2vec2, ...: eisv-convert's way
        from modeling_eisv.convert_transformers import convert

        source = Path(output_dir) / "init-transformers"
        if accelerator.is_main_process:
            convert(model_args.init_from, source, overwrite=True, embedding_size=model_args.embedding_size)
        accelerator.wait_for_everyone()
    if source == "scratch":
        config = EISVConfig(encoder_type=model_args.encoder_type, ecapa_channels=model_args.ecapa_channels,
                            embedding_size=model_args.embedding_size, **overrides)
        model, extractor = EISVForSpeakerVerification(config), EISVFeatureExtractor(config.frontend)
    else:
        model = EISVForSpeakerVerification.from_pretrained(source, **overrides)
        try:
            extractor = EISVFeatureExtractor.from_pretrained(source)
        except OSError:
            extractor = EISVFeatureExtractor(model.config.frontend)
    if model_args.trim_long_silences is not None:
        extractor.trim_long_silences = bool(model_args.trim_long_silences)
    return model, extractor
