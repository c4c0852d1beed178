"""What a scan directory holds: its file names (:class:`ScanDir`) and its typed manifest.

Every module that reads or writes a scan directory -- the scanner, the CLI, the review
app, the benchmarks and the tests' fake scans -- goes through this module, so a file name
or a summary field is spelt in exactly one place.

``scan.json`` is the manifest (:class:`ScanManifest`): settings, versions, timings and
the :class:`ScanSummary`. It is written last, so a scan directory with a ``scan.json`` is
complete. The SQLite database holds the per-sample rows and the review's decisions.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labelaudit.errors import ScanDirError
from labelaudit.fsutil import atomic_write

__all__ = ["ScanDir", "ScanManifest", "ScanSummary", "MANIFEST_VERSION", "SCAN_FOLDER_REASON", "json_safe",
           "other_scan_reason"]

#: Bump when the manifest's meaning changes; readers accept older versions they know.
MANIFEST_VERSION = 1


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None and numpy scalars/arrays made plain."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _from_dict(cls, data: dict[str, Any]):
    """``cls(**data)`` keeping only the fields ``cls`` knows (newer files may have more)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class ScanSummary:
    """The figures a scan reports (end-of-scan text, the app's overview, benchmarks).

    Attributes
    ----------
    n_samples : int
        Images scored.
    n_classes : int
        Classes trained on.
    n_skipped : int
        Rows of ``skipped.csv`` (files or CSV rows not scored, for any reason).
    n_unscored : int
        Images with a usable label that were not scored: in a class too small for the folds
        or too large to decode (both kept in the export with their given label), or
        undecodable (left out of it).
    n_dropped_small_classes : int
        Images in classes with fewer samples than folds.
    n_too_large : int
        Well-formed images too large to decode (over ``MAX_IMAGE_PIXELS``); 0 in scans made
        before they were told apart from undecodable files.
    n_in_linked_folders : int
        Files under folders reached through a symbolic link (not followed, not scanned); 0 in
        scans made before they were counted apart.
    n_missing_files : int
        Rows of ``skipped.csv`` naming a file that does not exist (labels-CSV rows, broken links): not
        in the export (0 in scans made before it was counted).
    small_classes : list of str
        Those classes.
    empty_classes : list of str
        Class folders that hold no image.
    estimated_noise_rate : float
        Confident learning's estimate of the share of wrong labels.
    n_estimated_label_issues : int
        The same as a count.
    count_temperature : float or None
        Temperature of the held-out probabilities confident learning counted on (fitted to
        the given labels; > 1 = they were overconfident for them); None in scans made before it.
    n_flagged : int
        Samples proposed for review.
    holdout_accuracy : float
        Out-of-sample accuracy against the given labels.
    majority_rate : float
        Accuracy of always predicting the largest class.
    weak_models : bool
        The models are barely better than chance: the ranking is unreliable.
    fold_holdout_accuracy : list of float
        Per fold.
    folds_resumed : list of int
        Folds loaded from a previous run instead of trained.
    device : str
        What trained the folds.
    scan_dir : str
        Absolute path of the scan directory.
    consensus : dict or None
        Several annotators per image only: ``n_annotators``, ``n_annotations``, ``n_disputed``
        (images whose annotators are not all on the consensus), ``n_changed_from_majority``,
        ``model_weight``, ``vote_weight``, ``estimated_wrong_consensus``, ``score_components``,
        ``one_annotation_per_image`` (then the scan is a single-label scan, its count the tempered one).
    """

    n_samples: int
    n_classes: int
    n_skipped: int = 0
    n_unscored: int = 0
    n_dropped_small_classes: int = 0
    n_too_large: int = 0
    n_in_linked_folders: int = 0
    n_missing_files: int = 0
    small_classes: list[str] = field(default_factory=list)
    empty_classes: list[str] = field(default_factory=list)
    estimated_noise_rate: float | None = None
    n_estimated_label_issues: int = 0
    count_temperature: float | None = None
    n_flagged: int = 0
    holdout_accuracy: float | None = None
    majority_rate: float | None = None
    weak_models: bool = False
    fold_holdout_accuracy: list[float | None] = field(default_factory=list)
    folds_resumed: list[int] = field(default_factory=list)
    device: str = ""
    scan_dir: str = ""
    consensus: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return json_safe(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ScanSummary":
        return _from_dict(cls, data)

    def skipped_by_kind(self) -> dict[str, int]:
        """The ``n_skipped`` rows of ``skipped.csv`` by kind, for the scan's report and the review's overview.

        Returns
        -------
        dict
            ``unreadable`` (files that could not be decoded), ``too_large`` (``n_too_large``: images
            too large to decode), ``linked`` (``n_in_linked_folders``: files under folder links),
            ``missing`` (``n_missing_files``: no file there), ``small_classes``
            (``n_dropped_small_classes``) and ``other`` (the rest: files outside class folders, links,
            repeated CSV rows, ...); they add up to ``n_skipped``. Scans made before missing files were
            counted give them as ``other``.
        """
        unreadable = max(self.n_unscored - self.n_dropped_small_classes - self.n_too_large, 0)
        known = (unreadable + self.n_too_large + self.n_in_linked_folders + self.n_missing_files
                 + self.n_dropped_small_classes)
        return {"unreadable": unreadable, "too_large": self.n_too_large, "linked": self.n_in_linked_folders,
                "missing": self.n_missing_files, "small_classes": self.n_dropped_small_classes,
                "other": max(self.n_skipped - known, 0)}


@dataclass
class ScanManifest:
    """Contents of ``scan.json``.

    Attributes
    ----------
    created_at : str
        ISO 8601 UTC time the scan finished, to the microsecond (to the second before): it also
        identifies the scan (the review app's stale-page check and statistics cache).
    dataset_root : str
        Absolute dataset folder; sample paths are relative to it.
    labels_csv : str or None
        Absolute path of the labels CSV, if one was used.
    annotations_csv : str or None
        Absolute path of the annotations CSV of a scan with several annotators per image (scans
        made before this field recorded it as ``labels_csv``).
    config : dict
        :meth:`labelaudit.config.ScanConfig.to_dict`.
    summary : ScanSummary
    classes : list of str
        Class names in class-id order (the columns of the probability arrays).
    score_components : list of str
        Signals combined into ``mislabel_score``.
    signals : dict
        ``{name: {"direction": +1 | -1, "description": str}}`` of every signal stored.
    noise_matrix : list of list of float
        ``noise_matrix[i][j]`` = estimated P(given = classes[i] | true = classes[j]).
    versions : dict
        Package versions.
    timings : dict
        Seconds per phase, training images/s.
    inputs : dict or None
        A scan from embeddings or predicted probabilities (``--features`` / ``--pred-probs``):
        ``mode``, each array's file and shape, the head kept and its held-out losses, the kNN
        settings. None for a scan of the images.
    manifest_version : int
    """

    created_at: str
    dataset_root: str
    summary: ScanSummary
    classes: list[str] = field(default_factory=list)
    labels_csv: str | None = None
    annotations_csv: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    score_components: list[str] = field(default_factory=list)
    signals: dict[str, dict[str, Any]] = field(default_factory=dict)
    noise_matrix: list[list[float]] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    inputs: dict[str, Any] | None = None
    manifest_version: int = MANIFEST_VERSION

    @property
    def device(self) -> str:
        return self.summary.device

    @property
    def label_files(self) -> list[str]:
        """The CSV files the scan read its labels from (labels CSV, annotations CSV), none for class folders."""
        return [f for f in (self.labels_csv, self.annotations_csv) if f]

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["summary"] = self.summary.to_dict()
        return json_safe(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ScanManifest":
        data = dict(data)
        data["summary"] = ScanSummary.from_dict(data.get("summary") or {"n_samples": 0, "n_classes": 0})
        return _from_dict(cls, data)


class ScanDir:
    """The files of one scan directory.

    Parameters
    ----------
    path : path-like
        The scan directory (need not exist yet when writing).
    """

    MANIFEST = "scan.json"
    DATABASE = "labelaudit.db"
    SCORES = "scores.csv"
    SKIPPED = "skipped.csv"
    NOISE_MATRIX = "noise_matrix.csv"
    PRED_PROBS = "pred_probs.npy"
    PRED_PROBS_IMAGE = "pred_probs_image.npy"
    EMBEDDINGS = "embeddings.npy"
    CLEANED_LABELS = "cleaned_labels.csv"
    #: Several annotators per image: one row per annotator, and the majority vote the folds trained on.
    ANNOTATORS = "annotators.csv"
    PROVISIONAL_LABELS = "provisional_labels.csv"
    #: The review map: a 2-D projection of the embeddings (computed once, by the review app).
    MAP = "map_2d.npz"
    CACHE = "cache"
    FOLDS = "folds"
    #: Held by a running scan (:func:`labelaudit.scanner.scan`); an empty file, hidden.
    LOCK = ".labelaudit.lock"
    #: Name beginnings of the files a scan keeps in ``cache/`` (decoded images) and ``folds/`` (fold results).
    OWN_FILE_PREFIXES = {CACHE: ("decoded-", "scan-images-"), FOLDS: ("fold-",)}
    #: Files SQLite keeps beside the database (write-ahead log, shared memory, rollback journal).
    DATABASE_SIDECARS = ("-wal", "-shm", "-journal")

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"ScanDir({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    manifest_path = property(lambda self: self.path / self.MANIFEST)
    database = property(lambda self: self.path / self.DATABASE)
    scores = property(lambda self: self.path / self.SCORES)
    skipped = property(lambda self: self.path / self.SKIPPED)
    noise_matrix = property(lambda self: self.path / self.NOISE_MATRIX)
    pred_probs = property(lambda self: self.path / self.PRED_PROBS)
    pred_probs_image = property(lambda self: self.path / self.PRED_PROBS_IMAGE)
    embeddings = property(lambda self: self.path / self.EMBEDDINGS)
    cleaned_labels = property(lambda self: self.path / self.CLEANED_LABELS)
    annotators = property(lambda self: self.path / self.ANNOTATORS)
    provisional_labels = property(lambda self: self.path / self.PROVISIONAL_LABELS)
    map = property(lambda self: self.path / self.MAP)
    cache = property(lambda self: self.path / self.CACHE)
    folds = property(lambda self: self.path / self.FOLDS)
    lock = property(lambda self: self.path / self.LOCK)

    def own_paths(self) -> list[Path]:
        """Every file and folder a scan, the review app or an export writes here by default.

        A scan directory inside the dataset folder (even the dataset folder itself, or a class
        folder) leaves exactly these out of the dataset, and nothing else.
        """
        names = [self.MANIFEST, self.DATABASE, *(self.DATABASE + s for s in self.DATABASE_SIDECARS), self.SCORES,
                 self.SKIPPED, self.NOISE_MATRIX, self.PRED_PROBS, self.PRED_PROBS_IMAGE, self.EMBEDDINGS,
                 self.CLEANED_LABELS, self.ANNOTATORS, self.PROVISIONAL_LABELS, self.MAP, self.CACHE, self.FOLDS,
                 self.LOCK]
        return [self.path / name for name in names]

    def holds_a_scan(self) -> bool:
        """True when a scan has worked here, finished or not: its database, manifest or lock file, or
        its decoded images or fold results (a scan killed before it wrote its database left those)."""
        if any(p.exists() for p in (self.database, self.manifest_path, self.lock)):
            return True
        return any(folder.is_dir() and any(f.name.startswith(self.OWN_FILE_PREFIXES[name]) for f in folder.iterdir())
                   for name, folder in ((self.CACHE, self.cache), (self.FOLDS, self.folds)))

    def require_database(self) -> Path:
        """The database file; :class:`ScanDirError` with the fix when it is missing."""
        if not self.database.is_file():
            raise ScanDirError(f"no {self.DATABASE} in {self.path}; run `labelaudit scan` first")
        return self.database

    def read_manifest(self) -> ScanManifest:
        """The manifest; :class:`ScanDirError` when missing or unreadable."""
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ScanDirError(f"no {self.MANIFEST} in {self.path}: not a finished scan; "
                               "run `labelaudit scan` (again) to complete it") from None
        except (OSError, ValueError) as exc:
            raise ScanDirError(f"cannot read {self.manifest_path}: {exc}") from None
        if not isinstance(data, dict) or "summary" not in data:
            raise ScanDirError(f"{self.manifest_path} is not a labelaudit scan manifest")
        return ScanManifest.from_dict(data)

    def write_manifest(self, manifest: ScanManifest) -> Path:
        """Write ``scan.json`` atomically (do it last: it marks the scan complete)."""
        text = json.dumps(manifest.to_dict(), indent=2, allow_nan=False)
        return atomic_write(self.manifest_path, lambda fh: fh.write(text))


#: The ``skipped.csv`` reason of another labelaudit scan folder found inside the dataset (not scanned).
SCAN_FOLDER_REASON = "a labelaudit scan folder: not scanned"


def other_scan_reason(folder: str) -> str | None:
    """:data:`SCAN_FOLDER_REASON` when ``folder`` (a path) holds a scan, finished or not, else None.

    The dataset reader's ``skip_folder`` filter (:func:`labelaudit.data.load_dataset`): a scan
    folder found inside the dataset is no class of images.
    """
    return SCAN_FOLDER_REASON if ScanDir(folder).holds_a_scan() else None
