"""The cleaned dataset: labels with the review's decisions applied.

:func:`cleaned_labels` turns a scan database into a ``path,label`` table (corrected
labels applied, samples marked unusable dropped, images the scan could not score kept
with their given label, or with the decision an earlier scan's review made); :func:`write_cleaned_labels` writes it
as CSV without ever replacing an existing file unless asked to, and
:func:`copy_to_folder` lays the cleaned dataset out as ``<dest>/<label>/<file>`` with
hard links (copies across devices). ``labelaudit export`` and the web app's download
both go through these functions.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import stat
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from labelaudit.errors import OverlappingFolders, ProtectedFile, UnsafePath
from labelaudit.fsutil import (atomic_write, cut_to_bytes, is_inside, is_inside_on_disk, place_file, resolve_inside,
                               utf8_length)
from labelaudit.review import samples_with_decisions, unscored_with_decisions
from labelaudit.review.actions import RESOLVED_ACTIONS, UNRESOLVED_ACTIONS, labels_in_force
from labelaudit.scandir.database import read_snapshot

__all__ = [
    "BASE_COLUMNS", "FULL_COLUMNS", "VOTE_COLUMNS", "cleaned_labels", "export_summary", "to_csv_text",
    "write_cleaned_labels", "copy_to_folder", "FolderCopy", "resolve_image", "UnsafePath",
    "safe_folder_name", "label_folders", "check_folder_target", "check_csv_target", "check_csv_writable",
    "check_csv_not_a_copy_folder", "dataset_files", "UNSCORED", "UNREADABLE",
]

BASE_COLUMNS = ["path", "label"]
FULL_COLUMNS = BASE_COLUMNS + ["original_label", "decision", "reviewer", "decided_at", "mislabel_score",
                               "suggested_label", "note"]
#: Added to the full export of a scan with several annotators per image (``original_label`` is their consensus).
VOTE_COLUMNS = ["consensus_label", "n_annotations", "agreement", "votes"]

#: ``decision`` of an image the scan did not score (a class too small for the folds).
UNSCORED = "unscored"
#: ``decision`` of a labelled file that could not be decoded (only with ``include_unusable``).
UNREADABLE = "unreadable"


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
        ``suggested``, ``relabel``, ``unusable``; ``unsure`` keeps the given label, as an
        unreviewed sample, and is never auto-accepted), ``auto`` for an applied unreviewed
        suggestion, empty for an unreviewed sample, ``unscored`` for an image the scan
        did not score (``note`` says why) and ``unreadable`` for a file that could not be
        decoded. A scan with several annotators per image adds :data:`VOTE_COLUMNS`:
        ``consensus_label`` (the scan's given label, which a decision overrides in ``label``),
        ``n_annotations``, ``agreement`` (share of the votes equal to the consensus) and
        ``votes`` (JSON object annotator -> label).
    auto_accept_above : float, optional
        Unreviewed samples whose ``mislabel_score`` is strictly above this value take
        their suggested label.
    include_unusable : bool
        Keep the samples marked unusable and the files that could not be decoded, with an
        empty label (only sensible with ``full``, for an audit trail). By default they are
        dropped.

    Returns
    -------
    pandas.DataFrame
        Columns ``path, label`` (plus the full columns), ``path`` relative to the
        dataset root with POSIX separators: the scanned samples in scan order, then the
        images the scan did not score (with their given label, or their decision in force from
        the review of an earlier scan), by path.
    """
    with read_snapshot(conn):  # samples, unscored images and votes of one state of the database
        scanned = _scanned_labels(conn, full=full, auto_accept_above=auto_accept_above,
                                  include_unusable=include_unusable)
        unscored = _unscored_labels(unscored_with_decisions(conn), full=full, include_unreadable=include_unusable)
        out = scanned if unscored.empty else pd.concat([scanned, unscored[scanned.columns]], ignore_index=True)
        return _with_votes(conn, out) if full else out


