"""Dataset discovery, image decoding and the decoded-image cache.

A dataset is a folder of images in one of two layouts:

* **class folders** -- ``root/<class name>/**/<image>``: the label of an image is the
  name of the first-level folder it lives under (at any depth below it);
* **labels CSV** -- a CSV with a header and the columns ``path`` and ``label``; paths
  are relative to ``root`` (absolute paths are accepted when they lie inside it).

Every image is decoded with Pillow to ``image_size x image_size`` RGB ``uint8``
(aspect ratio not kept, so nothing is cropped). A file or CSV row that cannot be
used never stops a load: it is listed in :attr:`LoadedDataset.skipped` with a
human-readable reason. Hidden files and folders (name starting with ``.``) are
ignored silently.

Decoded arrays can be cached in ``cache_dir``: the cache key depends on the image
files (relative path, size, modification time), the image size and
:data:`DECODER_VERSION`, not on the labels, so relabelling a CSV re-uses the cache.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import json
import os
import posixpath
import re
import stat
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError

from labelaudit.errors import DatasetError
from labelaudit.fsutil import atomic_write, is_inside, is_inside_on_disk
from labelaudit.progress import progress_bar

__all__ = [
    "DECODER_VERSION", "MAX_IMAGE_PIXELS", "DatasetError", "ImageDecodeError", "ImageTooLarge", "LoadedDataset",
    "load_dataset", "list_dataset", "decode_image", "cache_key", "UNREADABLE_COLUMNS", "escape_controls",
]

#: Bump whenever :func:`decode_image` produces different pixels or decodes other files; invalidates caches.
#: 2: JPEGs above MAX_IMAGE_PIXELS that decode at a reduced scale within it are read, not refused.
#: 3: 32-bit integer images (mode ``I``) whose values all lie in 0..255 are 8-bit data, not 16-bit.
DECODER_VERSION = 3

#: Images that would decode to more pixels than this are skipped as possible decompression
#: bombs (a JPEG counts at the reduced scale it is decoded at, so large photos pass; Pillow itself
#: refuses any image above twice this). Same value as Pillow's default warning threshold.
MAX_IMAGE_PIXELS = 89_478_485

SKIPPED_COLUMNS = ["path", "reason"]
#: Reasons of the :attr:`LoadedDataset.skipped` rows of a listed file that does not exist: a labels-CSV
#: row naming no file, a symbolic link to nothing (:attr:`LoadedDataset.n_missing_files` counts them).
MISSING_FILE_REASONS = ("file not found", "file not found (broken link)")
#: Columns of :attr:`LoadedDataset.unreadable`.
UNREADABLE_COLUMNS = ["path", "given_label", "reason"]

_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


class ImageDecodeError(Exception):
    """One image cannot be decoded; ``reason`` is a short human-readable explanation."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ImageTooLarge(ImageDecodeError):
    """A well-formed image that would decode to more than :data:`MAX_IMAGE_PIXELS` pixels: not decoded
    (a possible decompression bomb), but an image all the same, so an export keeps it with its label."""


@dataclass
class LoadedDataset:
    """Images and given labels of a dataset.

    Attributes
    ----------
    root : Path
        Absolute dataset root.
    paths : list of str, length N
        Image paths relative to ``root`` with POSIX separators, sorted.
    label_names : list of str, length N
        Given label (class name) of each image.
    images : numpy.ndarray, uint8, shape (N, S, S, 3)
        RGB pixels, ``S = image_size``.
    skipped : pandas.DataFrame
        Columns ``path`` and ``reason``: every file or CSV row not scanned, sorted by path.
    cache_hit : bool
        True when ``images`` came from the decode cache without decoding anything.
    images_file : Path or None
        The decode cache's ``.npy`` file holding exactly ``images`` (None without a cache),
        so later steps can memory-map it instead of writing another copy.
    unreadable : pandas.DataFrame
        Columns ``path, given_label, reason``: the labelled files that could not be decoded
        (also rows of ``skipped``), sorted by path; not the ``too_large`` ones.
    too_large : pandas.DataFrame
        Columns ``path, given_label, reason``: well-formed labelled images too large to decode
        (:class:`ImageTooLarge`; also rows of ``skipped``), sorted by path. They are images: an
        export keeps them with their given label.
    empty_classes : list of str
        Class folders holding no file at all (class-folder layout only), sorted.
    linked_folders : dict of str to int
        Folders reached through a symbolic link, not followed (class-folder layout only): their
        path relative to ``root`` (``"cat/"``) and how many files lie under them (capped at
        :data:`LINKED_FILES_LISTED`); each such file is also a ``skipped`` row.
    """

    root: Path
    paths: list[str]
    label_names: list[str]
    images: np.ndarray
    skipped: pd.DataFrame
    cache_hit: bool
    images_file: Path | None = None
    unreadable: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=UNREADABLE_COLUMNS, dtype=object))
    too_large: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=UNREADABLE_COLUMNS, dtype=object))
    empty_classes: list[str] = field(default_factory=list)
    linked_folders: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def n_missing_files(self) -> int:
        """Rows of ``skipped`` whose file does not exist (a labels-CSV row, a broken link); not decoded, so
        not in ``unreadable`` either (a file gone while decoding is counted there)."""
        missing = self.skipped["reason"].isin(MISSING_FILE_REASONS) & ~self.skipped["path"].isin(self.unreadable["path"])
        return int(missing.sum())


