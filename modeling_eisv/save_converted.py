"""Writing a converted model folder safely: built next to the output, swapped in whole, and never
over a folder that holds something else; and the checks every converter makes on the weights.

An existing output is replaced only when it is empty or a previous conversion (a `config.json`
with `model_type` `eisv`, and nothing but `.json`, `.safetensors` and `.py` files); any other
folder is refused unless `overwrite`, so a mistyped `--output` never deletes someone's files.
A kill leaves the old folder or the new one, never half of one. The folder and its files get the
permissions of the umask (0755 / 0644 under umask 022).
"""

import json
from pathlib import Path

from eisv_io.staged_folders import apply_umask, staged_folder

_CONVERSION_SUFFIXES = (".json", ".safetensors", ".py")


class ConversionError(ValueError):
    """The source is not a model the converter can reproduce exactly."""


def load_converted_weights(model, state: dict, where: str):
    """Load renamed weights into `model` (strict) and put it in eval mode; returns `model`.

    Raises `ConversionError` naming `where` and the first missing, unexpected and mis-shaped keys.
    """
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
             for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise ConversionError(f"{where}: missing {missing[:5]}, unexpected {unexpected[:5]}, shape mismatches {wrong[:5]}")
    model.load_state_dict(state, strict=True)
    return model.eval()


def is_previous_conversion(folder: Path) -> bool:
    """An eisv model folder holding nothing but what a conversion writes (json, safetensors, py files)."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(config, dict) or config.get("model_type") != "eisv":
        return False
    return all(entry.is_file() and entry.suffix in _CONVERSION_SUFFIXES for entry in Path(folder).iterdir())


def check_output_folder(output_dir, overwrite: bool = False) -> Path:
    """Raises `FileExistsError` for an output that exists and is neither empty nor a previous conversion."""
    output_dir = Path(output_dir)
    if not output_dir.exists() or overwrite:
        return output_dir
    if not output_dir.is_dir():
        raise FileExistsError(f"{output_dir}: exists and is not a folder; choose another --output")
    entries = sorted(entry.name for entry in output_dir.iterdir())
    if entries and not is_previous_conversion(output_dir):
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise FileExistsError(f"{output_dir}: folder is not empty ({shown}) and is not a previous conversion; its "
                              f"contents would be replaced. Pass --overwrite to replace it, or choose another --output")
    return output_dir


def save_converted(output_dir, model, feature_extractor, overwrite: bool = False) -> Path:
    """`model.save_pretrained` + `feature_extractor.save_pretrained` into `output_dir`, swapped in whole.

    Call `check_output_folder` before the (slow) conversion too, so a refused output fails early.
    """
    output_dir = check_output_folder(output_dir, overwrite)
    with staged_folder(output_dir) as staging:
        model.save_pretrained(staging)
        feature_extractor.save_pretrained(staging)
        apply_umask(staging)
    return output_dir