def _with_votes(conn: sqlite3.Connection, out: pd.DataFrame) -> pd.DataFrame:
    """``out`` with :data:`VOTE_COLUMNS` when the scan has annotators' votes (unchanged otherwise)."""
    votes = pd.read_sql_query("SELECT path, annotator, label FROM votes ORDER BY path, rowid", conn)
    if votes.empty:
        return out
    grouped = {p: dict(zip(g["annotator"], g["label"])) for p, g in votes.groupby("path", sort=False)}
    mine = [grouped.get(p, {}) for p in out["path"]]
    consensus = out["original_label"].astype(str)
    out = out.assign(consensus_label=consensus, n_annotations=[len(v) for v in mine])
    out["agreement"] = [sum(label == c for label in v.values()) / len(v) if v else np.nan
                        for v, c in zip(mine, consensus)]
    out["votes"] = [json.dumps(v, ensure_ascii=False) if v else "" for v in mine]
    return out


def _scanned_labels(conn: sqlite3.Connection, *, full: bool, auto_accept_above: float | None,
                    include_unusable: bool) -> pd.DataFrame:
    """:func:`cleaned_labels` of the scanned samples."""
    df = samples_with_decisions(conn)
    reviewed = df["action"].notna()  # unsure too: it keeps the given label (its label is NULL)
    decision = df["action"].where(reviewed, "")
    label = labels_in_force(df["action"], df["label"], df["given_label"])
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


def _unscored_labels(unscored: pd.DataFrame, *, full: bool, include_unreadable: bool) -> pd.DataFrame:
    """Rows of the images the scan did not score (:func:`~labelaudit.review.unscored_with_decisions`).

    A readable one keeps its given label, or the decision in force for it (made in an earlier
    scan that scored it): relabeled, dropped when marked unusable, as given when unsure. Files
    that could not be decoded are left out (an empty label with ``include_unreadable``).
    """
    readable = unscored["readable"].astype(bool).to_numpy()
    decided = unscored["action"].notna().to_numpy() & readable
    unusable = decided & (unscored["action"] == "unusable").to_numpy()
    label = np.where(decided, labels_in_force(unscored["action"], unscored["label"], unscored["given_label"]),
                     unscored["given_label"])
    label = np.where(readable & ~unusable, label, "").astype(str)
    out = pd.DataFrame({"path": unscored["path"].astype(str), "label": label})
    if full:
        out["original_label"] = unscored["given_label"].astype(str)
        out["decision"] = np.where(decided, unscored["action"], np.where(readable, UNSCORED, UNREADABLE))
        out["reviewer"] = np.where(decided, unscored["reviewer"], "")
        out["decided_at"] = np.where(decided, unscored["decided_at"], "")
        out["mislabel_score"] = np.nan
        out["suggested_label"] = ""
        out["note"] = np.where(decided, unscored["note"], unscored["reason"]).astype(str)
    keep = (readable & ~unusable) if not include_unreadable else np.ones(len(out), bool)
    return out[keep].reset_index(drop=True)


def export_summary(conn: sqlite3.Connection, df: pd.DataFrame | None = None, **options) -> dict[str, int]:
    """Counts describing an export.

    Returns
    -------
    dict
        ``n_samples`` (rows incl. dropped ones), ``n_kept``, ``n_dropped`` (marked unusable),
        ``n_relabeled``, ``n_auto``, ``n_reviewed``, ``n_unsure`` (waiting for a second
        opinion: kept with their given label), ``n_unscored`` (kept with their given
        label, not scored) and ``n_unreadable`` (files that could not be decoded, left out).
    """
    full = cleaned_labels(conn, full=True, include_unusable=True, **options) if df is None else df
    dropped = full["decision"] == "unusable"
    unreadable = full["decision"] == UNREADABLE
    kept = full[~dropped & ~unreadable]
    return {
        "n_samples": int(len(full) - unreadable.sum()),
        "n_kept": int(len(kept)),
        "n_dropped": int(dropped.sum()),
        "n_relabeled": int((kept["label"] != kept["original_label"]).sum()),
        "n_auto": int((full["decision"] == "auto").sum()),
        "n_reviewed": int(full["decision"].isin(RESOLVED_ACTIONS).sum()),
        "n_unsure": int(full["decision"].isin(UNRESOLVED_ACTIONS).sum()),
        "n_unscored": int((full["decision"] == UNSCORED).sum()),
        "n_unreadable": int(unreadable.sum()),
    }


def to_csv_text(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, lineterminator="\n")


