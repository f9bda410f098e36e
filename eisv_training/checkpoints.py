"""Training checkpoints that a kill at any moment cannot corrupt.

A checkpoint is `save_state` into `step_<N>.tmp-<pid>`, then renamed to `step_<N>`: a folder
named `step_<N>` is always complete. Resuming picks the highest complete step.
"""

import json
import os
import re
import shutil
from pathlib import Path

_STEP = re.compile(r"^step_(\d+)$")


def complete_checkpoints(folder) -> list:
    """Complete checkpoint folders under `folder`, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(folder):
    """The newest complete checkpoint folder, or None."""
    found = complete_checkpoints(folder)
    return found[-1] if found else None


def save_checkpoint(accelerator, folder, step: int, progress: dict, keep: int = 2) -> Path:
    """`accelerator.save_state` into `folder/step_<step>` atomically; keep the newest `keep`.

    Every process must call this (save_state synchronises); only the main one renames and prunes.
    `progress` (JSON-able: epoch, step in epoch, best EER, ...) is written beside the state.
    """
    folder = Path(folder)
    final = folder / f"step_{step}"
    staging = folder / f"step_{step}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (staging / "progress.json").write_text(json.dumps(progress, indent=2))
        with open(staging / "progress.json") as handle:
            os.fsync(handle.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        for old in complete_checkpoints(folder)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
        for stale in folder.glob("step_*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def read_progress(checkpoint) -> dict:
    return json.loads((Path(checkpoint) / "progress.json").read_text())
