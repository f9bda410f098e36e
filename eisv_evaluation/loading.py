"""Loading an EISV model and its feature extractor from a folder or a Hub id, ready for inference.

Only safetensors weights are loaded: a folder with nothing but a pickle (`pytorch_model.bin`) is
refused, as is any other failure, with a one-line `ToolError`. A name that is not an existing
folder is tried as a Hub id only when it is a valid one; with `HF_HUB_OFFLINE=1` it must be in the
local Hub cache, and otherwise one request without retries checks that the Hub has it (or falls
back to the cache when the Hub cannot be reached). Either way a mistyped name fails within
seconds instead of retrying the Hub for ~23 s.
"""

import hashlib
import json
import os
from pathlib import Path

import torch

from eisv_io.errors import ToolError, one_line

# Config fields that do not change what the encoder computes (training head, decision, bookkeeping):
# left out of `model_identity`, so re-calibrating or re-heading a model keeps its identity.
_MISSING = object()
_NOT_EMBEDDING_FIELDS = {"verification_threshold", "num_speakers", "aam_margin", "aam_scale", "erl_weight", "aam_weight",
                         "transformers_version", "architectures", "auto_map", "id2label", "label2id", "dtype",
                         "torch_dtype", "return_dict", "output_hidden_states", "output_attentions",
                         "calibration_scale", "calibration_offset", "calibration_scores", "calibration_source",
                         "embedding_transform_info"}


