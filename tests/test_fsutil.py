"""The cross-cutting file-system helpers of :mod:`labelaudit.fsutil`."""

import os
from pathlib import Path

import pytest

from labelaudit import fsutil


@pytest.fixture
def mask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_umask_is_read_without_setting_it(mask_027, monkeypatch):
    """A threaded server must not see the mask change under it while another thread creates a file."""
    calls = []
    real = os.umask
    monkeypatch.setattr(os, "umask", lambda mask: calls.append(mask) or real(mask))
    assert fsutil.umask() == 0o027
    assert calls == []


def test_umask_without_proc_sets_the_strictest_mask_and_restores_it(mask_027, monkeypatch):
    def no_proc(*args, **kwargs):
        raise FileNotFoundError("/proc/self/status")

    calls = []
    real = os.umask
    monkeypatch.setattr(fsutil, "open", no_proc, raising=False)
    monkeypatch.setattr(os, "umask", lambda mask: calls.append(mask) or real(mask))
    assert fsutil.umask() == 0o027
    assert calls == [0o077, 0o027]


def test_umask_is_read_past_a_process_name_that_is_not_ascii(mask_027, monkeypatch, tmp_path):
    """``Name:`` is the process's comm, any bytes (e.g. set by setproctitle): no fallback to setting the mask."""
    status = tmp_path / "status"
    status.write_bytes("Name:\tpr\u00fcfung\nUmask:\t0027\nState:\tR (running)\n".encode())
    real_open = open
    monkeypatch.setattr(fsutil, "open", lambda path, *args, **kwargs: real_open(status, *args, **kwargs),
                        raising=False)
    calls = []
    real = os.umask
    monkeypatch.setattr(os, "umask", lambda mask: calls.append(mask) or real(mask))
    assert fsutil.umask() == 0o027
    assert calls == []


def test_atomic_write_gives_the_usual_mode(mask_027, tmp_path):
    path = fsutil.atomic_write(tmp_path / "a.csv", lambda fh: fh.write("x\n"))
    assert path.read_text() == "x\n" and (path.stat().st_mode & 0o777) == 0o640


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
