"""The cross-cutting file-system helpers of :mod:`labelaudit.fsutil`."""

import os

import pytest

from labelaudit import fsutil


@pytest.fixture
def mask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_atomic_write_gives_the_usual_mode_without_touching_the_mask(mask_027, tmp_path, monkeypatch):
    """A threaded server must not see the process's mask change under it while another thread creates a file."""
    monkeypatch.setattr(os, "umask", lambda mask: pytest.fail("atomic_write read or set the umask"))
    path = fsutil.atomic_write(tmp_path / "a.csv", lambda fh: fh.write("x\n"))
    assert path.read_text() == "x\n" and (path.stat().st_mode & 0o777) == 0o640
    binary = fsutil.atomic_write(tmp_path / "b.bin", lambda fh: fh.write(b"\x00\r\n"), binary=True)
    assert binary.read_bytes() == b"\x00\r\n" and (binary.stat().st_mode & 0o777) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.bin"]  # no temporary file left


def test_is_inside_on_disk_knows_a_folder_by_identity_under_another_spelling(tmp_path):
    """A case-insensitive file system spells one folder several ways; names alone miss it, the inode does not.
    An unresolved symbolic link is another spelling of the same folder, on any file system."""
    from labelaudit.fsutil import is_inside, is_inside_on_disk

    root = tmp_path / "data"
    (root / "cat").mkdir(parents=True)
    alias = tmp_path / "Data"
    alias.symlink_to(root, target_is_directory=True)
    for path in (alias, alias / "cat", alias / "not-yet" / "deeper"):
        assert not is_inside(path, root) and is_inside_on_disk(path, root), path
    assert is_inside_on_disk(root / "cat", root)
    assert not is_inside_on_disk(tmp_path / "other", root) and not is_inside_on_disk(tmp_path, root)
    assert not is_inside_on_disk(root / "cat", tmp_path / "missing")
