"""The cleaned dataset: labels with the review's decisions applied.

:func:`cleaned_labels` turns a scan database into a ``path,label`` table (corrected
labels applied, samples marked unusable dropped); :func:`write_cleaned_labels` writes it
as CSV without ever replacing an existing file unless asked to, and
:func:`copy_to_folder` lays the cleaned dataset out as ``<dest>/<label>/<file>`` with
hard links (copies across devices). ``labelaudit export`` and the web app's download
both go through these functions.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd

from labelaudit.scandir import database as storage

__all__ = [
    "BASE_COLUMNS", "FULL_COLUMNS", "cleaned_labels", "export_summary", "to_csv_text",
    "write_cleaned_labels", "copy_to_folder", "FolderCopy", "resolve_image", "UnsafePath",
    "safe_folder_name", "check_folder_target",
]

BASE_COLUMNS = ["path", "label"]
FULL_COLUMNS = BASE_COLUMNS + ["original_label", "decision", "reviewer", "decided_at", "mislabel_score",
                               "suggested_label", "note"]


class UnsafePath(ValueError):
    """A sample path that leads outside the dataset root."""


def cleaned_labels(
    conn: sqlite3.Connection,
    *,
    full: bool = False,
    auto_accept_above: float | None = None,
    include_unusable: bool = False,
) -> pd.DataFrame:
    """The cleaned labels of a scan, one row per kept sample in scan order.

    Parameters
    ----------
    conn : sqlite3.Connection
        The scan's database (:func:`labelaudit.storage.connect`).
    full : bool
        Add the columns ``original_label, decision, reviewer, decided_at, mislabel_score,
        suggested_label, note``. ``decision`` is the action in force (``accept``,
        ``suggested``, ``relabel``, ``unusable``), ``auto`` for an applied unreviewed
        suggestion, or empty for an unreviewed sample.
    auto_accept_above : float, optional
        Unreviewed samples whose ``mislabel_score`` is strictly above this value take
        their suggested label.
    include_unusable : bool
        Keep the samples marked unusable, with an empty label (only sensible with
        ``full``, for an audit trail). By default they are dropped.

    Returns
    -------
    pandas.DataFrame
        Columns ``path, label`` (plus the full columns), ``path`` relative to the
        dataset root with POSIX separators.
    """
    df = storage.samples_with_decisions(conn)
    reviewed = df["action"].notna()
    decision = df["action"].where(reviewed, "")
    label = df["label"].where(df["label"].notna(), df["given_label"])
    if auto_accept_above is not None:
        auto = ~reviewed & (df["mislabel_score"] > float(auto_accept_above)) & (
            df["suggested_label"] != df["given_label"])
        label = label.where(~auto, df["suggested_label"])
        decision = decision.where(~auto, "auto")
    unusable = df["action"] == "unusable"
    label = label.where(~unusable, "")
    out = pd.DataFrame({"path": df["path"], "label": label.astype(str)})
    if full:
        out["original_label"] = df["given_label"]
        out["decision"] = decision.astype(str)
        out["reviewer"] = df["reviewer"].fillna("").astype(str)
        out["decided_at"] = df["decided_at"].fillna("").astype(str)
        out["mislabel_score"] = df["mislabel_score"].astype(float)
        out["suggested_label"] = df["suggested_label"]
        out["note"] = df["note"].fillna("").astype(str)
    if not include_unusable:
        out = out[~unusable.to_numpy()]
    return out.reset_index(drop=True)


def export_summary(conn: sqlite3.Connection, df: pd.DataFrame | None = None, **options) -> dict[str, int]:
    """Counts describing an export: kept, relabeled, dropped, auto-accepted, unreviewed."""
    full = cleaned_labels(conn, full=True, include_unusable=True, **options) if df is None else df
    dropped = full["decision"] == "unusable"
    kept = full[~dropped]
    return {
        "n_samples": int(len(full)),
        "n_kept": int(len(kept)),
        "n_dropped": int(dropped.sum()),
        "n_relabeled": int((kept["label"] != kept["original_label"]).sum()),
        "n_auto": int((full["decision"] == "auto").sum()),
        "n_reviewed": int(full["decision"].isin(["accept", "suggested", "relabel", "unusable"]).sum()),
    }


def to_csv_text(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, lineterminator="\n")


def write_cleaned_labels(df: pd.DataFrame, out: str | Path, *, force: bool = False) -> Path:
    """Write ``df`` as CSV to ``out``; an existing file is only replaced with ``force``.

    The text goes to a temporary file beside ``out`` first, so ``out`` is either the old
    file or the complete new one, never a truncated mix.
    """
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; use --force to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files; a CSV gets the usual mode
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(to_csv_text(df))
            fh.flush()
            os.fsync(fh.fileno())
        if force:
            os.replace(tmp, out)
        else:
            try:
                os.link(tmp, out)  # fails if `out` appeared meanwhile: never clobber
            except FileExistsError:
                raise FileExistsError(f"{out} exists; use --force to overwrite it") from None
            except OSError:  # file system without hard links
                if out.exists():
                    raise FileExistsError(f"{out} exists; use --force to overwrite it") from None
                os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def resolve_image(root: str | Path, rel: str) -> Path:
    """The real file of sample path ``rel`` under ``root``.

    Raises
    ------
    UnsafePath
        ``rel`` is absolute, holds a NUL, or resolves (through ``..`` or a symbolic
        link) to a place outside ``root``.
    FileNotFoundError
        No regular file there.
    """
    root = Path(os.path.realpath(root))
    if not rel or "\x00" in rel or PurePosixPath(rel).is_absolute() or Path(rel).is_absolute() \
            or re.match(r"^[A-Za-z]:", rel):
        raise UnsafePath(f"unsafe sample path {rel!r}")
    real = Path(os.path.realpath(root / rel))
    if real != root and root not in real.parents:
        raise UnsafePath(f"sample path {rel!r} leads outside the dataset root")
    if not real.is_file():
        raise FileNotFoundError(f"no image file at {root / rel}")
    return real


def safe_folder_name(label: str) -> str:
    """``label`` usable as one folder name (path separators and control characters replaced)."""
    name = re.sub(r"[/\\\x00-\x1f]", "_", label).strip()
    return name if name not in ("", ".", "..") else f"_{name}_"


@dataclass
class FolderCopy:
    dest: Path
    n_linked: int = 0
    n_copied: int = 0
    missing: list[str] | None = None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_folder_target(dest: str | Path, *, force: bool = False) -> None:
    """Raise ``FileExistsError`` unless ``dest`` may receive the class-folder copy."""
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise FileExistsError(f"{dest} exists and is not a folder")
    if dest.exists() and any(dest.iterdir()) and not force:
        raise FileExistsError(f"{dest} is not empty; use --force to write into it")


def copy_to_folder(df: pd.DataFrame, dataset_root: str | Path, dest: str | Path, *, force: bool = False) -> FolderCopy:
    """Lay the cleaned dataset out as ``dest/<label>/<file name>``.

    Files are hard-linked from the dataset (no extra space), or copied when ``dest`` is on
    another device or the file system has no hard links. ``dest`` must not exist or be
    empty unless ``force`` (then files of the same name are replaced; nothing is deleted).
    Two samples with the same file name and label get the sample's folder path prepended.
    Samples whose file is missing, or outside the dataset root, are listed in ``missing``.
    """
    dest = Path(dest)
    check_folder_target(dest, force=force)
    result = FolderCopy(dest=dest, missing=[])
    used: set[tuple[str, str]] = set()
    for rel, label in zip(df["path"], df["label"]):
        if label == "":
            continue
        try:
            src = resolve_image(dataset_root, rel)
        except (UnsafePath, FileNotFoundError):
            result.missing.append(rel)
            continue
        folder = safe_folder_name(label)
        name = PurePosixPath(rel).name
        if (folder, name) in used:
            name = safe_folder_name(str(PurePosixPath(rel).parent).replace("/", "__")) + "__" + name
        used.add((folder, name))
        target = dest / folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            target.unlink()
        try:
            os.link(src, target)
            result.n_linked += 1
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES, errno.EOPNOTSUPP):
                raise
            shutil.copy2(src, target)
            result.n_copied += 1
    return result
