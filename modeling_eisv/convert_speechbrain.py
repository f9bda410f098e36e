"""Convert a SpeechBrain ECAPA-TDNN speaker encoder (e.g. `speechbrain/spkrec-ecapa-voxceleb`) into
an EISV checkpoint.

    python -m modeling_eisv.convert_speechbrain DIR_OR_HUB_ID --output OUT [--overwrite]

The source is a folder (or a Hub model id) holding `hyperparams.yaml` and `embedding_model.ckpt`,
as SpeechBrain's `EncoderClassifier` loads them. The YAML is read as plain data (its `!new:` /
`!name:` tags are never instantiated, nothing is imported), and the checkpoint with
`torch.load(weights_only=True)`: tensors only, no pickled objects run. The output folder holds
`model.safetensors`, `config.json`, `preprocessor_config.json` and the remote code, so
`AutoModel.from_pretrained(OUT, trust_remote_code=True)` loads it without this package. OUT is
replaced only when it is empty or a previous conversion, unless `--overwrite` (`save_converted`).

The converted model computes what `EncoderClassifier.encode_batch(wavs)` returns for each
utterance alone (the un-normalised 192-d embedding; `normalize=False`, SpeechBrain's default):
its `Fbank` + sentence mean normalisation is the `"speechbrain_fbank"` frontend, and its
convolutions' reflect padding and 1e-12 pooling floor are `ecapa_padding_mode="reflect"` and
`ecapa_pooling_eps=1e-12`. Unlike SpeechBrain, a padded batch gives each utterance the
embedding it has alone.
"""

import re
import sys
from pathlib import Path

import torch
import yaml

from .configuration_eisv import EISVConfig
from .feature_extraction_eisv import EISVFeatureExtractor
from .modeling_eisv import EISVModel
from .save_converted import (ConversionError, check_output_folder, conversion_record, converter_parser,
                             is_hub_id, load_converted_weights, run_conversion, save_converted)

HYPERPARAMS, CHECKPOINT = "hyperparams.yaml", "embedding_model.ckpt"
_ECAPA_CLASS = "speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN"
_FBANK_CLASS = "speechbrain.lobes.features.Fbank"
_NORM_CLASS = "speechbrain.processing.features.InputNormalization"

# Defaults of the arguments SpeechBrain 1.x's classes take (a YAML only lists what it changes).
# `dropout` only acts in training; the ecapa_tdnn encoder has none.
_ECAPA_DEFAULTS = dict(input_size=None, lin_neurons=192, channels=[512, 512, 512, 512, 1536],
                       kernel_sizes=[5, 3, 3, 3, 1], dilations=[1, 2, 3, 4, 1], attention_channels=128, res2net_scale=8,
                       se_channels=128, global_context=True, groups=[1, 1, 1, 1, 1], dropout=0.0, activation=None,
                       device="cpu")
_FBANK_DEFAULTS = dict(deltas=False, context=False, requires_grad=False, sample_rate=16000, f_min=0, f_max=None,
                       n_fft=400, n_mels=40, filter_shape="triangular", param_change_factor=1.0,
                       param_rand_factor=0.0, left_frames=5, right_frames=5, win_length=25, hop_length=10)
_NORM_DEFAULTS = dict(mean_norm=True, std_norm=True, norm_type="global", avg_factor=None, length_dim=1,
                      update_until_epoch=2, avoid_padding_norm=False, epsilon=1e-10, device="cpu")
# What our frontend reproduces; the other Fbank / InputNormalization arguments have no effect at inference.
_FBANK_SUPPORTED = dict(deltas=False, context=False, sample_rate=16000, f_min=0, n_fft=400,
                        filter_shape="triangular", win_length=25, hop_length=10)
_NORM_SUPPORTED = dict(mean_norm=True, std_norm=False, norm_type="sentence")

