"""Folders built next to their destination and swapped in whole, with the umask's permissions.

The one home of these primitives, below every package that writes such folders: the converters of
`modeling_eisv` use them, and so do the tools, training, model cards and experiments. A kill leaves the old
folder or the new one, never half of one. `tempfile.mkdtemp` makes 0700 folders and `save_pretrained`
0600 weights (mkstemp): staged folders get the umask's permissions (0755 / 0644 under umask 022), so a
folder on a file system shared by several nodes is readable by all of them.
"""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


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


def make_staging_folder(final) -> Path:
    """An empty folder next to `final` to build it in, with the umask's permissions (not mkdtemp's 0700)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.staging-", dir=final.parent))
    os.chmod(staging, 0o777 & ~current_umask())
    return staging


def apply_umask(folder):
    """Give `folder` and everything below it the umask's permissions."""
    umask = current_umask()
    folder = Path(folder)
    for entry in [folder, *folder.rglob("*")]:
        if not entry.is_symlink():
            os.chmod(entry, (0o777 if entry.is_dir() else 0o666) & ~umask)


def _discard(path: Path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def replace_folder(staging, final):
    """Move a finished `staging` folder to `final`, keeping the old `final` (a folder, or a file replaced
    with --overwrite) until the new one is there.

    A kill between the two renames leaves the old one as `.NAME.previous` and no `NAME`; the next call
    removes it.
    """
    staging, final = Path(staging), Path(final)
    previous = final.with_name(f".{final.name}.previous")
    _discard(previous)
    if final.exists() or final.is_symlink():
        os.replace(final, previous)
    os.replace(staging, final)
    _discard(previous)


@contextlib.contextmanager
def staged_folder(final):
    """Yield a staging folder for `final`; on success it replaces `final` as a whole, on error it is removed."""
    staging = make_staging_folder(final)
    try:
        yield staging
        replace_folder(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
