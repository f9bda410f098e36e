"""The remote code in every committed model folder (models/*/ with *.py next to config.json) is the package's.

`save_pretrained` copies modeling_eisv's files into the folder for `trust_remote_code=True`; nothing
else keeps those copies in step. Expected: exactly the files `save_pretrained` would write today (the
modules named in the folder's `auto_map` and everything they import relatively), each byte for byte
the same as in modeling_eisv/.
"""

import json
from pathlib import Path

import pytest
from transformers.dynamic_module_utils import get_relative_import_files

from _tiny import tiny_config
from modeling_eisv import EISVFeatureExtractor, EISVForSpeakerVerification

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "modeling_eisv"


def model_folders() -> list[Path]:
    return sorted(folder for folder in (REPO / "models").glob("*/")
                  if (folder / "config.json").is_file() and any(folder.glob("*.py")))


def expected_files(folder: Path) -> set[str]:
    """The file names save_pretrained writes for the folder's auto_map entries, from the package as it is now."""
    entries = set()
    for name in ("config.json", "preprocessor_config.json"):
        if (folder / name).is_file():
            entries |= {ref.split(".")[0] for ref in json.loads((folder / name).read_text()).get("auto_map", {}).values()}
    files = {f"{module}.py" for module in entries if (PACKAGE / f"{module}.py").is_file()}
    for name in set(files):
        files |= {Path(path).name for path in get_relative_import_files(str(PACKAGE / name))}
    return files


def mismatches(folder: Path) -> dict[str, list[str]]:
    shipped, expected = {path.name for path in folder.glob("*.py")}, expected_files(folder)
    return {"differ from modeling_eisv/": sorted(name for name in shipped & expected
                                                   if (folder / name).read_bytes() != (PACKAGE / name).read_bytes()),
            "missing (the package's remote code imports them)": sorted(expected - shipped),
            "extra (not part of the package's remote code)": sorted(shipped - expected)}


def test_remote_code_in_committed_model_folders_matches_the_package():
    folders = model_folders()
    assert folders, f"no model folder with remote code under {REPO / 'models'}"
    problems = []
    for folder in folders:
        found = {what: names for what, names in mismatches(folder).items() if names}
        if found:
            target = folder.relative_to(REPO).as_posix()
            lines = [f"  {what}: {', '.join(names)}" for what, names in found.items()]
            problems.append(f"{target}: its remote code is not the package's:\n" + "\n".join(lines) +
                            f"\n  re-create the folder with `python -m experiments.export_best_model "
                            f"--output results/generalisation --target {target}`")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def test_a_folder_written_by_save_pretrained_passes_the_check(tmp_path):
    """The check expects what save_pretrained writes: a fresh folder has no mismatch."""
    EISVForSpeakerVerification(tiny_config(num_speakers=3)).save_pretrained(tmp_path)
    EISVFeatureExtractor().save_pretrained(tmp_path)
    found = mismatches(tmp_path)
    assert not any(found.values()), found