# SpeechBrain ECAPA_TDNN key -> EISVModel key, applied in order. SpeechBrain wraps every nn.Conv1d
# and nn.BatchNorm1d in a module of its own, hence the doubled `conv.conv.` / `norm.norm.`.
_RENAMES = [
    (r"^blocks\.0\.", "input_block."),
    (r"^blocks\.(\d+)\.", lambda m: f"blocks.{int(m[1]) - 1}."),  # SE-Res2Net blocks 1..3 -> 0..2
    (r"\.res2net_block\.", ".res2net."),
    (r"\.se_block\.conv1\.conv\.", ".se.reduce."),
    (r"\.se_block\.conv2\.conv\.", ".se.expand."),
    (r"^mfa\.", "aggregation."),
    (r"^asp\.tdnn\.conv\.conv\.", "pooling.attention.0."),
    (r"^asp\.tdnn\.norm\.norm\.", "pooling.attention.2."),
    (r"^asp\.conv\.conv\.", "pooling.attention.4."),
    (r"^asp_bn\.norm\.", "pooling_norm."),
    (r"^fc\.conv\.", "projection."),
    (r"\.conv\.conv\.", ".conv."),
    (r"\.norm\.norm\.", ".norm."),
]


# -- hyperparams.yaml as plain data ------------------------------------------------------------


class _Tagged:
    """A `!new:` / `!name:` / `!apply:` node: the class path and its (unresolved) arguments."""

    def __init__(self, kind, target, arguments):
        self.kind, self.target, self.arguments = kind, target, arguments


class _Ref:
    """A `!ref <key>` node."""

    def __init__(self, expression):
        self.expression = expression


class _HyperPyYAMLLoader(yaml.SafeLoader):
    """PyYAML's safe loader that keeps HyperPyYAML's tags as data instead of running them."""


def _construct_tagged(loader, suffix, node):
    kind, _, target = suffix.partition(":")
    if isinstance(node, yaml.MappingNode):
        arguments = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        arguments = loader.construct_sequence(node, deep=True)
    else:
        arguments = loader.construct_scalar(node) or {}
    return _Tagged(kind, target, arguments)


_HyperPyYAMLLoader.add_constructor("!ref", lambda loader, node: _Ref(loader.construct_scalar(node)))
_HyperPyYAMLLoader.add_multi_constructor("!", _construct_tagged)


def read_hyperparams(path) -> dict:
    """`hyperparams.yaml` -> dict, with HyperPyYAML tags kept as inert nodes."""
    with open(path, encoding="utf-8") as handle:
        data = yaml.load(handle, Loader=_HyperPyYAMLLoader)  # noqa: S506 (a SafeLoader subclass)
    if not isinstance(data, dict):
        raise ConversionError(f"{path}: not a SpeechBrain hyperparams file (no top-level mapping)")
    return data


def _resolve(value, hparams, where, depth=0):
    """Replace `!ref <key>` nodes (plain keys only, as SpeechBrain's ECAPA YAMLs use them) by their values."""
    if depth > 20:
        raise ConversionError(f"{where}: !ref chain too deep (a cycle?)")
    if isinstance(value, _Ref):
        match = re.fullmatch(r"\s*<([\w.]+)>\s*", value.expression)
        if match is None:
            raise ConversionError(f"{where}: the reference !ref {value.expression} is an expression; this converter "
                                  f"only follows plain !ref <key> references")
        node = hparams
        for part in match[1].split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConversionError(f"{where}: !ref <{match[1]}> names no entry of the hyperparams")
            node = node[part]
        return _resolve(node, hparams, where, depth + 1)
    if isinstance(value, list):
        return [_resolve(v, hparams, where, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, hparams, where, depth + 1) for k, v in value.items()}
    return value


