"""Writing files atomically (under a temporary name, then `os.replace`), and the check before a folder output
is replaced. Standard library only, like the rest of `eisv_io`: the tools, training, model cards and
experiments write through it. Folders staged and swapped in whole (`staged_folder`, `replace_folder`,
`apply_umask`, `current_umask`) are `eisv_io.staged_folders`.
"""

import contextlib
import os
import shutil
from pathlib import Path

from .errors import ToolError

__all__ = ["atomic_path", "check_replaceable_folder", "remove_stale_temporaries", "write_text_atomic"]


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`; on success it replaces `path`, on error it is removed.

    Readers never see a half-written file: either the old one or the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def remove_stale_temporaries(path) -> int:
    """Delete the `atomic_path` temporaries of `path` that a killed writer left (`.NAME.tmp-PID`).

    Call it only while holding the output's lock, so no live writer's file is removed. Returns how many.
    """
    path = Path(path)
    removed = 0
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        with contextlib.suppress(OSError):
            stale.unlink() if stale.is_file() else shutil.rmtree(stale)
            removed += 1
    return removed


def write_text_atomic(path, text: str):
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as temporary:
        Path(temporary).write_text(text, encoding="utf-8")


def check_replaceable_folder(path, is_previous_output, what: str, overwrite: bool = False) -> Path:
    """Refuse to replace a folder that holds something else than a previous output of this tool.

    `path` may be missing, empty or a folder for which `is_previous_output(path)` is true; any other
    existing folder (or a file) raises `ToolError` naming it, unless `overwrite`. `what` names the
    tool's output in the message (e.g. "an eisv-eval output").
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return path
    if not path.is_dir():
        raise ToolError(f"{path}: exists and is not a folder; choose another output")
    if overwrite or not any(path.iterdir()) or is_previous_output(path):
        return path
    entries = sorted(entry.name for entry in path.iterdir())
    shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
    raise ToolError(f"{path}: folder is not empty ({shown}) and is not {what}; its contents would be replaced. "
                    f"Pass --overwrite to replace it, or choose another output")
