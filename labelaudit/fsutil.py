"""The one implementation of each cross-cutting file-system job.

* :func:`atomic_write` -- a file is either its old content or the complete new one, never
  half written (unique temporary name in the same folder, fsync, ``os.replace``);
* :func:`resolve_inside` / :func:`is_inside` -- path containment: a relative path from data
  (a CSV row, a database row, a URL) never leads outside its root, through ``..``, an
  absolute path or a symbolic link;
* :func:`is_inside_on_disk` / :func:`same_folder` -- one folder under several spellings (a link, a
  case-insensitive file system, ``~``), known by its identity on disk;
* :func:`place_file` -- a hard link (or a copy) of a file put at a new name, replacing what is
  there only once complete, never removing the source.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO, Any

from labelaudit.errors import UnsafePath

__all__ = ["atomic_write", "cut_to_bytes", "is_inside", "is_inside_on_disk", "place_file", "resolve_inside",
           "same_folder", "utf8_length"]


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[IO[Any]], Any],
    *,
    binary: bool = False,
    replace: bool = True,
) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then move it into place.

    Parameters
    ----------
    path : path-like
        Target file; its folder must exist.
    write : callable
        Writes the whole content to the open file object it is given.
    binary : bool
        Open the temporary file in binary mode (else UTF-8 text, ``newline=""``).
    replace : bool
        Replace an existing ``path``. When False an existing file is never clobbered,
        even one that appears while writing: :class:`FileExistsError` is raised.

    Returns
    -------
    Path
        ``path``.

    The temporary name is unique (two writers never share it), the data is fsynced before
    the rename, and the file gets the usual mode (``0o666 & ~umask``, applied by the system
    when the file is created: the process's mask is never read or changed, which a threaded
    server could not afford).
    """
    path = Path(path)
    if not replace and path.exists():
        raise FileExistsError(f"{path} exists")
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            _link_no_clobber(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _temporary_name(name: str) -> str:
    """A new hidden name for a file being written as ``name``: ``.<name>.<random>.tmp``, ``name``
    cut to 200 bytes, so that it stays within the file systems' 255 even for a long ``name``."""
    return f".{cut_to_bytes(name, 200)}.{secrets.token_hex(6)}.tmp"


def utf8_length(text: str) -> int:
    """Bytes of ``text`` as a file name (UTF-8; undecodable bytes of a name, ``surrogateescape``, count one each)."""
    return len(text.encode("utf-8", "surrogateescape"))


def cut_to_bytes(text: str, limit: int) -> str:
    """The longest beginning of ``text`` whose file-name bytes (:func:`utf8_length`) fit in ``limit``.

    Cut between characters, never inside one, so a name stays valid UTF-8 (and an undecodable byte
    of a name stays that byte).
    """
    if utf8_length(text) <= limit:
        return text
    cut, used = 0, 0
    for char in text:
        size = utf8_length(char)
        if used + size > limit:
            break
        cut, used = cut + 1, used + size
    return text[:cut]


def _create_temporary(path: Path) -> tuple[int, str]:
    """A new, empty, hidden file beside ``path`` with the usual mode: its descriptor and name."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = str(path.with_name(_temporary_name(path.name)))
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def _link_no_clobber(tmp: str, path: Path) -> None:
    try:
        os.link(tmp, path)  # fails if `path` appeared meanwhile
    except FileExistsError:
        raise FileExistsError(f"{path} exists") from None
    except OSError:  # file system without hard links
        if path.exists():
            raise FileExistsError(f"{path} exists") from None
        os.replace(tmp, path)


def is_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """True if ``path`` is ``root`` or lies below it (both taken as they are: resolve first)."""
    path, root = Path(path), Path(root)
    return path == root or root in path.parents


def is_inside_on_disk(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """:func:`is_inside` by name, or by identity: ``path`` or a folder above it that exists is ``root`` itself.

    A case-insensitive file system (macOS, Windows) spells one folder several ways
    (``/Data`` and ``/data``), which no comparison of names after ``realpath`` catches; the
    device and inode of the existing folders do.
    """
    path = Path(path)
    if is_inside(path, root):
        return True
    try:
        root_stat = os.stat(root)
    except OSError:
        return False
    for folder in (path, *path.parents):
        try:
            if os.path.samestat(os.stat(folder), root_stat):
                return True
        except OSError:  # not there (yet): a folder above it may be
            continue
    return False


def same_folder(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` are one folder (by identity where both exist, else by resolved name; ``~`` expanded)."""
    a, b = os.path.expanduser(a), os.path.expanduser(b)
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def resolve_inside(root: str | os.PathLike, rel: str, *, must_exist: bool = True) -> Path:
    """The real path of ``rel`` under ``root``, refusing anything that leaves ``root``.

    Parameters
    ----------
    root : path-like
        The folder ``rel`` must stay in (symbolic links in it are resolved first).
    rel : str
        A relative path (POSIX or native separators).
    must_exist : bool
        Also require a regular file there.

    Raises
    ------
    UnsafePath
        ``rel`` is empty, absolute (also ``C:...``), holds a NUL, or resolves (through
        ``..`` or a symbolic link) outside ``root``.
    FileNotFoundError
        ``must_exist`` and there is no regular file there.
    """
    real_root = Path(os.path.realpath(root))
    if (not rel or "\x00" in rel or PurePosixPath(rel).is_absolute() or Path(rel).is_absolute()
            or re.match(r"^[A-Za-z]:", rel)):
        raise UnsafePath(f"unsafe path {rel!r}")
    real = Path(os.path.realpath(real_root / rel))
    if not is_inside(real, real_root):
        raise UnsafePath(f"path {rel!r} leads outside {real_root}")
    if must_exist and not real.is_file():
        raise FileNotFoundError(f"no file at {real_root / rel}")
    return real


#: ``os.link`` errors after which the file is copied instead (another device, no hard links there).
_NO_LINK_ERRNOS = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES, errno.EOPNOTSUPP)


def place_file(src: Path, target: Path) -> bool:
    """Hard-link ``src`` at ``target`` (a copy where links fail), replacing what is there only when complete.

    The link or copy is made under a hidden temporary name beside ``target`` and renamed onto it,
    so ``src`` is never removed, not even when ``target`` is ``src`` itself under another spelling
    (renaming a link onto its own file changes nothing). A symbolic link at ``target`` is replaced,
    not followed.

    Parameters
    ----------
    src : Path
        The file to place (never removed).
    target : Path
        Where it goes; its folder must exist.

    Returns
    -------
    bool
        True for a hard link, False for a copy.
    """
    tmp = target.with_name(_temporary_name(target.name))
    try:
        try:
            os.link(src, tmp)
            linked = True
        except OSError as exc:
            if exc.errno not in _NO_LINK_ERRNOS:
                raise
            shutil.copy2(src, tmp)
            linked = False
        os.replace(tmp, target)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return linked