#: The ``skipped.csv`` reason of each file under a folder reached through a symbolic link.
LINKED_REASON = "in a folder reached through a symbolic link (not followed)"
#: At most this many files are listed under one linked folder (a link to ``/`` must not walk the disk).
LINKED_FILES_LISTED = 100_000


@dataclass
class _Discovery:
    """What discovery found, nothing decoded: candidates, skipped ``(path, reason)`` rows, empty class
    folders and the folders reached through a symbolic link (``{"cat/": number of files under it}``)."""

    candidates: list[_Candidate]
    skipped: list[tuple[str, str]]
    empty_classes: list[str] = field(default_factory=list)
    linked_folders: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Candidate:
    """A file to decode: relative POSIX path, given label and ``os.stat`` identity."""

    path: str
    label: str
    size: int
    mtime_ns: int


# --------------------------------------------------------------------------- decoding


def decode_image(path: str | os.PathLike, image_size: int) -> np.ndarray:
    """Decode one image file to RGB and squash it to ``image_size x image_size``.

    EXIF orientation is applied; transparency is composited onto white; 16-bit
    greyscale is scaled (not clipped) to 8 bit; GIFs and other multi-frame files
    give their first frame. Pillow's ``DecompressionBombWarning`` is not shown: images
    above :data:`MAX_IMAGE_PIXELS` are refused with a reason instead.

    Parameters
    ----------
    path : str or path-like
        Image file.
    image_size : int
        Output side length ``S``.

    Returns
    -------
    numpy.ndarray, uint8, shape (S, S, 3)

    Raises
    ------
    ImageDecodeError
        With a short reason, e.g. ``"empty file"``, ``"not an image (cannot identify
        image file)"``, ``"corrupt image: ..."``.
    """
    with _quiet_pillow():
        return _decode(path, image_size)


@contextlib.contextmanager
def _quiet_pillow() -> Iterator[None]:
    """Hide Pillow's ``DecompressionBombWarning`` (the pixel limit is checked by :func:`_open_image`).

    ``warnings.catch_warnings`` changes process-wide state: enter it once around a
    whole decoding run, never in the decoding threads.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def _decode(path: str | os.PathLike, image_size: int) -> np.ndarray:
    """:func:`decode_image` without touching the warning filters (safe on worker threads)."""
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                raise ImageDecodeError("empty file")
            img = _open_image(fh, image_size)
            try:
                rgb = _to_rgb(_apply_orientation(img), img.format)
            except ImageDecodeError:
                raise
            except Exception as exc:  # noqa: BLE001 -- one odd file must never stop a load
                raise ImageDecodeError(f"cannot decode image: {_message(exc)}") from None
    except ImageDecodeError:
        raise
    except FileNotFoundError:
        raise ImageDecodeError("file not found") from None
    except PermissionError:
        raise ImageDecodeError("unreadable (permission denied)") from None
    except IsADirectoryError:
        raise ImageDecodeError("not a file") from None
    except OSError as exc:
        raise ImageDecodeError(f"unreadable: {exc.strerror or exc}") from None
    try:
        return _resize(rgb, image_size)
    except Exception as exc:  # noqa: BLE001 -- one odd file must never stop a load
        raise ImageDecodeError(f"cannot decode image: {_message(exc)}") from None


def _open_image(fh, image_size: int) -> Image.Image:
    """Identify, size-check and fully load the first frame of the image in ``fh``."""
    try:
        img = Image.open(fh)
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image (cannot identify image file)") from None
    except Image.DecompressionBombError:
        raise ImageTooLarge("image too large to decode (possible decompression bomb)") from None
    except Exception as exc:  # noqa: BLE001 -- plugins raise anything on bad headers
        raise ImageDecodeError(f"corrupt image: {_message(exc)}") from None
    width, height = img.size
    if width == 0 or height == 0:
        raise ImageDecodeError("corrupt image: zero width or height")
    try:
        if img.format == "JPEG":  # decoded at 1/2 to 1/8 scale
            img.draft("RGB", (image_size, image_size))
    except Exception as exc:  # noqa: BLE001
        raise ImageDecodeError(f"corrupt image: {_message(exc)}") from None
    # a baseline JPEG's memory is that of the reduced scale (a 108-megapixel photo at 1/8 of it); a progressive
    # one holds its full-size coefficients while decoding, so it counts at full size
    decoded = width * height if img.info.get("progressive") else img.size[0] * img.size[1]
    if decoded > MAX_IMAGE_PIXELS:
        raise ImageTooLarge(
            f"image too large to decode ({width}x{height} px > {MAX_IMAGE_PIXELS} px; possible decompression bomb)"
        )
    try:
        img.load()  # decodes everything: detects truncated and corrupt data
    except MemoryError:
        raise ImageDecodeError("image too large to decode (out of memory)") from None
    except Exception as exc:  # noqa: BLE001
        raise ImageDecodeError(f"corrupt image: {_message(exc)}") from None
    return img


def _message(exc: BaseException) -> str:
    text = str(exc).strip()
    return text if text else type(exc).__name__


def _apply_orientation(img: Image.Image) -> Image.Image:
    """Rotate/flip per the EXIF orientation tag; a broken EXIF block is ignored."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 -- malformed EXIF must not lose a good image
        return img


