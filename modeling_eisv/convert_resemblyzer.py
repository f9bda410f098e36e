"""Convert the GE2E encoder shipped in the `resemblyzer` wheel into an EISV checkpoint.

    python -m modeling_eisv.convert_resemblyzer --output DIR [--weights pretrained.pt | --wheel resemblyzer-0.1.4-py3-none-any.whl]
                                                [--overwrite]

Without `--weights`/`--wheel`, the `pretrained.pt` of the installed `resemblyzer` package is used
(found without importing it). The file is read with `torch.load(weights_only=True)`: tensors only,
no pickled objects are executed. The output folder holds `model.safetensors`, `config.json`,
`preprocessor_config.json` and the remote code, so `AutoModel.from_pretrained(DIR,
trust_remote_code=True)` loads it without this package installed.

The folder is built next to DIR and swapped in whole (a kill leaves the old DIR or the new one).
An existing DIR is replaced only when it is empty or a previous conversion (a `config.json` with
`model_type` `eisv`, and nothing but `.json`, `.safetensors` and `.py` files); any other folder is
refused unless `--overwrite`, so a mistyped `--output` never deletes someone's files. The folder
and its files get the permissions of the umask (0755 / 0644 under umask 022).
"""

import importlib.util
import io
import sys
import zipfile
from pathlib import Path

import torch

from .configuration_eisv import EISVConfig
from .feature_extraction_eisv import EISVFeatureExtractor
from .modeling_eisv import EISVModel
from .save_converted import check_output_folder, conversion_record, converter_parser, run_conversion, save_converted

# resemblyzer key -> EISVModel key
_KEY_MAP = {"lstm.": "encoder.lstm.", "linear.": "encoder.projection."}
_UNUSED_KEYS = {"similarity_weight", "similarity_bias"}  # GE2E training-loss parameters


def find_installed_weights() -> Path:
    """Path of `pretrained.pt` in the installed resemblyzer package (not imported)."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "resemblyzer is not installed. Either `pip install --no-deps resemblyzer==0.1.4`, or download the wheel "
            "with `pip download resemblyzer==0.1.4 --no-deps` and pass it with --wheel.")
    path = Path(list(spec.submodule_search_locations)[0]) / "pretrained.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the resemblyzer package has no pretrained.pt")
    return path


def read_state_dict(weights: Path = None, wheel: Path = None) -> dict:
    """resemblyzer's `model_state` tensors, from a `pretrained.pt` file or from inside its wheel."""
    if wheel is not None:
        with zipfile.ZipFile(wheel) as archive:
            names = [n for n in archive.namelist() if n.endswith("resemblyzer/pretrained.pt")]
            if not names:
                raise FileNotFoundError(f"{wheel}: no resemblyzer/pretrained.pt inside this wheel")
            source = io.BytesIO(archive.read(names[0]))
            where = f"{wheel}!{names[0]}"
    else:
        weights = Path(weights) if weights is not None else find_installed_weights()
        source, where = weights, str(weights)
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    state = checkpoint.get("model_state", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or "linear.weight" not in state:
        raise ValueError(f"{where}: not a resemblyzer GE2E checkpoint (no model_state with linear.weight)")
    return state


def convert_state_dict(state: dict) -> dict:
    """Rename resemblyzer keys to EISVModel keys; unknown keys are an error."""
    converted = {}
    for key, tensor in state.items():
        if key in _UNUSED_KEYS:
            continue
        prefix = next((p for p in _KEY_MAP if key.startswith(p)), None)
        if prefix is None:
            raise KeyError(f"unexpected key in the resemblyzer checkpoint: {key}")
        converted[_KEY_MAP[prefix] + key[len(prefix):]] = tensor.float()
    return converted




def convert(output_dir, weights=None, wheel=None, overwrite: bool = False) -> Path:
    """Write the converted model and its feature extractor to `output_dir` (atomically); return it.

    Raises `FileExistsError` when `output_dir` holds something else than a previous conversion,
    unless `overwrite` (see the module docstring).
    """
    check_output_folder(output_dir, overwrite)
    state = convert_state_dict(read_state_dict(weights, wheel))
    config = EISVConfig(encoder_type="ge2e_lstm", embedding_size=state["encoder.projection.weight"].shape[0],
                        ge2e_hidden_size=state["encoder.lstm.weight_hh_l0"].shape[1])
    model = EISVModel(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise KeyError(f"conversion mismatch: missing {missing}, unexpected {unexpected}")
    model.eval()
    origin = conversion_record(weights or wheel or "resemblyzer", "resemblyzer", default_license="apache-2.0")
    return save_converted(output_dir, model, EISVFeatureExtractor("ge2e_mel"), overwrite, origin=origin)


def main(argv=None):
    parser = converter_parser(__doc__)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--weights", type=Path, help="resemblyzer's pretrained.pt (default: the installed package's)")
    source.add_argument("--wheel", type=Path, help="a resemblyzer wheel file to read pretrained.pt from")
    args = parser.parse_args(argv)
    return run_conversion("convert_resemblyzer", lambda: convert(args.output, args.weights, args.wheel, args.overwrite),
                          (FileNotFoundError, FileExistsError, KeyError, ValueError, zipfile.BadZipFile))


if __name__ == "__main__":
    sys.exit(main())
