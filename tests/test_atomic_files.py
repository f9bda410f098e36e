"""eisv_io.atomic_files and eisv_io.staged_folders: files and folders replaced whole, with the umask's permissions,
never someone's files."""

import os
import stat

import pytest

from eisv_io.atomic_files import atomic_path, check_replaceable_folder, remove_stale_temporaries, write_text_atomic
from eisv_io.errors import ToolError, one_line
from eisv_io.staged_folders import current_umask, staged_folder


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_current_umask_reads_without_changing_it(umask_022):
    assert current_umask() == 0o022
    assert current_umask() == 0o022


def test_a_staged_folder_replaces_the_old_one_whole_with_0755(tmp_path, umask_022):
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with staged_folder(final) as staging:
        assert staging.parent == tmp_path and staging != final
        (staging / "new.txt").write_text("new")
        assert (final / "old.txt").exists()  # nothing visible until the end
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert stat.S_IMODE(final.stat().st_mode) == 0o755  # tempfile.mkdtemp alone gives 0700
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_failed_staging_leaves_the_old_folder(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_folder(final) as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("killed")
    assert sorted(p.name for p in final.iterdir()) == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_check_replaceable_folder(tmp_path):
    own = lambda folder: (folder / "marker").exists()  # noqa: E731
    assert check_replaceable_folder(tmp_path / "absent", own, "x") == tmp_path / "absent"
    (tmp_path / "empty").mkdir()
    check_replaceable_folder(tmp_path / "empty", own, "x")
    (tmp_path / "ours").mkdir()
    (tmp_path / "ours" / "marker").write_text("")
    check_replaceable_folder(tmp_path / "ours", own, "x")
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("")
    with pytest.raises(ToolError, match=r"theirs: folder is not empty \(notes.txt\) and is not an eisv thing"):
        check_replaceable_folder(tmp_path / "theirs", own, "an eisv thing")
    check_replaceable_folder(tmp_path / "theirs", own, "x", overwrite=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(ToolError, match="not a folder"):
        check_replaceable_folder(tmp_path / "file", own, "x", overwrite=True)


def test_files_are_atomic_and_stale_temporaries_are_removed(tmp_path, umask_022):
    path = tmp_path / "a.txt"
    write_text_atomic(path, "one")
    assert path.read_text() == "one" and stat.S_IMODE(path.stat().st_mode) == 0o644
    with pytest.raises(ValueError):
        with atomic_path(path) as temporary:
            temporary.write_text("half")
            raise ValueError
    assert path.read_text() == "one"
    (tmp_path / ".a.txt.tmp-12345").write_text("left by a killed writer")
    (tmp_path / ".b.txt.tmp-12345").write_text("another output's")
    assert remove_stale_temporaries(path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".b.txt.tmp-12345", "a.txt"]


def test_one_line():
    assert one_line(ToolError("x.wav: bad\nmore")) == "x.wav: bad"
    assert one_line(RuntimeError("Found no NVIDIA driver\nsee ...")) == "RuntimeError: Found no NVIDIA driver"
    assert one_line(KeyError()) == "KeyError"
