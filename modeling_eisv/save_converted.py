"""Writing a converted model folder safely: built next to the output, swapped in whole, and never
over a folder that holds something else; and the checks every converter makes on the weights.

An existing output is replaced only when it is empty or a previous conversion (a `config.json`
with `model_type` `eisv`, and nothing but `.json`, `.safetensors` and `.py` files); any other
folder is refused unless `overwrite`, so a mistyped `--output` never deletes someone's files.
A kill leaves the old folder or the new one, never half of one. The folder and its files get the
permissions of the umask (0755 / 0644 under umask 022).
"""

import argparse
import json
import re
import sys
from pathlib import Path

from eisv_io.staged_folders import apply_umask, staged_folder

_CONVERSION_SUFFIXES = (".json", ".safetensors", ".py")
CONVERSION_FILENAME = "conversion.json"  # what the folder was converted from, and under which licence


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


def is_hub_id(source) -> bool:
    """Whether `source` has the form of a Hub model id (owner/name); a converter downloads such a source
    when no local path of that name exists."""
    return re.fullmatch(r"[\w.-]+/[\w.-]+", str(source)) is not None


def card_metadata(card) -> dict:
    """The front matter of a model card file (README.md), or {} when there is no such file or it is not
    readable YAML."""
    import yaml
    from huggingface_hub import metadata_load

    card = Path(card)
    try:
        return (metadata_load(card) if card.is_file() else None) or {}
    except (OSError, ValueError, yaml.YAMLError):
        return {}


def conversion_record(source, toolkit: str, folder=None, default_license: str = None) -> dict:
    """What a conversion started from, for the cards of models fine-tuned from it (`CONVERSION_FILENAME`):
    the toolkit, the source (its Hub id when it was given as one, else the folder or file name) and its
    Hub licence id: the `license` of the source folder's model card (README.md front matter) when it has
    one, else of the Hub card of a Hub id, else `default_license` (the licence of the toolkit's reference
    checkpoint, marked for checking), else "unknown"."""
    text = str(source)
    hub_id = text if is_hub_id(text) and not Path(text).expanduser().exists() else None
    license_id, where = None, "not stated"
    if folder is not None:
        card = Path(folder) / "README.md"
        license_id = card_metadata(card).get("license")
        where = f"the source's model card ({card})" if license_id else where
    if not license_id and hub_id:  # its card, when the Hub (or its cache) has one
        from huggingface_hub import hf_hub_download

        try:
            license_id = card_metadata(hf_hub_download(hub_id, "README.md")).get("license")
        except (OSError, ValueError):
            license_id = None
        where = f"the model card of {hub_id}" if license_id else where
    if not license_id and default_license:
        license_id, where = default_license, "the licence its reference checkpoint is published under (verify)"
    return {"toolkit": toolkit, "source": hub_id or Path(text).name, "hub_id": hub_id,
            "license": license_id or "unknown", "license_from": where}


def save_converted(output_dir, model, feature_extractor, overwrite: bool = False, origin: dict = None) -> Path:
    """`model.save_pretrained` + `feature_extractor.save_pretrained` into `output_dir`, swapped in whole, with
    `origin` (`conversion_record`) as `conversion.json` when given.

    Call `check_output_folder` before the (slow) conversion too, so a refused output fails early.
    """
    output_dir = check_output_folder(output_dir, overwrite)
    with staged_folder(output_dir) as staging:
        model.save_pretrained(staging)
        feature_extractor.save_pretrained(staging)
        if origin is not None:
            (staging / CONVERSION_FILENAME).write_text(json.dumps(origin, indent=2) + "\n", encoding="utf-8")
        apply_umask(staging)
    return output_dir


def converter_parser(doc: str, source_help: str = None) -> argparse.ArgumentParser:
    """The command line every converter module shares: [SOURCE] --output DIR [--overwrite]."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    if source_help:
        parser.add_argument("source", help=source_help)
    parser.add_argument("--output", required=True, type=Path, help="folder to write the EISV checkpoint to")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --output even if it is not empty and not a previous conversion")
    return parser


def run_conversion(name: str, conversion, errors) -> int:
    """Run `conversion()` (-> the written folder) for a converter's `main`: 0 and "wrote DIR", or 1 with the
    error of one of the `errors` types on stderr."""
    try:
        path = conversion()
    except errors as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0