def resolve_device(device=None) -> torch.device:
    """`None`/"auto" -> CUDA when available, else CPU; anything else is checked and passed to `torch.device`.

    Raises `ToolError` for a device this machine does not have (e.g. `cuda` without a GPU).
    """
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as error:
        raise ToolError(f"--device {device!r}: {one_line(error)}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ToolError(f"--device {device!r}: no CUDA GPU is available here (use --device cpu or auto)")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ToolError(f"--device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif resolved.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ToolError(f"--device {device!r}: MPS is not available here (use --device cpu or auto)")
    elif resolved.type not in ("cpu", "cuda", "mps", "xpu"):
        raise ToolError(f"--device {device!r}: not a device the tools support (cpu, cuda, cuda:N, mps)")
    return resolved


def default_feature_extractor(config):
    """The feature extractor a config implies, for folders saved without `preprocessor_config.json`."""
    from modeling_eisv import EISVFeatureExtractor

    return EISVFeatureExtractor(feature_type=config.frontend, feature_size=config.num_mel_bins,
                                sampling_rate=config.sampling_rate)


def _offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return flag or bool(getattr(constants, "HF_HUB_OFFLINE", False))


def check_model_name(name: str) -> bool:
    """Fail at once for a name that is no folder and cannot be fetched as a Hub id; returns whether
    to load from the local Hub cache only.

    A Hub id is probed with one request without retries (the Hub client retries a failed download
    5 times, ~23 s, before giving up): a Hub that cannot be reached is an error unless the id is
    cached, which then loads from the cache; an id the Hub does not know is an error unless cached.
    """
    local = Path(name)
    looks_local = local.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_local:
        if not local.is_dir():
            raise ToolError(f"{name}: no such model folder")
        if not (local / "config.json").is_file():
            raise ToolError(f"{name}: no model here (expected a folder with config.json)")
        return False
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError, HfHubHTTPError, RepositoryNotFoundError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        raise ToolError(f"{name}: no such model folder, and not a valid Hub id (namespace/name)") from None
    cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
    if _offline():
        if not cached:
            raise ToolError(f"{name}: no such model folder, and HF_HUB_OFFLINE is set and this Hub id is not in the "
                            f"local cache")
        return True
    try:
        get_hf_file_metadata(hf_hub_url(name, "config.json"), timeout=10)
    except RepositoryNotFoundError:
        if cached:
            return True
        raise ToolError(f"{name}: no such model folder, and no such model on the Hub (a typo? a private model needs "
                        f"`hf auth login`)") from None
    except HfHubHTTPError as error:
        if cached:
            return True
        raise ToolError(f"{name}: no such model folder, and the Hub answered {one_line(error)}") from None
    except Exception as error:  # network errors (httpx), timeouts
        if cached:
            return True
        raise ToolError(f"{name}: no such model folder, and the Hub cannot be reached ({one_line(error)}); pass a "
                        f"local folder, or set HF_HUB_OFFLINE=1 to use cached models only") from None
    return False


def load_model(model_name_or_path, device=None):
    """Folder or Hub id -> (`EISVModel` in eval mode on `device`, `EISVFeatureExtractor`).

    A checkpoint of `EISVForSpeakerVerification` loads too (its training head is dropped).
    Raises `ToolError` (one line) for a missing device, a folder that does not exist or holds no
    EISV model in safetensors, corrupt weights, or a Hub id that cannot be fetched.
    """
    import modeling_eisv  # noqa: F401  (registers the eisv model type with the Auto classes)
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel
    from transformers.utils import logging as transformers_logging

    name = str(model_name_or_path)
    target = resolve_device(device)  # before loading: a missing GPU fails fast
    cache_only = check_model_name(name)
    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # a "Loading weights" bar per call is noise in the tools' output
    try:
        config = AutoConfig.from_pretrained(name, local_files_only=cache_only)
        if getattr(config, "model_type", None) != "eisv":
            raise ToolError(f"{name}: model_type is {config.model_type!r}, not an EISV model")
        model = AutoModel.from_pretrained(name, config=config, use_safetensors=True, local_files_only=cache_only)
    except ToolError:
        raise
    except Exception as error:  # transformers, safetensors and the Hub raise many types; one line, naming the model
        text = one_line(error)
        if isinstance(error, OSError) and "safetensors" in str(error).lower():
            text = "no model.safetensors (pickle-only weights such as pytorch_model.bin are not loaded); " + text
        raise ToolError(f"{name}: cannot load the model ({text})") from None
    finally:
        if bars:
            transformers_logging.enable_progress_bar()
    try:
        feature_extractor = AutoFeatureExtractor.from_pretrained(name, local_files_only=cache_only)
    except (OSError, ValueError):
        feature_extractor = default_feature_extractor(config)
    try:
        model = model.to(target).eval()
    except (RuntimeError, AssertionError) as error:
        raise ToolError(f"--device {device!r}: cannot move the model there ({one_line(error)})") from None
    return model, feature_extractor


def load_for_backend(model_name_or_path, device=None, backend="torch", threads=None):
    """`load_model`, then for `backend="onnxruntime"` the model as an `onnx_backend.OnnxModel` (CPU).

    Returns `(model for embedding, feature_extractor, the PyTorch model, model_identity)`; the
    identity is the PyTorch model's either way (what outputs and cohorts record). Exporting (when
    no cached graph of this identity exists) is said on stderr.
    """
    import sys

    from .onnx_backend import check_backend, onnx_model_for

    torch_model, feature_extractor = load_model(model_name_or_path, check_backend(backend, device))
    identity = model_identity(torch_model, feature_extractor)
    if backend == "torch":
        return torch_model, feature_extractor, torch_model, identity
    onnx_model, info = onnx_model_for(torch_model, feature_extractor, model_name_or_path, threads, identity)
    if info["exported"]:
        print(f"eisv: exported {model_name_or_path} to {info['path']} for onnxruntime (min cosine vs PyTorch "
              f"{info['min_cosine']:.6f})", file=sys.stderr)
    return onnx_model, feature_extractor, torch_model, identity


def model_identity(model, feature_extractor=None) -> str:
    """`"sha256:<hex>"` of what determines a model's embeddings: every tensor of its state dict (name,
    dtype, shape, bytes), its config without the training-head and decision fields, and the
    feature-extractor settings, both without the fields at their default value. Equal for the same
    folder on any device (~0.1 s for 6 M parameters)."""
    digest = hashlib.sha256()
    # Fields at their default value are left out, so a field that a newer eisv adds (with a default that
    # keeps old behaviour) does not change the identity of existing folders, their outputs and caches.
    config = model.config
    defaults = type(config)(encoder_type=config.encoder_type, frontend=config.frontend).to_dict()
    kept = {key: value for key, value in config.to_dict().items()
            if key not in _NOT_EMBEDDING_FIELDS and not key.startswith("_") and defaults.get(key, _MISSING) != value}
    digest.update(json.dumps(kept, sort_keys=True, default=str).encode())
    if feature_extractor is not None:
        fe_defaults = type(feature_extractor)(feature_extractor.feature_type).to_dict()
        settings = {key: value for key, value in feature_extractor.to_dict().items()
                    if key not in ("processor_class", "auto_map") and not key.startswith("_")
                    and fe_defaults.get(key, _MISSING) != value}
        digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for key, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"sha256:{digest.hexdigest()}"