def write_cleaned_labels(df: pd.DataFrame, out: str | Path, *, force: bool = False, parents: bool = False) -> Path:
    """Write ``df`` as CSV to ``out`` atomically (never a truncated file).

    Parameters
    ----------
    df : pandas.DataFrame
        From :func:`cleaned_labels`.
    out : path-like
        The CSV file.
    force : bool
        Replace an existing ``out``; without it an existing file is never clobbered.
    parents : bool
        Create ``out``'s missing parent folders; without it a missing folder is an error.

    Raises
    ------
    FileExistsError
        ``out`` exists and not ``force`` (a regular file), or is a block device or a socket.
    FileNotFoundError
        ``out``'s folder does not exist and not ``parents``.

    Notes
    -----
    A symbolic link is written through (its target replaced, the link kept). A character device
    or a named pipe at ``out`` (``/dev/null``), and this process's own output (``/dev/stdout``, also
    when the shell sent it to a file), are written into, ``force`` or not: nothing is replaced, and
    a device stays a device. A block device (a disk) never is.
    """
    out = Path(out)
    if _is_stream(out):
        with open(out, "w", encoding="utf-8", newline="") as stream:
            stream.write(to_csv_text(df))
        return out
    target = check_csv_writable(out, force=force, parents=parents)
    if not target.parent.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(target, lambda fh: fh.write(to_csv_text(df)), replace=force)
    except FileExistsError:
        raise FileExistsError(f"{out} exists; use --force to overwrite it") from None
    return out


def check_csv_writable(out: str | Path, *, force: bool = False, parents: bool = False,
                       made_before: str | Path | None = None) -> Path:
    """The file :func:`write_cleaned_labels` would write for ``out``, or the error it would raise.

    Run before an export writes anything else (``--to-folder``), so that a CSV that cannot be
    written stops the export before it starts. Parameters and errors as :func:`write_cleaned_labels`;
    a stream (``/dev/null``, ``/dev/stdout``) is always writable. ``made_before``: a folder the export
    creates before it writes the CSV (``--to-folder``): a CSV right in it needs no ``parents``.

    Returns
    -------
    pathlib.Path
        The file written: ``out``, or the target of the symbolic link ``out``.
    """
    out = Path(out)
    if _is_stream(out):
        return out
    kind = os.stat(out).st_mode if out.exists() else 0
    target = Path(os.path.realpath(out)) if out.is_symlink() else out
    if target.exists() and not (stat.S_ISREG(kind) or stat.S_ISDIR(kind)):
        raise FileExistsError(f"{out} is a device or a socket, not a file: refused")
    if target.exists() and not force:
        raise FileExistsError(f"{out} exists; use --force to overwrite it")
    made = made_before is not None and os.path.abspath(target.parent) == os.path.abspath(made_before)
    if not target.parent.is_dir() and not parents and not made:
        raise FileNotFoundError(f"folder {target.parent} does not exist; create it first or pass --mkdir")
    return target


def check_csv_not_a_copy_folder(out: str | Path, to_folder: str | Path, df: pd.DataFrame) -> None:
    """Raise :class:`ProtectedFile` when the CSV ``out`` is ``to_folder`` itself or one of the label folders
    :func:`copy_to_folder` makes in it for ``df`` (the copy would make a folder of the CSV's name, and the
    CSV then fail after the copy)."""
    dest = os.path.abspath(to_folder)
    folders = {os.path.join(dest, name) for name in label_folders(label for label in df["label"] if label != "")
               .values()}
    if os.path.abspath(out) in folders | {dest}:
        raise ProtectedFile(f"{out} is the --to-folder copy or one of its label folders; write the CSV to a file "
                            "name of its own (e.g. inside it: cleaned_labels.csv)")


def _is_stream(out: Path) -> bool:
    """A character device or a named pipe (``/dev/null``), or this process's own output: written into."""
    kind = os.stat(out).st_mode if out.exists() else 0  # what the name leads to (/dev/stdout: this process's pipe)
    return stat.S_ISCHR(kind) or stat.S_ISFIFO(kind) or _is_open_stream(out)


#: Names of this process's standard output besides ``-`` (the CLI prints its report to stderr for them).
STDOUT_NAMES = ("/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")


