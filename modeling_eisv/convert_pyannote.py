"""Convert a WeSpeaker ResNet speaker encoder packaged by pyannote.audio (e.g.
`pyannote/wespeaker-voxceleb-resnet34-LM`) into an EISV checkpoint.

    python -m modeling_eisv.convert_pyannote DIR_OR_FILE_OR_HUB_ID --output OUT [--overwrite]

The source is a folder holding `pytorch_model.bin`, that file itself, or a Hub model id. It may be
pyannote's Lightning checkpoint (`state_dict`, `hyper_parameters`, `pyannote.audio`), the state dict
of pyannote's `WeSpeakerResNet34` (`resnet.*` keys), or WeSpeaker's own `wespeaker.pt` (its
`projection.*` training head is dropped). It is read with `torch.load(weights_only=True)`; the few
pyannote / Lightning classes a Lightning checkpoint names (task specifications, `AttributeDict`) are
rebuilt as inert stand-ins, so nothing is imported and no pickled code runs. The output folder holds
`model.safetensors`, `config.json`, `preprocessor_config.json` and the remote code, so
`AutoModel.from_pretrained(OUT, trust_remote_code=True)` loads it without this package. OUT is
replaced only when it is empty or a previous conversion, unless `--overwrite` (`save_converted`).

The converted model computes what pyannote's `WeSpeakerResNet34(waveforms)` returns (the 256-d
`seg_1` output, not normalised): its `torchaudio.compliance.kaldi.fbank(waveform * 32768,
window_type="hamming", dither=0)` minus the utterance mean is the `kaldi_fbank` frontend with
`window_type="hamming"` and `waveform_scale=32768`, and its unbiased statistics pooling is the
`resnet` encoder's. Unlike pyannote, a padded batch gives each utterance the embedding it has alone.
"""

import re
import sys
from collections import OrderedDict
from pathlib import Path

import torch

from .configuration_eisv import EISVConfig
from .feature_extraction_eisv import KALDI_WINDOWS, EISVFeatureExtractor
from .modeling_eisv import EISVModel
from .save_converted import (ConversionError, check_output_folder, conversion_record, converter_parser,
                             is_hub_id, load_converted_weights, run_conversion, save_converted)

CHECKPOINT = "pytorch_model.bin"
# WeSpeakerResNet34's frontend arguments, and the values the kaldi_fbank frontend reproduces.
_FBANK_DEFAULTS = dict(sample_rate=16000, num_channels=1, num_mel_bins=80, frame_length=25, frame_shift=10,
                       round_to_power_of_two=True, snip_edges=True, dither=0.0, window_type="hamming",
                       use_energy=False, fbank_centering_span=None)
_FBANK_SUPPORTED = dict(sample_rate=16000, num_channels=1, frame_length=25, frame_shift=10,
                        round_to_power_of_two=True, snip_edges=True, dither=0.0, use_energy=False,
                        fbank_centering_span=None)
_SUPPORTED_CLASSES = ("WeSpeakerResNet34",)  # the deeper pyannote ResNets use bottleneck blocks
WAVEFORM_SCALE = 1 << 15  # pyannote (and WeSpeaker) scale [-1, 1] samples to the 16-bit range


class _StandIn:
    """An inert object in place of a class a checkpoint names: it keeps what it is given, runs nothing."""

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state


def _stand_in(qualified_name: str):
    """(stand-in, name) for `torch.serialization.safe_globals`; Lightning's `AttributeDict` (a dict of
    hyper-parameters) becomes an `OrderedDict`, the only dict subclass the tensors-only loader fills."""
    if qualified_name.endswith(".AttributeDict"):
        return OrderedDict, qualified_name
    return type(qualified_name.rsplit(".", 1)[-1], (_StandIn,), {}), qualified_name


def read_checkpoint(path) -> tuple[dict, dict, str]:
    """-> (state dict with WeSpeaker's `ResNet` key names, frontend hyper-parameters, pyannote class name or '')."""
    path = Path(path)
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        with torch.serialization.safe_globals([_stand_in(name) for name in names]):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 (torch raises several types for a bad file)
        raise ConversionError(f"{path}: cannot be read as a tensors-only torch checkpoint ({error})") from None
    if not isinstance(checkpoint, dict):
        raise ConversionError(f"{path}: not a checkpoint (a {type(checkpoint).__name__}, not a dict)")
    state = checkpoint.get("state_dict", checkpoint)
    hyper = dict(checkpoint.get("hyper_parameters") or {})
    architecture = (checkpoint.get("pyannote.audio") or {}).get("architecture") or {}
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{path}: its state dict holds something else than tensors")
    if any(key.startswith("resnet.") for key in state):
        state = {key.removeprefix("resnet."): value for key, value in state.items() if key.startswith("resnet.")}
    state = {key: value for key, value in state.items() if not key.startswith("projection.")}  # WeSpeaker's head
    if "seg_1.weight" not in state or "conv1.weight" not in state:
        raise ConversionError(f"{path}: not a WeSpeaker ResNet (no conv1.weight / seg_1.weight, with or without "
                              f"pyannote's resnet. prefix)")
    return state, hyper, str(architecture.get("class", ""))


