"""A transformers speech model (WavLM, wav2vec 2.0, HuBERT, UniSpeech-SAT) as an EISV `ssl_backbone` folder.

Two kinds of source, a folder or a Hub id (`config.json` + weights, optionally
`preprocessor_config.json`):

- a `*ForXVector` checkpoint (e.g. `microsoft/wavlm-base-plus-sv`): backbone, layer weights,
  projector, TDNN layers and embedding layer are taken over as they are (`ssl_head="xvector"`), so
  the converted model's `embeddings` are transformers' `outputs.embeddings`; its `classifier` and
  AM-softmax `objective` are left out (EISV trains its own AAM-softmax head);
- any other checkpoint of those model types (a pretrained backbone such as `microsoft/wavlm-base-plus`,
  or a `*ForCTC` / `*ForSequenceClassification` one): its backbone, with a new layer-weighted
  attentive-statistics head (`ssl_head="attentive"`, random until trained).

The waveform frontend takes `do_normalize`, `sampling_rate` and `padding_value` from the source's
`Wav2Vec2FeatureExtractor` settings (transformers' defaults when it has none).

Usage: `eisv-convert --from transformers DIR_OR_HUB_ID --output OUT [--overwrite]`.
"""

from pathlib import Path

from transformers import AutoConfig, AutoModel, AutoModelForAudioXVector, PretrainedConfig, Wav2Vec2FeatureExtractor

from .configuration_eisv import EISVConfig
from .feature_extraction_eisv import EISVFeatureExtractor
from .modeling_eisv import EISVModel
from .save_converted import check_output_folder, conversion_record, save_converted

# Backbones with the wav2vec 2.0 layout the encoder and `--freeze_layers` rely on (CNN feature encoder,
# `encoder.layers`, `_get_feat_extract_output_lengths`).
SUPPORTED_MODEL_TYPES = ("wavlm", "wav2vec2", "hubert", "unispeech-sat")


def read_source_config(source, **hub_kwargs):
    """The source's transformers config, or `ValueError` naming the source when it is not a supported backbone."""
    try:
        config = AutoConfig.from_pretrained(source, **hub_kwargs)
    except (OSError, ValueError) as error:
        raise ValueError(f"{source}: cannot read a transformers config.json ({error})") from None
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"{source}: config.json has model_type {config.model_type!r}; the transformers converter "
                         f"takes {', '.join(SUPPORTED_MODEL_TYPES)}")
    return config


def is_transformers_speech_model(source) -> bool:
    """Whether `source` (folder or Hub id) is a checkpoint of a supported transformers speech backbone."""
    try:
        config_dict, _ = PretrainedConfig.get_config_dict(str(source))
    except (OSError, ValueError):
        return False
    return config_dict.get("model_type") in SUPPORTED_MODEL_TYPES


def is_xvector(config) -> bool:
    return any(name.endswith("ForXVector") for name in (config.architectures or []))


def backbone_config_dict(config) -> dict:
    """The backbone's config as `EISVConfig.backbone_config` stores it: the source's fields minus its head's."""
    fields = config.to_dict()
    for key in ("architectures", "transformers_version", "id2label", "label2id", "dtype", "torch_dtype"):
        fields.pop(key, None)
    return fields


def frontend_of(source, sampling_rate: int, **hub_kwargs) -> EISVFeatureExtractor:
    """The `waveform` frontend with the source's preprocessor settings (do_normalize, padding value)."""
    try:
        reference = Wav2Vec2FeatureExtractor.from_pretrained(source, **hub_kwargs)
    except (OSError, ValueError):
        reference = Wav2Vec2FeatureExtractor(sampling_rate=sampling_rate)
    if reference.sampling_rate != sampling_rate:
        raise ValueError(f"{source}: preprocessor_config.json says {reference.sampling_rate} Hz; EISV models take "
                         f"{sampling_rate} Hz")
    return EISVFeatureExtractor("waveform", sampling_rate=sampling_rate, padding_value=reference.padding_value,
                                do_normalize=reference.do_normalize)


def from_transformers(source, embedding_size: int = None, **hub_kwargs):
    """-> (EISVModel in eval mode, its EISVFeatureExtractor) holding the source's weights.

    `embedding_size` applies to a new attentive head only (an xvector head keeps `xvector_output_dim`).
    """
    config = read_source_config(source, **hub_kwargs)
    if is_xvector(config):
        reference = AutoModelForAudioXVector.from_pretrained(source, **hub_kwargs)
        eisv_config = EISVConfig(
            encoder_type="ssl_backbone", backbone_config=backbone_config_dict(config), ssl_head="xvector",
            ssl_weighted_layer_sum=config.use_weighted_layer_sum, xvector_tdnn_dim=config.tdnn_dim,
            xvector_tdnn_kernel=config.tdnn_kernel, xvector_tdnn_dilation=config.tdnn_dilation,
            embedding_size=config.xvector_output_dim)
        model = EISVModel(eisv_config)
        encoder = model.encoder
        encoder.backbone.load_state_dict(getattr(reference, reference.base_model_prefix).state_dict())
        if config.use_weighted_layer_sum:
            encoder.layer_weights.data.copy_(reference.layer_weights.data)
        encoder.projector.load_state_dict(reference.projector.state_dict())
        encoder.tdnn.load_state_dict(reference.tdnn.state_dict())
        encoder.embedding.load_state_dict(reference.feature_extractor.state_dict())  # transformers' name for it
    else:
        backbone = AutoModel.from_pretrained(source, **hub_kwargs)
        options = {} if embedding_size is None else {"embedding_size": embedding_size}
        model = EISVModel(EISVConfig(encoder_type="ssl_backbone", backbone_config=backbone_config_dict(config),
                                     **options))
        model.encoder.backbone.load_state_dict(backbone.state_dict())
    return model.eval(), frontend_of(source, model.config.sampling_rate, **hub_kwargs)


def convert(source, output_dir, overwrite: bool = False, embedding_size: int = None) -> Path:
    """Write the converted model and its feature extractor to `output_dir` (atomically); return it."""
    check_output_folder(output_dir, overwrite)
    model, extractor = from_transformers(source, embedding_size)
    folder = Path(source).expanduser() if Path(source).expanduser().is_dir() else None
    return save_converted(output_dir, model, extractor, overwrite, origin=conversion_record(source, "transformers", folder))
