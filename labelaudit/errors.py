"""Typed exceptions: callers (the CLI, the web app) branch on the class, never on message text.

Every error meant for the user derives from :class:`LabelauditError`; its message is
one line that says what is wrong and how to fix it.
"""

from __future__ import annotations

import os

__all__ = [
    "LabelauditError", "DatasetError", "AnnotationsError", "ScanError", "SettingsError", "DeviceUnavailable",
    "TrainingDiverged", "ScanDirError", "CorruptDatabase", "NoScanInDatabase", "UnsafePath", "OverlappingFolders",
    "ProtectedFile", "ReviewError", "DecisionError", "SampleNotFound",
    "InvalidCursor", "StaleScan", "MissingExtra", "ClusterError", "InputArrayError",
    "ReviewSettingsError", "MapUnavailable", "MoreEpochsNotice", "WeakModelsWarning", "CompileFallback", "ScanNotice",
    "StaleFoldsNotice", "RecipeNotice", "LinkedFolders", "OtherDataset", "ScanDirBusy", "RequestIdReused",
    "LookAlikeClasses", "ReadOnlyScanDir", "DatabaseBusy", "UnsharedAnnotatorLabels",
]


class LabelauditError(Exception):
    """Base class of every error labelaudit reports to a user."""


class DatasetError(LabelauditError, ValueError):
    """The dataset cannot be loaded at all (missing root, bad CSV, no usable image)."""


class InputArrayError(DatasetError):
    """Embeddings or predicted probabilities that do not fit the dataset (row count, unknown or repeated
    path, NaN/inf, dtype, shape, unreadable file); raised before any training."""


class AnnotationsError(DatasetError):
    """An annotations CSV (several annotators per image) that cannot be used as a whole: unknown
    paths, empty labels, an annotator twice for one image; the message names the CSV lines."""


class ScanError(LabelauditError, ValueError):
    """A scan that cannot run (too few classes, unknown recipe, ...)."""


class OtherDataset(ScanError):
    """The scan directory holds review decisions made on another dataset folder; a scan of this one
    into it would apply them, by relative path, to other images (``keep_decisions`` if it is that
    data, moved or copied)."""


class ScanDirBusy(ScanError):
    """Another scan is writing to the scan directory (two scans into one ``--out`` would mix their files)."""


class SettingsError(ScanError):
    """An invalid scan setting (a :class:`~labelaudit.config.ScanConfig` field out of range)."""


class DeviceUnavailable(LabelauditError, RuntimeError):
    """The requested compute device (e.g. ``cuda``) is not available."""


class TrainingDiverged(LabelauditError, RuntimeError):
    """A fold's loss or predictions became non-finite."""


class ScanDirError(LabelauditError, FileNotFoundError):
    """A folder that is not a (complete) scan directory."""


class CorruptDatabase(ScanDirError):
    """A scan's ``labelaudit.db`` that SQLite cannot read (damaged, truncated, not a database); left as it is,
    since it may hold review decisions worth recovering."""


class NoScanInDatabase(ScanDirError):
    """A readable ``labelaudit.db`` that holds no finished write of a scan (an empty file, or the first scan
    killed while writing it): an export of it would be an empty label list, so it is refused."""


class ReadOnlyScanDir(ScanDirError):
    """The scan directory cannot be written (read-only file system or permissions): the review app,
    which writes every decision at once, refuses it; an export reads it where it can."""


class DatabaseBusy(LabelauditError, RuntimeError):
    """Another process holds a scan's ``labelaudit.db`` locked longer than labelaudit waits (10 s): nothing
    was read or written; the same command or request can be repeated once the lock is released."""


class UnsafePath(LabelauditError, ValueError):
    """A path that leads outside the folder it must stay in."""


class OverlappingFolders(LabelauditError, ValueError):
    """An output folder that is, lies in or holds the dataset folder (writing there could replace its images)."""


class ProtectedFile(LabelauditError, ValueError):
    """An output file that is one of the inputs: an image of the scanned dataset or one of the scan's own
    files (``labelaudit.db``, ...); writing it would replace them, so it is refused even with ``--force``."""


class ReviewError(LabelauditError):
    """Base class of review-domain errors."""


class DecisionError(ReviewError, ValueError):
    """A decision that cannot be recorded (unknown action or class, missing label)."""


class RequestIdReused(ReviewError, ValueError):
    """A request id already answered for another request (other decisions, kind or reviewer): a retry
    must repeat its request exactly; a new request needs a new id."""


class SampleNotFound(ReviewError, LookupError):
    """No scanned sample with that id or path."""


class StaleScan(ReviewError):
    """A write from a page made from an earlier scan of the folder: a re-scan renumbers the samples, so
    its sample ids may name other images now (reload the page)."""


class InvalidCursor(ReviewError, ValueError):
    """A paging cursor that does not fit the listing's order."""


class ReviewSettingsError(ReviewError, ValueError):
    """A review setting that cannot be stored (a class order naming an unknown class, a key used twice)."""


class MapUnavailable(ReviewError, LookupError):
    """The scan has no embeddings to draw a map of."""


class ScanNotice(UserWarning):
    """Something the user should know about a scan that went on (the CLI prints it as ``Warning: ...``)."""


class StaleFoldsNotice(ScanNotice):
    """The scan directory held stored folds made with other settings, data or labels: they are trained again."""


class LookAlikeClasses(ScanNotice):
    """Class names that differ only in case or Unicode normalisation (``Cat`` / ``cat``): kept apart, as given."""


class UnsharedAnnotatorLabels(ScanNotice):
    """An annotator (a wide annotations CSV's column) none of whose labels any other annotator gave: often a
    metadata column (an id, a source) read as an annotator; its labels count as votes, and may become classes."""


class LinkedFolders(ScanNotice):
    """Folders of the dataset reached through a symbolic link: not followed, so their files are not scanned
    (each is a ``skipped.csv`` row); the notice names them and how many files each holds."""


class RecipeNotice(ScanNotice):
    """A component signal of the chosen ``--recipe`` does not exist in this scan and is left out of the score."""


class MoreEpochsNotice(ScanNotice):
    """A small dataset: its folds train more epochs than set, so that each trains on ``min_fold_images`` images."""


class WeakModelsWarning(UserWarning):
    """The scan's models are barely better than chance: its ranking of the images is unreliable."""


class CompileFallback(RuntimeWarning):
    """``torch.compile`` of a fold model failed; the fold goes on with eager execution of the same model."""


class MissingExtra(LabelauditError, ImportError):
    """An optional dependency is not installed (e.g. Ray for ``--executor ray``); the message says what to install."""


class ClusterError(LabelauditError, RuntimeError):
    """A fold could not be run on the cluster (no connection, worker died past its retries, data not visible)."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message ("" for none): what a one-line report quotes of a foreign error."""
    return next(iter(str(exc).strip().splitlines()), "")


def warn(message: str, category: type[Warning]) -> None:
    """:func:`warnings.warn` attributed to the first caller outside labelaudit (the user's line), from any depth.

    The scan's steps warn from different call depths (a scan from images or from arrays, a step
    called on its own); a fixed ``stacklevel`` would point inside labelaudit for some of them.
    """
    import sys
    import warnings

    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    level, frame = 2, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(package):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, category, stacklevel=level)