def _module(hparams, name, class_path, defaults, path):
    """Arguments of the module SpeechBrain's `EncoderClassifier` would use as `modules[name]`, over its defaults."""
    node = (hparams.get("modules") or {}).get(name, hparams.get(name))
    node = _resolve(node, hparams, f"{path}: {name}")
    if not isinstance(node, _Tagged) or node.kind != "new" or node.target != class_path:
        found = f"!{node.kind}:{node.target}" if isinstance(node, _Tagged) else repr(node)
        raise ConversionError(f"{path}: `{name}` should be !new:{class_path}; found {found}")
    if not isinstance(node.arguments, dict):
        raise ConversionError(f"{path}: `{name}` has positional arguments; write them as `name: value` pairs")
    unknown = sorted(set(node.arguments) - set(defaults))
    if unknown:
        raise ConversionError(f"{path}: `{name}` has arguments this converter does not know: {unknown}")
    arguments = dict(defaults)
    arguments.update(_resolve(node.arguments, hparams, f"{path}: {name}"))
    return arguments


def _require(arguments, supported, name, path):
    for key, value in supported.items():
        actual = arguments[key]
        if actual != value:  # 16000 == 16000.0 and False == 0, as SpeechBrain would treat them
            raise ConversionError(f"{path}: `{name}` has {key}={actual!r}; only {key}={value!r} is reproduced "
                                  f"by the speechbrain_fbank frontend and ECAPA encoder")