def _to_rgb(img: Image.Image, file_format: str | None = None) -> Image.Image:
    """Convert any Pillow mode to RGB; transparency is composited onto white.

    ``file_format``: Pillow's name of the file's format. A 32-bit integer TIFF (mode ``I``) whose
    values all lie in 0..255 is 8-bit data. Other formats reach mode ``I`` from 16-bit samples (PNG
    before Pillow 10.4, PGM with a maximum above 255), so theirs stay 16-bit.
    """
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        eight_bit = mode == "I" and file_format == "TIFF"
        grey = _high_depth_to_uint8(np.asarray(img), is_float=mode == "F", eight_bit_if_fits=eight_bit)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode == "RGB":
        return img
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageDecodeError(f"unsupported image mode {mode}: {_message(exc)}") from None


def _high_depth_to_uint8(values: np.ndarray, *, is_float: bool, eight_bit_if_fits: bool = False) -> np.ndarray:
    """Scale high-bit-depth greyscale ``(H, W)`` to ``uint8`` ``(H, W)``.

    Integer data within 0..65535 (16-bit images) maps linearly onto 0..255, wider
    integer data is scaled by its maximum; with ``eight_bit_if_fits`` (32-bit integer
    images, mode ``I``, which also hold 8-bit data converted to it) data within 0..255 is
    taken as it is. Float data is taken as 0..1 when its maximum is at most 1, as 0..255
    when at most 255, else scaled by its maximum. Negative and non-finite values become 0.
    """
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    values = np.clip(values, 0.0, None)
    peak = float(values.max(initial=0.0))
    if is_float:
        scale = 255.0 if peak <= 1.0 else (1.0 if peak <= 255.0 else 255.0 / peak)
    elif eight_bit_if_fits and peak <= 255.0:
        scale = 1.0
    else:
        scale = 255.0 / 65535.0 if peak <= 65535.0 else 255.0 / peak
    return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)


def _resize(img: Image.Image, image_size: int) -> np.ndarray:
    """Squash ``img`` to ``(image_size, image_size, 3)`` uint8 with Lanczos filtering."""
    if img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.array(img, dtype=np.uint8, copy=True).reshape(image_size, image_size, 3)


# -------------------------------------------------------------------------- discovery


#: The ``skipped.csv`` reason of a hidden image or folder in a class folder (not scanned).
HIDDEN_REASON = "hidden (name starts with '.'): not scanned"
#: Asked of each sub-folder of a class-folder dataset (its full path): a reason not to scan it
#: (it becomes the folder's ``skipped.csv`` row), or None to scan it.
FolderFilter = Callable[[str], "str | None"]



def _hidden_image(name: str) -> bool:
    """True for a hidden file named like an image Pillow reads, except AppleDouble companions (``._name.jpg``)."""
    return not name.startswith("._") and has_image_suffix(name)


def has_image_suffix(name: str | os.PathLike) -> bool:
    """Whether ``name`` ends like a format Pillow can open (``.jpg``, ``.png``, ...; not the save-only ``.pdf``).

    Read from Pillow's registry at each call (a dictionary lookup), so plugins registered
    later count too.
    """
    suffix = os.path.splitext(os.fspath(name))[1].lower()
    return Image.registered_extensions().get(suffix) in Image.OPEN


def _holds_any(folder: str, paths: set[str]) -> bool:
    """True when one of ``paths`` (resolved) lies inside ``folder`` (resolved)."""
    prefix = folder.rstrip(os.sep) + os.sep
    return any(path.startswith(prefix) for path in paths)


def _skip(skipped: list[tuple[str, str]], path: str, reason: str) -> None:
    skipped.append((escape_controls(_printable(path)), reason))


