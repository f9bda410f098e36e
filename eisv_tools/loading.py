"""Loading an EISV model and its feature extractor from a folder or a Hub id, ready for inference."""

from pathlib import Path

import torch

from .errors import ToolError


def resolve_device(device=None) -> torch.device:
    """`None`/"auto" -> CUDA when available, else CPU; anything else is passed to `torch.device`."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise ToolError(f"--device {device!r}: {error}") from None


def default_feature_extractor(config):
    """The feature extractor a config implies, for folders saved without `preprocessor_config.json`."""
    from modeling_eisv import EISVFeatureExtractor

    return EISVFeatureExtractor(feature_type=config.frontend, feature_size=config.num_mel_bins,
                                sampling_rate=config.sampling_rate)


def load_model(model_name_or_path, device=None):
    """Folder or Hub id -> (`EISVModel` in eval mode on `device`, `EISVFeatureExtractor`).

    A checkpoint of `EISVForSpeakerVerification` loads too (its training head is dropped).
    Raises `ToolError` for a folder that does not exist or holds no EISV model.
    """
    import modeling_eisv  # noqa: F401  (registers the eisv model type with the Auto classes)
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

    name = str(model_name_or_path)
    local = Path(name)
    looks_local = local.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_local and not (local / "config.json").is_file():
        raise ToolError(f"{name}: no model here (expected a folder with config.json)")
    try:
        config = AutoConfig.from_pretrained(name)
        if getattr(config, "model_type", None) != "eisv":
            raise ToolError(f"{name}: model_type is {config.model_type!r}, not an EISV model")
        model = AutoModel.from_pretrained(name, config=config)
    except ToolError:
        raise
    except (OSError, ValueError) as error:
        raise ToolError(f"{name}: cannot load the model ({error})") from None
    try:
        feature_extractor = AutoFeatureExtractor.from_pretrained(name)
    except (OSError, ValueError):
        feature_extractor = default_feature_extractor(config)
    return model.to(resolve_device(device)).eval(), feature_extractor