def _is_open_stream(path: Path) -> bool:
    """True for a name of one of this process's open files (``/dev/stdout``, ``/dev/fd/1``, ``/proc/self/fd/1``):
    written into where it is (a shell's ``> file``), never replaced, which would detach it from the stream."""
    text = str(path)
    return text in (*STDOUT_NAMES, "/dev/stderr") or text.startswith(("/dev/fd/", "/proc/self/fd/"))


def dataset_files(conn: sqlite3.Connection) -> list[str]:
    """Every labelled file the scan listed, scored or not.

    Parameters
    ----------
    conn : sqlite3.Connection
        The scan's database.

    Returns
    -------
    list of str
        Paths relative to the dataset root, POSIX separators (what :func:`check_csv_target` protects).
    """
    return [row[0] for row in conn.execute("SELECT path FROM samples UNION SELECT path FROM unscored")]


def _places(path: str | Path) -> set[str]:
    """Where writing ``path`` lands, as real paths: the file it leads to, and the name itself (a link)."""
    path = Path(os.path.abspath(path))
    return {os.path.realpath(path), os.path.join(os.path.realpath(path.parent), path.name)}


def _one_of(out: str | Path, places: set[str], protected: list[Path]) -> bool:
    """Whether writing ``out`` (:func:`_places` ``places``) lands on one of a few ``protected`` files: by
    name, or by identity where both exist (a case-insensitive file system spells one file several ways)."""
    if places & {p for path in protected for p in _places(path)}:
        return True
    if not os.path.exists(out):
        return False
    return any(path.exists() and os.path.samefile(out, path) for path in protected)


def check_csv_target(out: str | Path, scan_dir, *, dataset_root: str | Path | None = None,
                     dataset_paths=(), inputs=()) -> None:
    """Raise unless the cleaned-labels CSV may be written at ``out`` (``--force`` or not).

    Parameters
    ----------
    out : path-like
        The CSV file.
    scan_dir : ScanDir
        The scan exported; its own files (:meth:`~labelaudit.scandir.ScanDir.own_paths`) other than
        ``cleaned_labels.csv`` are refused.
    dataset_root : path-like, optional
        The scanned folder that ``dataset_paths`` are relative to.
    dataset_paths : iterable of str
        The dataset's files (:func:`dataset_files`); ``out`` may lie in the dataset folder, as long as it
        is none of them (also through a symbolic link or ``..``).
    inputs : iterable of path-like
        Other files the scan read: its labels CSV (or annotations CSV), ``scan.json``'s ``labels_csv``.

    Raises
    ------
    ProtectedFile
        ``out`` is one of the scan's own files, a file the scan read, or one of the dataset's files.
    """
    places = _places(out)
    own = [p for p in scan_dir.own_paths() if p != scan_dir.cleaned_labels]
    if _one_of(out, places, own) or any(is_inside_on_disk(place, folder) for place in places
                                        for folder in (scan_dir.cache, scan_dir.folds)):
        raise ProtectedFile(f"{out} is one of the scan's own files (the review's decisions live in "
                            f"{scan_dir.DATABASE}); write the CSV elsewhere")
    read = [Path(p) for p in inputs if p]
    if _one_of(out, places, read):
        raise ProtectedFile(f"{out} is the labels CSV the scan read (the review's decisions refer to it); "
                            "write the cleaned labels under another name (--force never replaces an input)")
    if dataset_root is None or not os.path.lexists(out):  # nothing there that writing could replace
        return
    real_root = Path(os.path.realpath(dataset_root))
    inside = [Path(p).relative_to(real_root).as_posix() for p in places if is_inside(Path(p), real_root)]
    if not inside:
        return
    paths = set(dataset_paths)
    # case-folded: on a case-insensitive file system "Cat/IMG1.PNG" is the image "cat/img1.png"
    folded = {_fold(rel) for rel in paths}
    hit = next((rel for rel in inside if _fold(rel) in folded), None)
    if hit is None:  # a dataset file reached through a symbolic link: resolve them all (only now)
        hit = next((rel for rel in paths if places & _places(real_root / rel)), None)
    if hit is not None:
        raise ProtectedFile(f"{out} is an image of the scanned dataset ({hit}); write the CSV elsewhere "
                            "(--force never replaces an input)")