def _printable(path: str) -> str:
    """``path`` with undecodable file-name bytes replaced, so it can be stored as UTF-8."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def escape_controls(text: str) -> str:
    """``text`` with control characters (NUL, newline, tab, ...) written as ``\\xNN``, for a report.

    Idempotent: an escaped text has no control character left. Used for the paths of
    ``skipped.csv``; the paths that key samples (``scores.csv``, the database) stay as they are.
    """
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", text)


def _stat_candidate(
    full: str, rel: str, label: str, real_root: str, skipped: list[tuple[str, str]]
) -> _Candidate | None:
    """Check that ``full`` is a regular file inside the root; skip it with a reason if not."""
    if rel != _printable(rel):
        _skip(skipped, rel, "file name is not valid UTF-8")
        return None
    if not is_inside(os.path.realpath(full), real_root):
        _skip(skipped, rel, "path resolves outside the dataset root (symbolic link)")
        return None
    try:
        st = os.stat(full)
    except FileNotFoundError:
        reason = MISSING_FILE_REASONS[1] if os.path.islink(full) else MISSING_FILE_REASONS[0]
        _skip(skipped, rel, reason)
        return None
    except OSError as exc:
        _skip(skipped, rel, f"unreadable: {exc.strerror or exc}")
        return None
    if stat.S_ISDIR(st.st_mode):
        _skip(skipped, rel, "not a file (a folder)")
        return None
    if not stat.S_ISREG(st.st_mode):
        _skip(skipped, rel, "not a regular file")
        return None
    return _Candidate(rel, label, st.st_size, st.st_mtime_ns)


def _discover_folders(
    root: Path, *, exclude: Sequence[Path] = (), skip_folder: FolderFilter | None = None
) -> _Discovery:
    """Walk the class-folder layout ``root/<class>/**/<image>``.

    Returns the candidates (unsorted), the ``(path, reason)`` rows skipped, the sorted
    names of the class folders that hold no file and the folders reached through a
    symbolic link: not followed (the dataset's images stay inside its folder, where the
    review app serves them from), but every file under one gets a skipped row
    (:data:`LINKED_REASON`), so a linked class is counted, not one row. ``exclude`` (resolved files and
    folders, e.g. a scan directory's own) is ignored; a folder holding nothing but excluded
    entries is not an empty class. Hidden entries (names starting with ``.``) are not
    scanned: in a class folder a hidden folder and a hidden file named like an image get a
    skipped row (:data:`HIDDEN_REASON`); the rest (``.DS_Store``, AppleDouble ``._*`` files,
    ``.git`` and other tool folders at the top) is passed over without one. A folder for
    which ``skip_folder`` gives a reason is not scanned and gets a skipped row with it.
    """
    real_root = str(root)
    excluded = {str(path) for path in exclude}
    candidates: list[_Candidate] = []
    skipped: list[tuple[str, str]] = []
    class_dirs: set[str] = set()
    with_files: set[str] = set()
    with_excluded: set[str] = set()
    linked: dict[str, int] = {}

    def on_error(exc: OSError) -> None:
        where = exc.filename or ""
        if os.path.abspath(where) == real_root:
            raise DatasetError(f"cannot read the dataset folder {root}: {exc.strerror or exc}")
        rel = Path(where).relative_to(root).as_posix()
        _skip(skipped, rel + "/", f"unreadable folder: {exc.strerror or exc}")

    for dirpath, dirnames, filenames in os.walk(real_root, onerror=on_error):
        rel_dir = PurePosixPath(Path(dirpath).relative_to(root).as_posix())
        kept_dirs = []
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if excluded and (os.path.realpath(full) in excluded
                             or name.startswith(".") and _holds_any(os.path.realpath(full), excluded)):
                with_excluded.add(rel_dir.parts[0] if rel_dir.parts else name)
                continue
            if name.startswith("."):
                if rel_dir != PurePosixPath("."):
                    _skip(skipped, (rel_dir / name).as_posix() + "/", HIDDEN_REASON)
                continue
            if os.path.islink(full):
                rel_link = (rel_dir / name).as_posix()
                target = os.path.realpath(full)
                if is_inside_on_disk(target, real_root) or is_inside_on_disk(real_root, target):  # scanned
                    _skip(skipped, rel_link + "/", "symbolic link to a folder (not followed): it leads into "
                          "the dataset folder, or to a folder holding it")  # (or are all of it): one row
                else:
                    linked[rel_link + "/"] = _skip_linked_files(full, rel_link, skipped)
                continue
            reason = skip_folder(full) if skip_folder is not None else None
            if reason is not None and not _holds_any(os.path.realpath(full), excluded):
                _skip(skipped, (rel_dir / name).as_posix() + "/", reason)
                continue
            kept_dirs.append(name)
        dirnames[:] = sorted(kept_dirs)
        if rel_dir == PurePosixPath("."):
            class_dirs.update(kept_dirs)
        for name in filenames:
            if excluded and os.path.join(dirpath, name) in excluded:  # walked folders are real paths
                with_excluded.update(rel_dir.parts[:1])
                continue
            if name.startswith("."):
                if rel_dir != PurePosixPath(".") and _hidden_image(name):
                    _skip(skipped, (rel_dir / name).as_posix(), HIDDEN_REASON)
                continue
            rel = (rel_dir / name).as_posix()
            if rel_dir == PurePosixPath("."):
                _skip(skipped, rel, "not inside a class folder")
                continue
            label = rel_dir.parts[0]
            with_files.add(label)
            found = _stat_candidate(os.path.join(dirpath, name), rel, label, real_root, skipped)
            if found is not None:
                candidates.append(found)
    # a class-level folder that will hold the scan's own files (its --out, made empty just now) is no empty class
    empty = {c for c in class_dirs - with_files - with_excluded
             if not _holds_any(os.path.realpath(os.path.join(real_root, c)), excluded)}
    return _Discovery(candidates, skipped, sorted(empty), linked)


def _skip_linked_files(link: str, rel_link: str, skipped: list[tuple[str, str]]) -> int:
    """Skip every visible file under the folder link ``link`` (``rel_link`` from the root); how many.

    The link itself is followed to list them, links below it are not; at most
    :data:`LINKED_FILES_LISTED` files are listed. A link to nothing or to an unreadable folder
    gets one row of its own.
    """
    n = 0
    for dirpath, dirnames, filenames in os.walk(link):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        sub = Path(dirpath).relative_to(link).as_posix()
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if n == LINKED_FILES_LISTED:
                return n
            _skip(skipped, posixpath.normpath(posixpath.join(rel_link, sub, name)), LINKED_REASON)
            n += 1
    if n == 0:
        _skip(skipped, rel_link + "/", "symbolic link to a folder (not followed), no file under it")
    return n


def _csv_encodings(labels_csv: Path) -> tuple[str, ...]:
    """Encodings to try on ``labels_csv``: UTF-16/32 when it starts with their byte-order mark.

    Raises
    ------
    DatasetError
        The file looks like UTF-16/32 without a byte-order mark (a NUL byte in every
        second or fourth place).
    """
    with open(labels_csv, "rb") as fh:
        head = fh.read(4096)
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return ("utf-32",)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return ("utf-16",)
    if head and head.count(b"\x00") * 3 >= len(head):  # ASCII text in UTF-16: every other byte is NUL
        raise DatasetError(
            f"labels CSV {labels_csv} holds NUL bytes: it looks UTF-16 or UTF-32 encoded without a "
            "byte-order mark; save it as UTF-8 (or UTF-16 with a byte-order mark)")
    return ("utf-8-sig", "cp1252", "latin-1")


def csv_parse_problem(exc: Exception) -> str:
    """A CSV reader's error as one line (pandas' tokenizer message ends in a newline).

    Parameters
    ----------
    exc : Exception
        What ``pandas.read_csv`` raised.

    Returns
    -------
    str
        Its message with every run of white space (newlines too) made one space, stripped.
    """
    return " ".join(str(exc).split())


def _read_labels_csv(labels_csv: Path) -> pd.DataFrame:
    """Read the ``path`` and ``label`` columns of a labels CSV, all values as strings."""
    if not labels_csv.is_file():
        raise DatasetError(f"labels CSV not found: {labels_csv}")
    table = None
    for encoding in _csv_encodings(labels_csv):
        try:
            table = pd.read_csv(labels_csv, dtype=str, keep_default_na=False, encoding=encoding)
            break
        except UnicodeDecodeError:
            continue
        except pd.errors.EmptyDataError:
            raise DatasetError(f"labels CSV {labels_csv} is empty; it needs a header with columns 'path' and 'label'") from None
        except (pd.errors.ParserError, ValueError) as exc:
            raise DatasetError(f"labels CSV {labels_csv} cannot be parsed: {csv_parse_problem(exc)}") from None
    if table is None:  # only a UTF-16/32 file can fail every encoding (latin-1 decodes any bytes)
        raise DatasetError(f"labels CSV {labels_csv} starts with a UTF-16/32 byte-order mark but does not "
                           "decode as such; save it as UTF-8")
    by_name = {str(col).strip().lower(): col for col in table.columns}
    missing = [name for name in ("path", "label") if name not in by_name]
    if missing:
        found = ", ".join(repr(str(col)) for col in table.columns) or "none"
        raise DatasetError(
            f"labels CSV {labels_csv} must have a header with columns 'path' and 'label'; "
            f"missing {', '.join(repr(m) for m in missing)}; columns found: {found}"
        )
    return pd.DataFrame({"path": table[by_name["path"]], "label": table[by_name["label"]]})


def _csv_relative_path(raw: str, root: Path) -> tuple[str | None, str | None]:
    """Normalise one CSV path to a POSIX path relative to ``root``.

    Returns ``(relative path, None)`` or ``(None, reason it is rejected)``.
    """
    text = raw
    if "\0" in text:
        return None, "invalid path (contains a NUL character)"
    if "\\" in text and not (root / text).exists():
        text = text.replace("\\", "/")
    if os.path.isabs(text):
        absolute = os.path.abspath(text)
        if not is_inside(absolute, str(root)):
            # the root may have been given through a symbolic link (e.g. /tmp on macOS)
            head, tail = os.path.split(absolute)
            absolute = os.path.join(os.path.realpath(head), tail)
        if not is_inside(absolute, str(root)) or absolute == str(root):
            return None, "absolute path outside the dataset root"
        text = os.path.relpath(absolute, root)
        text = text.replace(os.sep, "/")
    norm = posixpath.normpath(text)
    if norm in (".", "") or norm == ".." or norm.startswith("../") or norm.startswith("/"):
        return None, "path escapes the dataset root"
    return norm, None


def _csv_rows(root: Path, table: pd.DataFrame, skipped: list[tuple[str, str]]) -> list[tuple[int, str, str]]:
    """``(CSV line, relative path, label)`` of the rows whose path is usable; the others are skipped."""
    rows: list[tuple[int, str, str]] = []
    for row_number, (raw_path, raw_label) in enumerate(zip(table["path"], table["label"]), start=2):
        raw_path = raw_path if "\0" not in raw_path and (root / raw_path).is_file() else raw_path.strip()
        if not raw_path:
            _skip(skipped, "", f"empty path (CSV line {row_number})")
            continue
        rel, problem = _csv_relative_path(raw_path, root)
        if rel is None:
            _skip(skipped, raw_path, problem or "invalid path")
            continue
        rows.append((row_number, rel, raw_label.strip()))
    return rows


def _duplicate_reason(label: str, first_line: int, first_label: str) -> str:
    """Why a second row of a path is skipped, naming a label that differs from the one used."""
    if not label:
        return f"duplicate path with an empty label (labelled {first_label!r} on CSV line {first_line})"
    if label != first_label:
        return (f"duplicate path with a different label: this row says {label!r}, CSV line {first_line} "
                f"(used) says {first_label!r}")
    return f"duplicate path (first listed on CSV line {first_line})"


def _discover_csv(root: Path, labels_csv: Path) -> tuple[list[_Candidate], list[tuple[str, str]]]:
    """Read a labels CSV; returns the candidates (unsorted) and the skipped rows.

    The first row of a path with a non-empty label gives its label; every other row of
    that path (an empty-label one too) is skipped as a duplicate.
    """
    table = _read_labels_csv(labels_csv)
    if table.empty:
        raise DatasetError(f"labels CSV {labels_csv} has a header but no rows")
    candidates: list[_Candidate] = []
    skipped: list[tuple[str, str]] = []
    rows = _csv_rows(root, table, skipped)
    first: dict[str, tuple[int, str]] = {}
    for row_number, rel, label in rows:
        if label:
            first.setdefault(rel, (row_number, label))
    for row_number, rel, label in rows:
        if rel not in first:
            _skip(skipped, rel, "empty label")
        elif first[rel][0] != row_number:
            _skip(skipped, rel, _duplicate_reason(label, *first[rel]))
        else:
            found = _stat_candidate(str(root / rel), rel, label, str(root), skipped)
            if found is not None:
                candidates.append(found)
    return candidates, skipped


# ------------------------------------------------------------------------------ cache


def cache_key(candidates: Iterable[tuple[str, int, int]], image_size: int) -> str:
    """SHA-256 of the decoded-image inputs.

    Parameters
    ----------
    candidates : iterable of (str, int, int)
        ``(relative path, size in bytes, mtime in ns)`` of every file to decode.
    image_size : int
        Output side length.

    Labels are not part of the key: relabelling keeps the cache valid.
    """
    digest = hashlib.sha256(f"labelaudit-decoded\0v{DECODER_VERSION}\0{int(image_size)}\n".encode())
    for path, size, mtime_ns in sorted(candidates):
        digest.update(path.encode("utf-8", "surrogateescape") + f"\0{size}\0{mtime_ns}\n".encode())
    return digest.hexdigest()


def _cache_files(cache_dir: Path, key: str) -> tuple[Path, Path]:
    return cache_dir / f"decoded-{key}.npy", cache_dir / f"decoded-{key}.json"


def _read_cache(cache_dir: Path, key: str, image_size: int, known: set[str]) -> _Decoded | None:
    """Kept paths, decode failures and images of a cache entry; None if absent or invalid."""
    array_file, meta_file = _cache_files(cache_dir, key)
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        paths = [str(p) for p in meta["paths"]]
        failures = [(str(p), str(r)) for p, r in meta["failures"]]
        too_large = {str(p) for p in meta.get("too_large", [])}
        if meta.get("decoder_version") != DECODER_VERSION or meta.get("image_size") != image_size:
            return None
        if not set(paths) <= known or not {p for p, _ in failures} <= known:
            return None
        images = np.load(array_file, allow_pickle=False)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if images.dtype != np.uint8 or images.shape != (len(paths), image_size, image_size, 3):
        return None
    return _Decoded(paths, failures, too_large, images)


def _write_cache(cache_dir: Path, key: str, image_size: int, decoded: _Decoded) -> bool:
    """Store a cache entry (array first, then the sidecar that makes it valid); False if it failed."""
    array_file, meta_file = _cache_files(cache_dir, key)
    images = decoded.images
    meta = {
        "decoder_version": DECODER_VERSION, "image_size": image_size, "key": key,
        "paths": list(decoded.paths), "failures": [list(f) for f in decoded.failures],
        "too_large": sorted(decoded.too_large),
    }
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(array_file, lambda fh: np.save(fh, images, allow_pickle=False), binary=True)
        atomic_write(meta_file, lambda fh: fh.write(json.dumps(meta)))
    except OSError as exc:
        warnings.warn(f"could not write the decoded-image cache in {cache_dir}: {exc}", stacklevel=3)
        return False
    return True


# ---------------------------------------------------------------------------- loading


def _ordered_map(fn: Callable, items: Sequence, workers: int) -> Iterator:
    """``map(fn, items)`` on a thread pool, in order, with a bounded number in flight."""
    if workers == 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="labelaudit-decode") as pool:
        pending: deque[Future] = deque()
        feed = iter(items)
        for item in feed:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 4 * workers:
                break
        while pending:
            yield pending.popleft().result()
            for item in feed:
                pending.append(pool.submit(fn, item))
                break


@dataclass
class _Decoded:
    """What decoding a dataset's files gave (fresh or from the cache).

    ``paths`` (K) decoded into ``images`` (K, S, S, 3) uint8; ``failures``: ``(path, reason)`` of every
    file not decoded; ``too_large``: the paths among them that are well-formed images too large to
    decode (:class:`ImageTooLarge`).
    """

    paths: list[str]
    failures: list[tuple[str, str]]
    too_large: set[str]
    images: np.ndarray


def _decode_all(root: Path, paths: Sequence[str], image_size: int, *, workers: int, progress: bool) -> _Decoded:
    """Decode ``paths`` on ``workers`` threads, in order."""

    def decode(rel: str) -> np.ndarray | ImageDecodeError:
        try:
            return _decode(root / rel, image_size)
        except ImageDecodeError as exc:
            return exc

    buffer = np.empty((len(paths), image_size, image_size, 3), dtype=np.uint8)
    kept: list[str] = []
    failures: list[tuple[str, str]] = []
    too_large: set[str] = set()
    with _quiet_pillow(), progress_bar(total=len(paths), desc="decoding", unit="img", enabled=progress) as bar:
        for rel, result in zip(paths, _ordered_map(decode, paths, workers)):
            if isinstance(result, ImageDecodeError):
                failures.append((rel, result.reason))
                if isinstance(result, ImageTooLarge):
                    too_large.add(rel)
            else:
                buffer[len(kept)] = result
                kept.append(rel)
            bar.update(1)
    images = buffer if len(kept) == len(paths) else buffer[: len(kept)].copy()
    return _Decoded(kept, failures, too_large, images)


def _skipped_frame(rows: Iterable[tuple[str, str]]) -> pd.DataFrame:
    """``(path, reason)`` rows as a DataFrame sorted by path (stable)."""
    frame = pd.DataFrame(list(rows), columns=SKIPPED_COLUMNS, dtype=object)
    return frame.sort_values("path", kind="stable").reset_index(drop=True)


def _resolve_root(root: str | os.PathLike) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise DatasetError(f"dataset folder not found: {path}")
    if not path.is_dir():
        raise DatasetError(f"dataset root is not a folder: {path}")
    return path.resolve()


def load_dataset(
    root: str | os.PathLike,
    *,
    labels_csv: str | os.PathLike | None = None,
    image_size: int = 32,
    workers: int = 0,
    cache_dir: str | os.PathLike | None = None,
    exclude: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    skip_folder: FolderFilter | None = None,
    progress: bool = True,
) -> LoadedDataset:
    """Discover, decode and (optionally) cache every image of a dataset.

    Parameters
    ----------
    root : str or path-like
        Dataset folder. Without ``labels_csv`` it must hold class folders
        ``root/<class name>/**/<image>``.
    labels_csv : str or path-like, optional
        CSV with header columns ``path`` (relative to ``root``) and ``label``.
    image_size : int
        Images are squashed to ``image_size x image_size`` RGB.
    workers : int
        Decoding threads; 0 means one per CPU core.
    cache_dir : str or path-like, optional
        Folder of the decoded-image cache (``decoded-<key>.npy`` + ``.json``); never
        scanned as part of the dataset.
    exclude : path-like or sequence of path-likes, optional
        Files and folders left out of the class-folder discovery (e.g. the scan
        directory's own files, :meth:`labelaudit.scandir.ScanDir.own_paths`, when it lies
        inside the dataset root: in a class folder, or the root itself).
    skip_folder : callable, optional
        Asked of every sub-folder of a class-folder dataset (its full path, a str): a reason
        not to scan it (a ``skipped`` row), or None. The scanner passes
        :func:`labelaudit.scandir.other_scan_reason`, so another scan's folder is no class;
        without a filter every folder is read as data, a scan folder inside ``root`` included
        (pass the same filter to list the files as a scan does).
    progress : bool
        Show a tqdm progress bar on stderr while decoding.

    Returns
    -------
    LoadedDataset
        Samples sorted by relative path; ``images`` has shape ``(N, S, S, 3)``.

    Raises
    ------
    DatasetError
        If ``root`` or ``labels_csv`` is missing, the CSV lacks the ``path``/``label``
        columns, or no image at all could be loaded.
    """
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    root_path = _resolve_root(root)
    cache_path = Path(cache_dir).expanduser().resolve() if cache_dir is not None else None
    found = _discover(root_path, labels_csv, [cache_path, *_paths(exclude)], skip_folder)
    candidates, skipped = found.candidates, found.skipped
    label_of = {c.path: c.label for c in candidates}
    all_paths = [c.path for c in candidates]

    cached = None
    cached_file = None
    if cache_path is not None:
        key = cache_key(((c.path, c.size, c.mtime_ns) for c in candidates), image_size)
        cached = _read_cache(cache_path, key, image_size, set(all_paths))
    if cached is not None:
        decoded = cached
        cached_file = _cache_files(cache_path, key)[0]
    else:
        n_workers = workers or os.cpu_count() or 1
        decoded = _decode_all(root_path, all_paths, image_size, workers=n_workers, progress=progress)
        if cache_path is not None and _write_cache(cache_path, key, image_size, decoded):
            cached_file = _cache_files(cache_path, key)[0]
    if not decoded.paths:
        raise DatasetError(_nothing_loaded(root_path, decoded.failures))
    undecodable = [f for f in decoded.failures if f[0] not in decoded.too_large]
    return LoadedDataset(
        root=root_path,
        paths=list(decoded.paths),
        label_names=[label_of[p] for p in decoded.paths],
        images=decoded.images,
        skipped=_skipped_frame(skipped + list(decoded.failures)),
        cache_hit=cached is not None,
        images_file=cached_file,
        unreadable=_unreadable_frame(undecodable, label_of),
        too_large=_unreadable_frame([f for f in decoded.failures if f[0] in decoded.too_large], label_of),
        empty_classes=found.empty_classes,
        linked_folders=found.linked_folders,
    )


def _paths(exclude) -> list:
    """``exclude`` of :func:`load_dataset` as a list (one path, several, or none)."""
    if exclude is None:
        return []
    return [exclude] if isinstance(exclude, (str, os.PathLike)) else list(exclude)


def _discover(root_path: Path, labels_csv, exclude: Sequence, skip_folder: FolderFilter | None = None) -> _Discovery:
    """Candidates sorted by path, skipped rows, empty class folders and linked folders (nothing decoded).

    Raises
    ------
    DatasetError
        No usable file or CSV row.
    """
    if labels_csv is not None:
        found = _Discovery(*_discover_csv(root_path, Path(labels_csv).expanduser()))
    else:
        excluded = [Path(p).expanduser().resolve() for p in exclude if p is not None]
        found = _discover_folders(root_path, exclude=excluded, skip_folder=skip_folder)
    found.candidates.sort(key=lambda c: c.path)
    if not found.candidates:
        raise DatasetError(_nothing_found(root_path, labels_csv, found.skipped))
    return found


def list_dataset(root: str | os.PathLike, *, labels_csv: str | os.PathLike | None = None,
                 exclude: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
                 skip_folder: FolderFilter | None = None) -> LoadedDataset:
    """The files and given labels of a dataset, listed without decoding any image.

    For scans from embeddings or predicted probabilities (:mod:`labelaudit.data.arrays`):
    the files need not be images. Every listed file counts (none is skipped as
    undecodable), in the scan's file order: relative POSIX paths, sorted.

    Parameters
    ----------
    root, labels_csv, exclude, skip_folder
        As for :func:`load_dataset`.

    Returns
    -------
    LoadedDataset
        ``images`` is an empty array of shape (N, 0, 0, 3); ``unreadable`` is empty.

    Raises
    ------
    DatasetError
        ``root`` or ``labels_csv`` is missing or unusable, or lists no file.
    """
    root_path = _resolve_root(root)
    found = _discover(root_path, labels_csv, _paths(exclude), skip_folder)
    candidates = found.candidates
    return LoadedDataset(
        root=root_path, paths=[c.path for c in candidates], label_names=[c.label for c in candidates],
        images=np.zeros((len(candidates), 0, 0, 3), np.uint8), skipped=_skipped_frame(found.skipped),
        cache_hit=False, empty_classes=found.empty_classes, linked_folders=found.linked_folders,
    )


def _unreadable_frame(failures: Sequence[tuple[str, str]], label_of: dict[str, str]) -> pd.DataFrame:
    """Decode failures as ``path, given_label, reason`` rows sorted by path."""
    frame = pd.DataFrame([(path, label_of[path], reason) for path, reason in failures],
                         columns=UNREADABLE_COLUMNS, dtype=object)
    return frame.sort_values("path", kind="stable").reset_index(drop=True)


def _examples(rows: Sequence[tuple[str, str]], limit: int = 3) -> str:
    return "; ".join(f"{path!r}: {reason}" for path, reason in rows[:limit])


def _nothing_found(root: Path, labels_csv, skipped: Sequence[tuple[str, str]]) -> str:
    if labels_csv is not None:
        message = f"no usable rows in labels CSV {labels_csv} (paths relative to {root})"
    else:
        loose = sum(1 for _, reason in skipped if reason == "not inside a class folder")
        if loose:
            return (f"{loose} image file{'s' if loose != 1 else ''} in {root} but no class folders: "
                    f"put each image in '<root>/<class name>/' (the folder name is its label) or pass a "
                    f"labels CSV with columns path,label; e.g. {_examples(skipped)}")
        message = (
            f"no image files found in {root}; expected class folders "
            f"'<root>/<class name>/<image>' or pass a labels CSV"
        )
    if skipped:
        message += f"; {len(skipped)} skipped, e.g. {_examples(skipped)}"
    return message


def _nothing_loaded(root: Path, failures: Sequence[tuple[str, str]]) -> str:
    return (
        f"none of the {len(failures)} files in {root} could be decoded as an image; "
        f"e.g. {_examples(failures)}"
    )
