"""Writing a changed copy of a model folder (eisv-calibrate, eisv-adapt): the model and feature
extractor re-saved through `save_pretrained` (weights, config, remote code), the folder's other
files carried over, swapped in whole.

Carried over: `README.md` (the model card) and `cohort.safetensors` (the AS-norm cohort that
eisv-verify uses) unless `drop_cohort` (a cohort embedded before the embeddings changed no longer
matches them). An existing output must be empty or a model folder (a `config.json` of
`model_type` eisv) unless `overwrite`.
"""

import json
import shutil
from pathlib import Path

from eisv_io.atomic_files import check_replaceable_folder
from eisv_io.staged_folders import apply_umask, staged_folder

COHORT_FILE = "cohort.safetensors"
CARRIED_FILES = ("README.md", COHORT_FILE)


def is_model_folder(folder: Path) -> bool:
    try:
        return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")).get("model_type") == "eisv"
    except (OSError, ValueError, AttributeError):
        return False


def save_model_folder(output, model, feature_extractor, source=None, overwrite=False, drop_cohort=False) -> Path:
    """Write `model` + `feature_extractor` to `output` (and the carried files of folder `source`)."""
    output = check_replaceable_folder(output, is_model_folder, "an eisv model folder", overwrite)
    with staged_folder(output) as staging:
        model.save_pretrained(staging)
        feature_extractor.save_pretrained(staging)
        if source is not None and Path(source).is_dir():
            for name in CARRIED_FILES:
                if (Path(source) / name).is_file() and not (drop_cohort and name == COHORT_FILE):
                    shutil.copyfile(Path(source) / name, staging / name)
        apply_umask(staging)
    return output