def resolve_image(root: str | Path, rel: str) -> Path:
    """The real file of sample path ``rel`` under ``root`` (:func:`labelaudit.fsutil.resolve_inside`).

    Raises
    ------
    UnsafePath
        ``rel`` is absolute, holds a NUL, or resolves (through ``..`` or a symbolic
        link) to a place outside ``root``.
    FileNotFoundError
        No regular file there.
    """
    return resolve_inside(root, rel)


def safe_folder_name(label: str) -> str:
    """``label`` usable as one folder name (path separators and control characters replaced)."""
    name = re.sub(r"[/\\\x00-\x1f]", "_", label).strip()
    return name if name not in ("", ".", "..") else f"_{name}_"


def label_folders(labels) -> dict[str, str]:
    """A folder name for each label of the copy, no two alike even case-folded.

    :func:`safe_folder_name` can map two labels to one name (``a/b`` and ``a_b``), and a
    case-insensitive file system (macOS, Windows) makes ``Cat`` and ``cat`` one folder: either
    would merge two classes in the copy. A label that is already a safe name keeps it (the
    first in sorted order, of labels differing only in case); the others get ``__2``,
    ``__3``, ... appended.

    Parameters
    ----------
    labels : iterable of str
        The labels of the copy (repeats allowed).

    Returns
    -------
    dict
        Label -> folder name.
    """
    unique = sorted(set(labels))
    plain = {label: _fit_name(safe_folder_name(label)) for label in unique}
    taken: set[str] = set()
    folders: dict[str, str] = {}
    for label in sorted(unique, key=lambda label: (plain[label] != label, label)):
        name, k = plain[label], 2
        while _fold(name) in taken:
            name, k = _fit_name(f"{plain[label]}__{k}"), k + 1
        taken.add(_fold(name))
        folders[label] = name
    return folders


def _unused_name(rel: PurePosixPath, folder: str, used: set[tuple[str, str]]) -> str:
    """The file name of ``rel`` in the copy's ``folder``: its own, else prefixed with its source folder
    (``a/b/1.png`` -> ``a__b__1.png``), else that with a number (``a__b__1__2.png``): never one taken.

    ``used`` holds the ``(folder, name)`` pairs taken, folded (:func:`_fold`: on macOS and Windows
    ``Cat/A.png`` and ``cat/a.png`` are one file); the pair chosen is added to it. A name longer than
    a file system allows (255 bytes) is shortened, keeping its ending (:func:`_fit_name`).
    """
    def taken(name: str) -> bool:
        return (_fold(folder), _fold(name)) in used

    name = _fit_name(rel.name)
    if taken(name):
        prefixed = safe_folder_name(str(rel.parent).replace("/", "__")) + "__" + rel.name
        stem, suffix, k = PurePosixPath(prefixed).stem, PurePosixPath(prefixed).suffix, 2
        name = _fit_name(prefixed)
        while taken(name):
            name, k = _fit_name(f"{stem}__{k}{suffix}"), k + 1
    used.add((_fold(folder), _fold(name)))
    return name


#: The longest file name (in bytes, UTF-8) the common file systems take.
MAX_NAME_BYTES = 255


def _fit_name(name: str) -> str:
    """``name`` cut to :data:`MAX_NAME_BYTES` in UTF-8, its ending (``.png``, ``__2.png``) kept.

    A cut name carries 8 hex digits of a hash of the whole name, so two long names that
    share their beginning stay two names.
    """
    if utf8_length(name) <= MAX_NAME_BYTES:
        return name
    suffix = PurePosixPath(name).suffix
    if utf8_length(suffix) > 32:  # no real extension: keep none
        suffix = ""
    tag = "~" + hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    stem = name[: len(name) - len(suffix)]
    return cut_to_bytes(stem, MAX_NAME_BYTES - utf8_length(tag + suffix)) + tag + suffix


def _fold(name: str) -> str:
    """The form under which two names are one file on macOS and Windows: Unicode NFC, case-folded."""
    return unicodedata.normalize("NFC", name).casefold()


