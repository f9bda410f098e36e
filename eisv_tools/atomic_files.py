"""Writing outputs atomically: files under a temporary name then `os.replace`, folders staged then swapped.

Files and folders get the permissions the umask gives (0644 / 0755 under umask 022), although
`tempfile.mkdtemp` creates 0700 folders: a staged folder is chmod-ed before it is swapped in.
"""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from .errors import ToolError


def current_umask() -> int:
    """The process umask, read without changing it where Linux tells it (/proc/self/status)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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


def make_staging_folder(final) -> Path:
    """An empty folder next to `final` to build it in, with the umask's permissions (not mkdtemp's 0700)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.staging-", dir=final.parent))
    os.chmod(staging, 0o777 & ~current_umask())
    return staging


def apply_umask(folder):
    """Give `folder` and everything below it the umask's permissions (savers such as `save_pretrained`
    create weights 0600 through mkstemp); a folder shared by several nodes must be readable by them."""
    umask = current_umask()
    folder = Path(folder)
    for entry in [folder, *folder.rglob("*")]:
        if not entry.is_symlink():
            os.chmod(entry, (0o777 if entry.is_dir() else 0o666) & ~umask)


def replace_folder(staging, final):
    """Move a finished `staging` folder to `final`, keeping the old `final` until the new one is there.

    A kill between the two renames leaves the old folder as `.NAME.previous` and no `NAME`; the next
    call removes it.
    """
    staging, final = Path(staging), Path(final)
    previous = final.with_name(f".{final.name}.previous")
    shutil.rmtree(previous, ignore_errors=True)
    if final.exists():
        os.replace(final, previous)
    os.replace(staging, final)
    shutil.rmtree(previous, ignore_errors=True)


@contextlib.contextmanager
def staged_folder(final):
    """Yield a staging folder for `final`; on success it replaces `final` as a whole, on error it is removed."""
    staging = make_staging_folder(final)
    try:
        yield staging
        replace_folder(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