def config_from_checkpoint(state: dict, hyper: dict, class_name: str, path) -> tuple[EISVConfig, str]:
    """The `EISVConfig` of the encoder in `state`, and the frontend's window type, after checking that
    the hyper-parameters are ones the `kaldi_fbank` frontend reproduces."""
    if class_name and class_name not in _SUPPORTED_CLASSES:
        raise ConversionError(f"{path}: a pyannote {class_name}; only {_SUPPORTED_CLASSES} (basic residual blocks) "
                              f"is converted")
    unknown = sorted(set(hyper) - set(_FBANK_DEFAULTS))
    if unknown:
        raise ConversionError(f"{path}: hyper_parameters this converter does not know: {unknown}")
    fbank = {**_FBANK_DEFAULTS, **hyper}
    for key, value in _FBANK_SUPPORTED.items():
        if fbank[key] != value:
            raise ConversionError(f"{path}: hyper_parameters {key}={fbank[key]!r}; only {key}={value!r} is reproduced "
                                  f"by the kaldi_fbank frontend")
    if fbank["window_type"] not in KALDI_WINDOWS:
        raise ConversionError(f"{path}: window_type={fbank['window_type']!r}; only {KALDI_WINDOWS} are reproduced")
    if any(".conv3." in key for key in state) or "seg_2.weight" in state:
        raise ConversionError(f"{path}: bottleneck blocks or a second embedding layer (seg_2); only the basic-block "
                              f"ResNets with one embedding layer (ResNet34) are converted")
    blocks = [len({m[1] for key in state if (m := re.match(rf"layer{stage}\.(\d+)\.", key))}) for stage in (1, 2, 3, 4)]
    config = EISVConfig(encoder_type="resnet", frontend="kaldi_fbank", num_mel_bins=int(fbank["num_mel_bins"]),
                        sampling_rate=int(fbank["sample_rate"]), embedding_size=int(state["seg_1.weight"].shape[0]),
                        resnet_channels=int(state["conv1.weight"].shape[0]), resnet_num_blocks=blocks)
    return config, fbank["window_type"]


def locate(source) -> Path:
    """The checkpoint file: `source` itself, `source/pytorch_model.bin`, or downloaded from the Hub."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        if not (path / CHECKPOINT).is_file():
            raise FileNotFoundError(f"{path}: no {CHECKPOINT} (a pyannote WeSpeaker model folder has one)")
        return path / CHECKPOINT
    if not is_hub_id(source):
        raise FileNotFoundError(f"{source}: no such file or folder, and not a Hub model id (owner/name)")
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(str(source), CHECKPOINT))


def convert(source, output_dir, overwrite: bool = False) -> Path:
    """Write the converted model and its feature extractor to `output_dir` (atomically); return it.

    Raises `FileExistsError` when `output_dir` holds something else than a previous conversion,
    unless `overwrite`.
    """
    check_output_folder(output_dir, overwrite)
    path = locate(source)
    state, hyper, class_name = read_checkpoint(path)
    config, window_type = config_from_checkpoint(state, hyper, class_name, path)
    state = {"encoder." + key: value.float() if value.is_floating_point() else value for key, value in state.items()}
    model = load_converted_weights(EISVModel(config), state, f"{path} does not match a resnet encoder")
    extractor = EISVFeatureExtractor("kaldi_fbank", feature_size=config.num_mel_bins, sampling_rate=config.sampling_rate,
                                     window_type=window_type, waveform_scale=WAVEFORM_SCALE)
    # pyannote/wespeaker-voxceleb-resnet34-LM is published under CC BY 4.0 (attribution)
    origin = conversion_record(source, "pyannote", path.parent, default_license="cc-by-4.0")
    return save_converted(output_dir, model, extractor, overwrite, origin=origin)


def main(argv=None):
    parser = converter_parser(__doc__, "pyannote WeSpeaker folder or pytorch_model.bin, or a Hub id")
    args = parser.parse_args(argv)
    return run_conversion("convert_pyannote", lambda: convert(args.source, args.output, args.overwrite),
                          (FileNotFoundError, ConversionError, OSError))


if __name__ == "__main__":
    sys.exit(main())