@dataclass
class FolderCopy:
    dest: Path
    n_linked: int = 0
    n_copied: int = 0
    missing: list[str] | None = None
    #: label -> folder, for the labels whose folder is not the label itself (see :func:`label_folders`)
    renamed: dict[str, str] = field(default_factory=dict)
    #: files in ``dest`` this export did not write (an earlier export's, left as they are), relative POSIX paths
    others: list[str] = field(default_factory=list)


def check_folder_target(dest: str | Path, *, force: bool = False, dataset_root: str | Path | None = None) -> None:
    """Raise unless ``dest`` may receive the class-folder copy of the dataset in ``dataset_root``.

    Raises
    ------
    OverlappingFolders
        ``dest`` is the dataset folder, lies inside it or holds it, or a folder in ``dest`` leads
        into it (a symbolic link): the copy could replace images (even with ``force``), or be
        read as a class by the next scan.
    FileExistsError
        ``dest`` is a file, or a non-empty folder and not ``force``.
    """
    dest = Path(dest)
    if dataset_root is not None:
        real_root = Path(os.path.realpath(dataset_root))
        # the label folders already there count too: one may be a symbolic link into the dataset
        folders = [dest, *(p for p in dest.iterdir() if p.is_dir())] if dest.is_dir() else [dest]
        for folder in folders:
            real = Path(os.path.realpath(folder))
            if is_inside_on_disk(real, real_root) or is_inside_on_disk(real_root, real):
                where = "" if folder == dest else f" ({folder.name} leads to {real})"
                raise OverlappingFolders(f"--to-folder {dest} overlaps the dataset folder {real_root}{where}: the "
                                         "copy could write over its images; choose a folder outside it")
    if dest.exists() and not dest.is_dir():
        raise FileExistsError(f"{dest} exists and is not a folder")
    if dest.exists() and any(dest.iterdir()) and not force:
        raise FileExistsError(f"{dest} is not empty; use --force to write into it")


def copy_to_folder(df: pd.DataFrame, dataset_root: str | Path, dest: str | Path, *, force: bool = False) -> FolderCopy:
    """Lay the cleaned dataset out as ``dest/<label>/<file name>``.

    Files are hard-linked from the dataset (no extra space), or copied when ``dest`` is on
    another device or the file system has no hard links. ``dest`` must not exist or be
    empty unless ``force`` (then files of the same name are replaced, each only once its new
    content is complete; nothing is deleted), and it must not overlap ``dataset_root``
    (:func:`check_folder_target`).
    Each label gets its own folder (:func:`label_folders`: no two alike case-folded; those not
    named as their label are listed in ``renamed``).
    Two samples with the same file name and label (compared case-folded) get the sample's folder path
    prepended (and a number when that name is taken too), so no file is written over another.
    Samples whose file is missing, or outside the dataset root, are listed in ``missing``; files
    already in ``dest`` that this export did not write (with ``force``: an earlier export's, which
    may contradict this one) are left alone and listed in ``others``.
    """
    dest = Path(dest)
    check_folder_target(dest, force=force, dataset_root=dataset_root)
    dest.mkdir(parents=True, exist_ok=True)  # also when no image is placed: a CSV may go into it
    folders = label_folders(label for label in df["label"] if label != "")
    result = FolderCopy(dest=dest, missing=[],
                        renamed={label: folder for label, folder in folders.items() if folder != label})
    used: set[tuple[str, str]] = set()
    written: set[str] = set()
    for rel, label in zip(df["path"], df["label"]):
        if label == "":
            continue
        try:
            src = resolve_image(dataset_root, rel)
        except (UnsafePath, FileNotFoundError):
            result.missing.append(rel)
            continue
        folder = folders[label]
        name = _unused_name(PurePosixPath(rel), folder, used)
        target = dest / folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        written.add(f"{folder}/{name}")
        if place_file(src, target):
            result.n_linked += 1
        else:
            result.n_copied += 1
    folded = {_fold(rel) for rel in written}
    result.others = sorted(rel for rel in _files_under(dest) if _fold(rel) not in folded)
    return result


def _files_under(folder: Path) -> Iterator[str]:
    """Relative POSIX paths of the files below ``folder`` (symbolic links not followed)."""
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            yield (Path(dirpath) / name).relative_to(folder).as_posix()