def config_from_hyperparams(hparams: dict, path="hyperparams.yaml") -> EISVConfig:
    """The `EISVConfig` that reproduces the hyperparams' `embedding_model`, `compute_features` and `mean_var_norm`."""
    ecapa = _module(hparams, "embedding_model", _ECAPA_CLASS, _ECAPA_DEFAULTS, path)
    fbank = _module(hparams, "compute_features", _FBANK_CLASS, _FBANK_DEFAULTS, path)
    norm = _module(hparams, "mean_var_norm", _NORM_CLASS, _NORM_DEFAULTS, path)
    _require(fbank, _FBANK_SUPPORTED, "compute_features", path)
    if fbank["f_max"] not in (None, fbank["sample_rate"] // 2):
        raise ConversionError(f"{path}: `compute_features` has f_max={fbank['f_max']!r}; only the Nyquist frequency "
                              f"(None or {fbank['sample_rate'] // 2}) is reproduced")
    _require(norm, _NORM_SUPPORTED, "mean_var_norm", path)

    channels, kernels, dilations = ecapa["channels"], ecapa["kernel_sizes"], ecapa["dilations"]
    if not len(channels) == len(kernels) == len(dilations) == 5:
        raise ConversionError(f"{path}: `embedding_model` needs 5 channels / kernel_sizes / dilations (a first TDNN "
                              f"layer, 3 SE-Res2Net blocks, the aggregation layer); found {len(channels)}")
    if len(set(channels[:4])) != 1:
        raise ConversionError(f"{path}: `embedding_model` channels {channels[:4]} differ; the ecapa_tdnn encoder "
                              f"keeps one width C for its first four layers")
    if kernels[4] != 1 or dilations[4] != 1:
        raise ConversionError(f"{path}: the aggregation layer has kernel {kernels[4]}, dilation {dilations[4]}; "
                              f"only 1, 1 is reproduced")
    if any(g != 1 for g in ecapa["groups"]) or ecapa["global_context"] is not True:
        raise ConversionError(f"{path}: grouped convolutions or global_context=False are not reproduced")
    activation = ecapa["activation"]
    if activation is not None and not (isinstance(activation, _Tagged) and activation.target == "torch.nn.ReLU"):
        target = activation.target if isinstance(activation, _Tagged) else activation
        raise ConversionError(f"{path}: activation {target!r}; only torch.nn.ReLU is reproduced")
    input_size = ecapa["input_size"]
    if input_size is not None and input_size != fbank["n_mels"]:
        raise ConversionError(f"{path}: embedding_model input_size={input_size} but compute_features n_mels="
                              f"{fbank['n_mels']}")
    return EISVConfig(
        encoder_type="ecapa_tdnn", frontend="speechbrain_fbank", num_mel_bins=int(fbank["n_mels"]),
        sampling_rate=int(fbank["sample_rate"]), embedding_size=int(ecapa["lin_neurons"]),
        ecapa_channels=int(channels[0]), ecapa_mfa_channels=int(channels[4]),
        ecapa_res2net_scale=int(ecapa["res2net_scale"]), ecapa_se_channels=int(ecapa["se_channels"]),
        ecapa_attention_channels=int(ecapa["attention_channels"]),
        ecapa_kernel_sizes=[int(k) for k in kernels[:4]], ecapa_dilations=[int(d) for d in dilations[:4]],
        ecapa_padding_mode="reflect", ecapa_pooling_eps=1e-12)


# -- weights -----------------------------------------------------------------------------------


def convert_state_dict(state: dict) -> dict:
    """Rename SpeechBrain `ECAPA_TDNN` keys to `EISVModel` keys (the final 1x1 conv becomes a linear layer)."""
    converted = {}
    for key, tensor in state.items():
        new = key
        for pattern, replacement in _RENAMES:
            new = re.sub(pattern, replacement, new)
        if new.startswith("projection.") and new.endswith("weight"):
            tensor = tensor.squeeze(-1)
        converted["encoder." + new] = tensor.float() if tensor.is_floating_point() else tensor
    return converted


def read_checkpoint(path) -> dict:
    """`embedding_model.ckpt` (a `torch.save`d state dict) -> its tensors, without unpickling objects."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 (torch raises several types for a bad file)
        raise ConversionError(f"{path}: cannot be read as a tensors-only torch checkpoint ({error})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{path}: not a state dict of tensors")
    if "fc.conv.weight" not in state:
        raise ConversionError(f"{path}: not a SpeechBrain ECAPA_TDNN state dict (no fc.conv.weight)")
    return state


def locate(source) -> Path:
    """Folder with `hyperparams.yaml` + `embedding_model.ckpt`; a Hub id is downloaded into the cache."""
    folder = Path(source).expanduser()
    if folder.is_dir():
        missing = [name for name in (HYPERPARAMS, CHECKPOINT) if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder}: no {' or '.join(missing)} (a SpeechBrain ECAPA model folder has both)")
        return folder
    if not is_hub_id(source):
        raise FileNotFoundError(f"{source}: no such folder, and not a Hub model id (owner/name)")
    from huggingface_hub import hf_hub_download

    paths = [Path(hf_hub_download(str(source), name)) for name in (HYPERPARAMS, CHECKPOINT)]
    return paths[0].parent


def convert(source, output_dir, overwrite: bool = False) -> Path:
    """Write the converted model and its feature extractor to `output_dir` (atomically); return it.

    Raises `FileExistsError` when `output_dir` holds something else than a previous conversion,
    unless `overwrite`.
    """
    check_output_folder(output_dir, overwrite)
    folder = locate(source)
    config = config_from_hyperparams(read_hyperparams(folder / HYPERPARAMS), folder / HYPERPARAMS)
    state = convert_state_dict(read_checkpoint(folder / CHECKPOINT))
    model = load_converted_weights(EISVModel(config), state, f"{folder / CHECKPOINT} does not match {folder / HYPERPARAMS}")
    extractor = EISVFeatureExtractor("speechbrain_fbank", feature_size=config.num_mel_bins,
                                     sampling_rate=config.sampling_rate)
    # speechbrain/spkrec-ecapa-voxceleb is published under Apache-2.0
    origin = conversion_record(source, "speechbrain", folder, default_license="apache-2.0")
    return save_converted(output_dir, model, extractor, overwrite, origin=origin)


def main(argv=None):
    parser = converter_parser(__doc__, "SpeechBrain model folder (hyperparams.yaml + embedding_model.ckpt) or Hub id")
    args = parser.parse_args(argv)
    return run_conversion("convert_speechbrain", lambda: convert(args.source, args.output, args.overwrite),
                          (FileNotFoundError, ConversionError, yaml.YAMLError, OSError))


if __name__ == "__main__":
    sys.exit(main())
