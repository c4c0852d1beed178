"""The scan pipeline: dataset folder in, scan directory with ranked mislabel scores out.

``scan()`` runs three steps, each handing a named object to the next:

1. :func:`prepare` -- load and decode the images (cached) and drop the classes too small
   for the folds: :class:`PreparedData`;
2. :func:`train` -- one model per stratified fold through an executor (finished folds
   are kept on disk, so a killed scan resumes): :class:`FoldRun`;
3. :func:`score` -- signals from the folds' records, combined into ``mislabel_score``:
   :class:`ScoredTable`.

:func:`write_outputs` then writes the scan directory (:class:`~labelaudit.scandir.ScanDir`):
``scores.csv``, ``skipped.csv``, ``noise_matrix.csv``, the ``.npy`` arrays,
``labelaudit.db`` and, last, the manifest ``scan.json`` that marks the scan complete.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import sys
import threading
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import filelock
import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold
from tqdm.auto import tqdm

from labelaudit.progress import progress_bar

from labelaudit import __version__
from labelaudit.errors import (LinkedFolders, LookAlikeClasses, MoreEpochsNotice, OtherDataset, RecipeNotice,
                               ScanDirBusy, ScanDirError, ScanError, SettingsError, StaleFoldsNotice,
                               UnsharedAnnotatorLabels, WeakModelsWarning, warn)
from labelaudit.fsutil import atomic_write, is_inside_on_disk, same_folder
from labelaudit.scandir import ScanDir, ScanManifest, ScanSummary, other_scan_reason
from labelaudit.scandir import database as storage
from labelaudit.config import MAX_EPOCH_FACTOR, TRAINING_FIELDS, ScanConfig, default_of, resolve_budget, resolve_epochs
from labelaudit.data import LoadedDataset, load_dataset
from labelaudit.data.loading import LINKED_FILES_LISTED, escape_controls
from labelaudit.data.annotations import Annotations, read_annotations, write_provisional_labels
from labelaudit.consensus.scoring import CONSENSUS_SIGNALS, ConsensusScores, score_consensus
from labelaudit.folds.executor import FoldExecutor, InProcessExecutor, resolve_executor
from labelaudit.folds.store import FoldStore
from labelaudit.scoring import (
    DEFAULT_RECIPE, DEFAULT_RECIPE_ARRAYS, DEFAULT_RECIPE_NO_FLIP, RECIPES, combine, flag, suggest,
)
from labelaudit.signals import SIGNALS, Signals, compute_signals
from labelaudit.folds.training import TRAINING_VERSION, FoldJob, FoldResult, resolve_precision

__all__ = ["scan", "ScanError", "SCORE_COLUMNS", "UNSCORED_COLUMNS", "PreparedData", "FoldRun", "ScoredTable",
           "prepare", "train", "score", "write_outputs"]

SCORE_COLUMNS = ["path", "given_label", "suggested_label", "mislabel_score", "flagged"]
#: Columns of :meth:`PreparedData.unscored` (and of the database table ``unscored``).
UNSCORED_COLUMNS = ["path", "given_label", "reason", "readable"]


@dataclass
class PreparedData:
    """The loaded dataset and the part of it that is scanned.

    Attributes
    ----------
    dataset : LoadedDataset
        Everything loaded (decoded images, given labels, skipped rows).
    kept : numpy.ndarray of int, shape (N,)
        Rows of ``dataset`` that are scanned.
    classes : list of str
        Sorted names of the scanned classes (class ids index it).
    labels : numpy.ndarray of int64, shape (N,)
        Class id of each scanned row.
    small_classes : list of str
        Classes with fewer images than folds, left out.
    too_small : pandas.DataFrame
        ``path, given_label, reason`` of the images of those classes.
    images_path : Path or None
        The ``.npy`` file of the scanned images that fold jobs memory-map.
    """

    dataset: LoadedDataset
    kept: np.ndarray
    classes: list[str]
    labels: np.ndarray
    small_classes: list[str]
    too_small: pd.DataFrame
    images_path: Path | None = None
    #: A scan from embeddings or probabilities: the arrays, one row per listed file (:mod:`labelaudit.byom`).
    inputs: Any = None
    #: Several annotators per image (``--annotations``): every annotation; ``labels`` is then
    #: their majority vote, the provisional labels the folds train on.
    annotations: Annotations | None = None

    @property
    def paths(self) -> np.ndarray:
        """Relative paths of the scanned images, shape (N,)."""
        return np.asarray(self.dataset.paths, dtype=object)[self.kept]

    def skipped(self) -> pd.DataFrame:
        """``path, reason`` of every file or CSV row not scanned (the rows of ``skipped.csv``)."""
        return pd.concat([self.dataset.skipped, self.too_small[["path", "reason"]]], ignore_index=True)

    def unscored(self) -> pd.DataFrame:
        """Every labelled image that was not scored, with ``readable`` 1 (too small a class, too large to
        decode: exported with the given label) or 0 (undecodable).

        Returns
        -------
        pandas.DataFrame
            Columns :data:`UNSCORED_COLUMNS`, sorted by path.
        """
        small = self.too_small.assign(readable=1)
        too_large = self.dataset.too_large.assign(readable=1)
        unreadable = self.dataset.unreadable.assign(readable=0)
        table = pd.concat([small, too_large, unreadable], ignore_index=True)[UNSCORED_COLUMNS]
        return table.sort_values("path", kind="stable").reset_index(drop=True).astype({"readable": int})


@dataclass
class FoldRun:
    """The trained folds.

    Attributes
    ----------
    results : list of FoldResult
        One per fold, in fold order.
    resumed : list of int
        Folds loaded from the fold store instead of trained.
    images_trained : int
        Training images seen (samples x epochs) by the folds trained in this run.
    features : numpy.ndarray of float16, shape (N, D), optional
        A scan from embeddings: the user's embeddings, L2-normalised (``embeddings.npy``).
    inputs : dict, optional
        A scan from embeddings or probabilities: what it was computed from (``scan.json``).
    """

    results: list[FoldResult]
    resumed: list[int]
    images_trained: int
    features: np.ndarray | None = None
    inputs: dict[str, Any] | None = None

    @property
    def embeddings(self) -> np.ndarray | None:
        """The input embeddings, else the penultimate-layer features from the fold that computed them."""
        if self.features is not None:
            return self.features
        return next((r.all_features for r in self.results if r.all_features is not None), None)


@dataclass
class ScoredTable:
    """Signals and scores of the scanned images.

    Attributes
    ----------
    scores : pandas.DataFrame
        :data:`SCORE_COLUMNS` then one column per signal, one row per scanned image.
    signals : Signals
        What :func:`~labelaudit.signals.compute_signals` returned.
    components : tuple of str
        Signals combined into ``mislabel_score``.
    """

    scores: pd.DataFrame
    signals: Signals
    components: tuple[str, ...]
    #: Several annotators per image: the consensus, its figures and the annotators' (None otherwise).
    consensus: ConsensusScores | None = None


def scan(
    data_dir: str | os.PathLike,
    *,
    out: str | os.PathLike,
    labels_csv: str | os.PathLike | None = None,
    annotations_csv: str | os.PathLike | None = None,
    config: ScanConfig | None = None,
    executor: FoldExecutor | str | None = None,
    progress: bool = True,
    features: Any = None,
    features_flip: Any = None,
    pred_probs: Any = None,
    index: Any = None,
    keep_decisions: bool = False,
    **settings: Any,
) -> pd.DataFrame:
    """Scan an image dataset for mislabeled samples.

    Parameters
    ----------
    data_dir : path
        Dataset root: class sub-folders, or the folder ``labels_csv`` paths are relative to.
    out : path
        Scan directory to write (created; finished folds in it are re-used).
    labels_csv : path, optional
        CSV with columns ``path,label``; without it the class-folder layout is read.
    annotations_csv : path, optional
        Several annotators per image: ``path,annotator,label`` (one row per annotation) or
        ``path,<annotator 1>,...`` (one row per image, empty = no label); see
        :mod:`labelaudit.data.annotations`. The given label is then the consensus
        (:mod:`labelaudit.consensus`). Not together with ``labels_csv``.
    config : ScanConfig, optional
        All settings; keyword ``settings`` (e.g. ``epochs=5``) override its fields. A field
        left at its default in ``config`` counts as not given: the budget may set it, and a
        small dataset may raise the epochs (``min_fold_images``).
    executor : FoldExecutor or {"local", "threads", "stacked", "ray"}, optional
        Runs the fold jobs: ``"local"`` (default) trains them in this process one after
        the other (:class:`~labelaudit.folds.executor.InProcessExecutor`), ``"threads"``
        two at a time in threads of this process
        (:class:`~labelaudit.folds.executor.ThreadedExecutor`; pass an instance for another
        number), ``"stacked"`` all at once as one stacked network
        (:class:`~labelaudit.folds.executor.StackedExecutor`, for a GPU), ``"ray"`` as Ray tasks (:class:`~labelaudit.folds.ray_executor.RayExecutor`
        with its defaults; pass an instance for other options). Same seed, same scores with
        any of them (on the CPU up to the last digits, which depend on the threads per fold).
    progress : bool
        Show progress bars on stderr.
    features : path or numpy.ndarray of float, shape (N, D), optional
        Bring your own model: embeddings of the images (``.npy``, ``.parquet`` with a
        ``path`` column, or an array). Small heads are trained per fold instead of CNNs,
        plus the kNN label-agreement signal (README, "Bring your own model").
    features_flip : path or numpy.ndarray of float, shape (N, D), optional
        Embeddings of the mirrored images, row for row (flip signals); needs ``features``.
    pred_probs : path or numpy.ndarray of float, shape (N, C), optional
        The user's own out-of-sample probabilities, columns in sorted class-name order:
        confident learning (and kNN when ``features`` are given too), nothing trained.
    index : path or sequence of str, optional
        CSV whose ``path`` column names the image of each array row, in order, or those paths
        themselves (a list, an array, a pandas Series or a DataFrame with a ``path`` column);
        without it row ``i`` is the ``i``-th listed file in sorted path order.
    keep_decisions : bool
        ``out`` was scanned from another folder and holds review decisions, and ``data_dir``
        is that data, moved or copied: keep the decisions (matched by relative path). Without
        it such a scan is refused (:class:`OtherDataset`).

    Returns
    -------
    pandas.DataFrame, shape (N, 5 + n_signals)
        ``scores.csv``: one row per scanned sample with ``path``, ``given_label``,
        ``suggested_label``, ``mislabel_score`` (in [0, 1], higher = more likely
        mislabeled), ``flagged`` and one column per signal. ``.attrs["summary"]`` holds
        the summary written to ``scan.json`` (:meth:`ScanSummary.to_dict`).

    Raises
    ------
    DatasetError
        The dataset cannot be loaded at all.
    ScanError
        Fewer than two classes with enough images, an unknown recipe; :class:`SettingsError`
        for an invalid setting or executor name.
    InputArrayError
        ``features`` / ``features_flip`` / ``pred_probs`` / ``index`` that do not fit the
        dataset (row count, unknown path, NaN/inf, dtype, shape), before any training.
    MissingExtra
        ``executor="ray"`` without Ray installed (raised before anything is loaded).
    CorruptDatabase
        ``out`` holds a ``labelaudit.db`` that SQLite cannot read (before anything is loaded; left as it is).
    OtherDataset
        ``out`` holds review decisions made on the images of another folder than ``data_dir``
        (before anything is loaded), unless ``keep_decisions``.
    ScanDirBusy
        Another scan is writing to ``out`` (nothing is written, no folder removed).
    ClusterError
        The Ray cluster cannot be reached, or a fold's worker died past its retries.
    """
    cfg = _settings(config, settings)
    inputs = _array_inputs(executor, cfg, features=features, features_flip=features_flip, pred_probs=pred_probs,
                           index=index)
    components = _recipe_components(cfg.recipe, cfg.flip, arrays=inputs is not None)
    executor = resolve_executor(executor)
    if (check_config := getattr(executor, "check_config", None)) is not None:
        check_config(cfg.to_dict())
    scan_dir = ScanDir(out)
    device = executor.device(cfg.device)
    epochs_given = "epochs" in settings or cfg.epochs != default_of("epochs")  # by name, or in `config`
    cfg = resolve_budget(cfg, device.type, explicit=settings.keys())
    size_epochs = cfg.budget == "small" and not epochs_given  # measured with the small budget only
    earlier_scan = scan_dir.holds_a_scan()  # before this scan's own lock file is there
    created = _make_folders(scan_dir.path)
    lock = _lock(scan_dir)  # busy: another scan's folder, left as it is
    try:
        _refuse_dataset_folders_as_scan_folders(scan_dir, data_dir)
        if not earlier_scan:
            _refuse_files_of_no_scan(scan_dir)
        if scan_dir.database.exists():  # damage found now, not after the training (the file is left alone)
            storage.check_readable(scan_dir.database)
            if not keep_decisions:
                _refuse_decisions_of_other_data(scan_dir, data_dir)
    except BaseException:  # a scan that cannot start leaves no folder it made behind, and no lock held
        _remove_created(created, scan_dir.path)
        lock.release()
        raise
    try:
        return _locked_scan(data_dir, scan_dir, created, cfg, device, executor, components, inputs,
                            labels_csv=labels_csv, annotations_csv=annotations_csv, progress=progress,
                            size_epochs=size_epochs)
    finally:
        lock.release()


def _refuse_dataset_folders_as_scan_folders(scan_dir: ScanDir, data_dir: str | os.PathLike) -> None:
    """Raise :class:`ScanError` when the scan's ``cache/`` or ``folds/`` is a folder of the dataset.

    With ``--out DATA`` (or a class folder) those two folders are inside the dataset, and the
    scan leaves them out of it; a class folder of the dataset named ``cache`` or ``folds`` would
    be left out with them, all its images lost from the scan and the export.
    """
    root = os.path.realpath(os.path.expanduser(data_dir))
    for name, own in ScanDir.OWN_FILE_PREFIXES.items():
        folder = scan_dir.path / name
        if not folder.is_dir() or not is_inside_on_disk(os.path.realpath(folder), root):
            continue
        foreign = next((path for path in sorted(folder.rglob("*"))
                        if path.is_file() and not path.name.startswith(own + (".",))), None)
        if foreign is not None:
            raise ScanError(f"{folder} holds files of the dataset (e.g. {foreign.name}), but with --out {scan_dir.path} "
                            f"the scan keeps its own {name}/ there and leaves it out of the dataset: scan into "
                            "another --out")


def _refuse_files_of_no_scan(scan_dir: ScanDir) -> None:
    """Raise :class:`ScanError` when ``--out`` holds files of a scan's names but no scan (no database).

    Called only for a folder that holds no scan (:meth:`ScanDir.holds_a_scan` before this scan
    took its lock): a scan killed while writing its outputs (they come before the database) left
    its lock file, so the same command finishes it.
    """
    written_by_others = {scan_dir.lock, scan_dir.cleaned_labels, scan_dir.map}  # this lock, the export's, the app's
    found = [path.name for path in scan_dir.own_paths() if path.is_file() and path not in written_by_others]
    if found:
        raise ScanError(f"{scan_dir.path} holds {', '.join(found)} but no labelaudit scan ({scan_dir.DATABASE}): "
                        "a scan would write over them; scan into another --out")


def _lock(scan_dir: ScanDir) -> filelock.BaseFileLock:
    """Hold the scan directory for this scan: a second scan into it is refused while this one runs.

    Raises
    ------
    ScanDirBusy
        Another scan holds it (the lock is the system's, so a killed scan holds nothing).
    """
    lock = filelock.FileLock(scan_dir.lock, timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise ScanDirBusy(f"another labelaudit scan is writing to {scan_dir.path}; let it finish (or stop it), "
                          "then run this one again, or scan into another --out") from None
    return lock


def _locked_scan(data_dir, scan_dir: ScanDir, created: list[Path], cfg: ScanConfig, device, executor,
                 components, inputs, *, labels_csv, annotations_csv, progress: bool,
                 size_epochs: bool) -> pd.DataFrame:
    """The body of :func:`scan` once the scan directory is held: prepare, train, score, write.

    ``size_epochs``: the epochs follow the dataset's size (:func:`_epochs_for_dataset`); False
    when they were given, or under the ``large`` budget.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()

    had_provisional = scan_dir.provisional_labels.exists()
    try:
        prepared = prepare(data_dir, scan_dir, labels_csv=labels_csv, cfg=cfg, inputs=inputs, progress=progress,
                           annotations_csv=annotations_csv)
    except BaseException:  # a scan that could not load its data leaves no folder it made behind
        _remove_created(created, scan_dir.path)
        if not had_provisional:  # nor, in a folder that was there, the majority vote it wrote first
            scan_dir.provisional_labels.unlink(missing_ok=True)
        raise
    timings["load_s"] = time.perf_counter() - started
    if prepared.inputs is None and size_epochs:
        cfg = _epochs_for_dataset(cfg, prepared.labels)
    phase = time.perf_counter()
    run = train(prepared, scan_dir, cfg=cfg, device=device, executor=executor, progress=progress)
    timings["train_s"] = time.perf_counter() - phase
    phase = time.perf_counter()
    scored = score(prepared, run, cfg=cfg, components=components)
    _warn_if_recipe_incomplete(cfg.recipe, components, scored)
    timings["signals_s"] = time.perf_counter() - phase
    timings["total_s"] = time.perf_counter() - started
    timings["train_images_per_s"] = run.images_trained / timings["train_s"] if run.images_trained else float("nan")

    summary = _summary(prepared, run, scored, executor.describe(device), scan_dir)
    if summary.weak_models:
        warn(_weak_message(summary, inputs=run.inputs, classes=prepared.classes), WeakModelsWarning)
    manifest = _manifest(prepared, scored, summary, cfg, timings, labels_csv, annotations_csv)
    manifest = replace(manifest, inputs=run.inputs)
    write_outputs(scan_dir, prepared, run, scored, manifest)
    scored.scores.attrs["summary"] = summary.to_dict()
    return scored.scores


def _epochs_for_dataset(cfg: ScanConfig, labels: np.ndarray) -> ScanConfig:
    """``cfg`` with the epochs :func:`~labelaudit.config.resolve_epochs` gives the folds of ``labels`` (N,).

    Tells the user with a :class:`MoreEpochsNotice` when they change: the scan takes longer than
    its image count suggests.
    """
    folds = _fold_assignment(labels, cfg.folds, cfg.seed)
    n_fold_train = len(labels) - int(np.bincount(folds).max())
    resolved = resolve_epochs(cfg, n_fold_train)
    if resolved.epochs != cfg.epochs:
        warn(f"{len(labels):,} images: each fold trains {resolved.epochs} epochs instead of {cfg.epochs} "
             f"({resolved.epochs * n_fold_train:,} training images per fold, towards --min-fold-images "
             f"{cfg.min_fold_images}, at most {MAX_EPOCH_FACTOR}x the epochs): models trained on few images for "
             "few steps rank wrong labels worse; --epochs sets the epochs, --min-fold-images 0 keeps them",
             MoreEpochsNotice)
    return resolved


def _refuse_decisions_of_other_data(scan_dir: ScanDir, data_dir: str | os.PathLike) -> None:
    """Raise :class:`OtherDataset` when ``scan_dir``'s review decisions were made on images of another folder.

    Decisions are keyed by relative path, so that a re-scan of the same data keeps them; a
    scan of other data into the same folder would pass them on to whatever images have those
    names. The folder they were made on is the finished scan's ``scan.json``, else the
    database's own record of it (a re-scan killed while writing has removed ``scan.json``);
    with decisions in force and neither record, the scan is refused too: it cannot tell.
    Nothing is refused without decisions in force.
    """
    from labelaudit.review import count_decisions_in_force

    conn = storage.connect(scan_dir.database)  # read-write: the last connection to close removes -wal and -shm
    try:
        n_decisions = count_decisions_in_force(conn)
        recorded = storage.read_meta(conn).get("dataset_root")
    finally:
        conn.close()
    if not n_decisions:
        return
    try:
        before = scan_dir.read_manifest().dataset_root
    except ScanDirError:
        before = recorded
    if before is not None and same_folder(before, data_dir):
        return
    made_on = (f"made on the images of {before}" if before is not None else
               "and no record of the folder they were made on (its last scan did not finish, and predates "
               "the database's own record)")
    raise OtherDataset(
        f"{scan_dir.path} holds {n_decisions} review decision(s) {made_on}; scanning "
        f"{data_dir} into it would apply them, by relative path, to these images. Scan into another --out, or "
        f"pass --keep-decisions if {data_dir} is that data, moved or copied.")


def _warn_if_recipe_incomplete(recipe: str, requested: tuple[str, ...], scored: ScoredTable) -> None:
    """:class:`RecipeNotice` when an explicitly chosen recipe lost components this scan lacks
    (``flip_loss_in`` with ``--no-flip``, ``aum`` with ``--pred-probs``). The default recipes are
    documented to adapt, so they do not warn."""
    missing = [name for name in requested if name not in scored.components]
    if recipe == "default" or scored.consensus is not None or not missing:
        return
    warn(f"recipe {recipe!r} uses {', '.join(missing)}, which this scan does not have "
                  f"(mirror signals need flips on; training signals need trained models): mislabel_score "
                  f"combines {', '.join(scored.components)} only", RecipeNotice)


def _weak_message(summary: ScanSummary, *, inputs: dict | None, classes: Sequence[str]) -> str:
    return (f"the models are barely better than chance (held-out accuracy {summary.holdout_accuracy:.1%}, "
            f"always guessing the largest class: {summary.majority_rate:.1%}): the ranking is unreliable; "
            f"{weak_models_remedy(inputs, below_chance=summary.holdout_accuracy < summary.majority_rate, classes=classes)}")


def weak_models_remedy(inputs: dict | None, *, below_chance: bool = False, classes: Sequence[str] = ()) -> str:
    """What to do about fold models barely better than chance.

    Parameters
    ----------
    inputs : dict or None
        ``scan.json``'s ``inputs`` (a scan from embeddings or probabilities); None for a scan that
        trained CNNs (whose options do not apply to heads on embeddings).
    below_chance : bool
        Held-out accuracy under the largest class's share.
    classes : sequence of str
        The class names in column order, for a scan from given probabilities.
    """
    mode = inputs.get("mode") if inputs else None
    if mode == "pred_probs" and below_chance:  # worse than guessing: most often columns in another order
        shown = ", ".join(map(repr, classes[:5])) + (", ..." if len(classes) > 5 else "")
        return ("the given probabilities agree with the labels less often than guessing the largest class would: "
                f"check that their columns follow the sorted class names ({shown})")
    if mode == "pred_probs":
        return "the given probabilities say little about the labels: check that they are out-of-sample and match the files"
    if inputs:
        return "give more informative embeddings (--features) or more samples"
    return "train longer (--epochs), wider (--width) or on more images"


def _make_folders(path: Path) -> list[Path]:
    """Make ``path`` and its missing parent folders; return the ones this call made, innermost first.

    Each is made by one ``os.mkdir`` of its own, so a folder another process makes meanwhile (a second
    scan into the same new folder) is never taken for this run's, and :func:`_remove_created` leaves it.
    """
    missing, parent = [], Path(os.path.abspath(path))
    while not os.path.lexists(parent) and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    made = []
    for folder in reversed(missing):
        try:
            os.mkdir(folder)
        except FileExistsError:
            continue
        made.append(folder)
    Path(path).mkdir(parents=True, exist_ok=True)  # the error of a path that cannot be a folder
    return made[::-1]


def _remove_created(folders: list[Path], scan_path: Path) -> None:
    """Undo a failed scan's folders (:func:`_make_folders`, made by this run): the scan folder with all
    this run wrote in it (the decode cache, ...) when this run made it, then its new parents while
    empty. A folder this run did not make is never in ``folders``, so nothing of it is touched."""
    for folder in folders:
        if folder == Path(os.path.abspath(scan_path)):
            shutil.rmtree(folder, ignore_errors=True)
            continue
        try:
            os.rmdir(folder)
        except OSError:
            return


def _settings(config: ScanConfig | None, settings: dict[str, Any]) -> ScanConfig:
    """``config`` (or the defaults) with ``settings`` applied; :class:`SettingsError` if invalid."""
    unknown = sorted(set(settings) - set(ScanConfig.__dataclass_fields__))
    if unknown:
        raise TypeError(f"scan() got unknown setting(s) {', '.join(unknown)}; settings are the fields of "
                        f"ScanConfig: {', '.join(ScanConfig.__dataclass_fields__)} (labels: use labels_csv=)")
    try:
        return replace(config or ScanConfig(), **settings)
    except SettingsError:
        raise
    except ValueError as exc:  # ScanConfig.__post_init__'s validation
        raise SettingsError(str(exc)) from None


def _array_inputs(executor, cfg: ScanConfig, **arrays: Any):
    """The checked arrays of a scan from embeddings or probabilities (None for an image scan).

    Raises
    ------
    InputArrayError
        See :func:`labelaudit.data.arrays.load_inputs`.
    SettingsError
        Arrays with another executor than the local one, ``features_flip`` with ``flip=False``, or
        settings other than their defaults that such a scan does not use (:data:`IMAGE_ONLY_SETTINGS`;
        also ``folds``, ``precision`` and ``device`` with ``pred_probs`` alone).
    """
    from labelaudit.data.arrays import load_inputs

    if arrays["features"] is None and arrays["pred_probs"] is None:
        return load_inputs(**arrays)  # None; or the error of an --index / --features-flip without an array

    if executor not in (None, "local") and not isinstance(executor, InProcessExecutor):
        raise SettingsError("--features / --pred-probs train small heads in this process, one at a time; "
                            "drop --executor")
    if arrays["features_flip"] is not None and not cfg.flip:
        raise SettingsError("--features-flip gives mirror signals, --no-flip turns them off: leave one out")
    unused = [name for name in IMAGE_ONLY_SETTINGS if getattr(cfg, name) != default_of(name)]
    if arrays["features"] is None:  # --pred-probs alone: nothing is trained, nothing is split into folds
        unused += [name for name in ("folds", "precision", "device") if getattr(cfg, name) != default_of(name)]
    if unused:
        given = ", ".join(f"{name}={getattr(cfg, name)!r}" for name in unused)
        raise SettingsError(f"setting(s) {given} not used by a scan from --features / --pred-probs, which decodes no "
                            "image and trains no CNN (its heads have their own fixed settings); leave them out")
    return load_inputs(**arrays)


#: Settings of decoding images and of training the image CNN: a scan from embeddings or probabilities uses none.
IMAGE_ONLY_SETTINGS = ("image_size", "epochs", "batch_size", "lr", "momentum", "weight_decay", "warmup",
                       "label_smoothing", "width", "depth", "early_fraction", "early_scale", "crop_padding",
                       "flip_augment", "tta", "compile", "min_fold_images", "budget", "workers", "gce_q")


def _recipe_components(recipe: str, flip: bool, arrays: bool = False) -> tuple[str, ...]:
    default = DEFAULT_RECIPE_ARRAYS if arrays else DEFAULT_RECIPE if flip else DEFAULT_RECIPE_NO_FLIP
    name = default if recipe == "default" else recipe
    if name not in RECIPES:
        raise ScanError(f"unknown score recipe {recipe!r}; choose one of: default, {', '.join(RECIPES)}")
    return RECIPES[name]


# ------------------------------------------------------------------------ 1. prepare


def prepare(data_dir: str | os.PathLike, scan_dir: ScanDir, *, labels_csv: str | os.PathLike | None,
            cfg: ScanConfig, progress: bool, inputs: Any = None,
            annotations_csv: str | os.PathLike | None = None) -> PreparedData:
    """Load the dataset (through the decode cache in ``scan_dir``) and keep the trainable classes.

    Raises
    ------
    DatasetError
        Nothing usable in ``data_dir``.
    ScanError
        Fewer than two classes with at least ``cfg.folds`` images.
    InputArrayError
        ``inputs`` (a scan from embeddings or probabilities) that do not fit the dataset.
    """
    if inputs is not None:  # bring your own model: the files are listed, not decoded
        from labelaudit.byom import prepare_arrays

        if annotations_csv is not None:
            raise SettingsError("--annotations cannot be combined with --features / --pred-probs yet")
        prepared = prepare_arrays(data_dir, scan_dir, inputs, labels_csv=labels_csv, cfg=cfg)
        _warn_if_linked_folders(prepared.dataset)
        return prepared
    annotations = None
    if annotations_csv is not None:
        if labels_csv is not None:
            raise SettingsError("give either a labels CSV or an annotations CSV, not both")
        annotations = read_annotations(annotations_csv, data_dir)
        _warn_about_annotation_labels(annotations)
        labels_csv = write_provisional_labels(annotations, scan_dir.provisional_labels)
    dataset = load_dataset(data_dir, labels_csv=labels_csv, image_size=cfg.image_size, workers=cfg.workers,
                           cache_dir=scan_dir.cache, exclude=scan_dir.own_paths(), skip_folder=other_scan_reason,
                           progress=progress)
    _warn_if_linked_folders(dataset)
    prepared = _keep_trainable_classes(dataset, cfg.folds, look_alike=annotations is None)  # votes: checked above
    prepared.images_path = _scan_images_file(dataset, prepared.kept, scan_dir.cache)
    prepared.annotations = annotations
    return prepared


def _warn_if_linked_folders(dataset: LoadedDataset) -> None:
    """:class:`LinkedFolders` naming the folders reached through a symbolic link, and their files."""
    if not dataset.linked_folders:
        return
    listed = ", ".join(f"{escape_controls(folder)} ({'at least ' if n >= LINKED_FILES_LISTED else ''}{n:,} "
                       f"file{'s' if n != 1 else ''})" for folder, n in list(dataset.linked_folders.items())[:5])
    more = f" and {len(dataset.linked_folders) - 5:,} more" if len(dataset.linked_folders) > 5 else ""
    warn(f"{sum(dataset.linked_folders.values()):,} file(s) in folders reached through a symbolic link are not "
         f"scanned (links to folders are not followed: the dataset's images stay inside {dataset.root}): "
         f"{listed}{more}; each is a row of skipped.csv. To scan them, replace the link by the folder "
         "(`cp -rL` copies it with its files) or scan the folder the link points to", LinkedFolders)


def _keep_trainable_classes(dataset: LoadedDataset, folds: int, *, look_alike: bool = True) -> PreparedData:
    """Drop classes with fewer samples than folds (they cannot be stratified).

    Class names that differ only in case or Unicode normalisation (``Cat`` / ``cat``, ``café``
    typed two ways) stay different classes, as given, with a :class:`LookAlikeClasses` notice
    (unless ``look_alike`` is False: an annotations scan checks every vote instead).
    """
    names = pd.Series(dataset.label_names, dtype=str)
    counts = names.value_counts()
    if look_alike:
        _warn_if_look_alike(counts)
    too_small = counts[counts < folds]
    drop = names.isin(too_small.index).to_numpy()
    classes = sorted(counts.index[counts >= folds])
    if len(classes) < 2:
        raise ScanError(_too_few_classes(counts, folds))
    index = {name: i for i, name in enumerate(classes)}
    return PreparedData(
        dataset=dataset,
        kept=np.flatnonzero(~drop),
        classes=classes,
        labels=np.array([index[n] for n in names[~drop]], dtype=np.int64),
        small_classes=sorted(too_small.index),
        too_small=pd.DataFrame({
            "path": np.asarray(dataset.paths, dtype=object)[drop],
            "given_label": names[drop].to_numpy(dtype=object),
            "reason": [f"class {n!r} has only {counts[n]} sample(s), fewer than the {folds} folds"
                       for n in names[drop]],
        }),
    )


def _warn_if_look_alike(counts: pd.Series, what: str = "class names") -> None:
    """:class:`LookAlikeClasses` naming the labels (``counts``: label -> count) that differ only in case or
    Unicode normalisation."""
    groups: dict[str, list[str]] = {}
    for name in sorted(counts.index):
        groups.setdefault(unicodedata.normalize("NFC", name).casefold(), []).append(name)
    alike = [names for names in groups.values() if len(names) > 1]
    if alike:
        shown = "; ".join(" / ".join(f"{ascii(n)} ({counts[n]})" for n in names) for names in alike[:5])
        warn(f"{len(alike)} group(s) of {what} differ only in case or Unicode normalisation: {shown}. "
                      "They are scanned as different classes; if each group is one class, write its labels one way",
                      LookAlikeClasses)


def _warn_about_annotation_labels(annotations: Annotations) -> None:
    """Notices on the labels of an annotations CSV, before anything is decoded.

    :class:`LookAlikeClasses` for votes that differ only in case (a minority vote ``Cat`` beside
    ``cat`` would silently count as a disagreement), and :class:`UnsharedAnnotatorLabels` for
    annotators none of whose labels any other annotator gave (an ``id`` or ``source`` column of
    a wide CSV read as an annotator).
    """
    table = annotations.table
    _warn_if_look_alike(table["label"].value_counts(), "labels in the annotations (counted in votes)")
    if len(annotations.annotators) < 2:
        return
    n_annotators_of_label = table.groupby("label")["annotator"].nunique()
    shared = (table["label"].map(n_annotators_of_label) > 1).groupby(table["annotator"]).any()
    alone = [name for name in annotations.annotators if not shared[name]]
    if alone:
        shown = "; ".join(f"{ascii(name)} (e.g. {ascii(table['label'][table['annotator'] == name].iloc[0])})"
                          for name in alone[:5])
        warn(f"{len(alone)} annotator(s) gave no label that any other annotator gave: {shown}. If such a column of "
             "the annotations CSV is no annotator (an id, a source, a date), remove it: its values count as votes "
             "and can become classes", UnsharedAnnotatorLabels)


def _too_few_classes(counts: pd.Series, folds: int) -> str:
    found = ", ".join(f"{n!r}: {c}" for n, c in counts.items()) or "none"
    fix = ("Add images or lower --folds." if len(counts) >= 2
           else "A classifier needs at least two classes: add the other classes' folders (or CSV rows).")
    return f"need at least 2 classes with >= {folds} samples each to cross-validate; found {found}. {fix}"


def _scan_images_file(dataset: LoadedDataset, kept: np.ndarray, cache_dir: Path) -> Path:
    """The ``.npy`` file of the scanned uint8 images (N, S, S, 3) that the fold jobs memory-map.

    That is the decode cache itself when every decoded image is scanned; only when classes
    were dropped (or the cache could not be written) is a subset stored, named by content.
    """
    if dataset.images_file is not None and len(kept) == len(dataset):
        return dataset.images_file
    images = dataset.images[kept]
    digest = _pixels_digest(images)  # hashed once: the fold fingerprint reads it back (_content_digest)
    path = cache_dir / f"scan-images-{digest[:20]}.npy"
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda fh: np.save(fh, images), binary=True)
        _keep_digest(path, digest)
    return path


# -------------------------------------------------------------------------- 2. train


def train(prepared: PreparedData, scan_dir: ScanDir, *, cfg: ScanConfig, device,
          executor: FoldExecutor | str | None, progress: bool) -> FoldRun:
    """Train (or resume from ``scan_dir``'s fold store) one model per stratified fold.

    A scan from embeddings or probabilities (``prepared.inputs``) trains heads on the
    embeddings instead, or takes the given probabilities (:func:`labelaudit.byom.train_arrays`).
    """
    if prepared.inputs is not None:
        from labelaudit.byom import train_arrays

        return train_arrays(prepared, cfg=cfg, progress=progress)
    images_path, labels, classes, out = prepared.images_path, prepared.labels, prepared.classes, scan_dir.path
    folds = _fold_assignment(labels, cfg.folds, cfg.seed)
    store = FoldStore(out / "folds", _fingerprint(cfg, device, images_path, labels, folds))
    _warn_if_stale(store, scan_dir, cfg)
    results, resumed, trained_images = _run_folds(
        store, resolve_executor(executor), images_path, labels, len(classes), folds, cfg, progress)
    return FoldRun(results=results, resumed=resumed, images_trained=trained_images)


def _warn_if_stale(store: FoldStore, scan_dir: ScanDir, cfg: ScanConfig) -> None:
    """:class:`StaleFoldsNotice` when ``store`` holds folds none of which this scan can reuse.

    Names the training settings that differ from the last finished scan's (``scan.json``), so
    that a user who meant to re-score (``--recipe``) sees which settings to repeat.
    """
    stored = store.stored_folds()
    if not stored or any(store.load(k) is not None for k in stored):
        return
    try:
        before = scan_dir.read_manifest().config
    except ScanDirError:
        before = {}
    now = cfg.to_dict()
    changed = [f"{name} {before[name]!r} -> {now[name]!r}" for name in TRAINING_FIELDS
               if name in before and before[name] != now.get(name)]
    why = (f"other settings ({'; '.join(changed)})" if changed
           else "other data, labels, device, precision or code version")
    warn(f"the {len(stored)} stored fold(s) in {store.directory} were trained with {why}: training "
                  "again, which replaces them. To re-score the stored folds (--recipe), repeat the settings "
                  "they were trained with.", StaleFoldsNotice)


def _fold_assignment(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold id (N,) of each sample from a seeded stratified K-fold split."""
    assignment = np.empty(len(labels), np.int64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (_, holdout) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        assignment[holdout] = k
    return assignment


def _fingerprint(cfg: ScanConfig, device, images_path: Path, labels: np.ndarray, folds: np.ndarray) -> str:
    """What a stored fold must match to be resumed: settings, code version, device kind and
    arithmetic, data (the decoded pixels, so that files rewritten or copied with the same content,
    which the decode cache sees as new, still resume), labels, split."""
    h = hashlib.sha256()
    for part in (cfg.training_fingerprint(), f"v{TRAINING_VERSION}", device.type,
                 resolve_precision(cfg.precision, device), _content_digest(images_path),
                 labels.tobytes(), folds.tobytes()):
        h.update(part if isinstance(part, bytes) else part.encode())
    return h.hexdigest()[:24]


def _content_digest(images_path: Path) -> str:
    """:func:`_pixels_digest` of the ``.npy`` images at ``images_path``, memory-mapped.

    Kept beside the file (``<name>.sha256``, with the file's size and time, :func:`_keep_digest`), so
    that a re-scan of a cached dataset does not read it all again (about 2 s per million 32 px images
    with SHA instructions, several times that without them or from a cold disk).
    """
    stamp = _file_stamp(images_path)
    try:
        kept_stamp, _, kept = _digest_file(images_path).read_text(encoding="ascii").rpartition(" ")
        if kept_stamp == stamp and len(kept) == 64:
            return kept
    except (OSError, ValueError):
        pass
    digest = _pixels_digest(np.load(images_path, mmap_mode="r"))
    _keep_digest(images_path, digest)
    return digest


def _pixels_digest(images: np.ndarray, chunk_rows: int = 4096) -> str:
    """SHA-256 of the shape, dtype and pixels of ``images`` (N, S, S, 3), read in chunks of rows."""
    h = hashlib.sha256(f"{images.shape}{images.dtype}".encode())
    for start in range(0, len(images), chunk_rows):
        h.update(np.ascontiguousarray(images[start:start + chunk_rows]).data)
    return h.hexdigest()


def _keep_digest(images_path: Path, digest: str) -> None:
    """Store ``digest`` beside ``images_path`` with the file's stamp (a read-only cache: hashed again next time)."""
    text = f"{_file_stamp(images_path)} {digest}"
    try:
        atomic_write(_digest_file(images_path), lambda fh: fh.write(text))
    except OSError:
        pass


def _digest_file(images_path: Path) -> Path:
    return images_path.with_name(images_path.name + ".sha256")


def _file_stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size} {st.st_mtime_ns}"


def _run_folds(store, executor, images_path, labels, n_classes, folds, cfg, progress):
    """Load finished folds from ``store`` and run the rest; return (results, resumed ids, images trained)."""
    results: dict[int, FoldResult] = {}
    for k in range(cfg.folds):
        if (stored := store.load(k)) is not None:
            results[k] = stored
    resumed = sorted(results)
    jobs = [
        FoldJob(fold=k, train_idx=np.flatnonzero(folds != k), holdout_idx=np.flatnonzero(folds == k),
                images_path=str(images_path), labels=labels, n_classes=n_classes,
                config=cfg.to_dict(), embed_all=(k == 0))
        for k in range(cfg.folds) if k not in results
    ]
    total = sum(len(job.train_idx) for job in jobs) * cfg.epochs
    if resumed and progress:
        tqdm.write(f"resuming: folds {', '.join(str(k + 1) for k in resumed)} already trained", file=sys.stderr)
    with progress_bar(total=total, unit="img", unit_scale=True, enabled=progress and bool(jobs),
                      desc="training", smoothing=0.05) as bar:
        report = _FoldProgress(bar, cfg.folds, cfg.epochs)
        for result in executor.map(jobs, report=report):
            store.save(result)
            results[result.fold] = result
            report.finished(result.fold)
    return [results[k] for k in range(cfg.folds)], resumed, total


class _FoldProgress:
    """The training bar's ``report(n, fold, epoch, loss, acc)``: fold, epoch and images/s of each running fold.

    One fold at a time (in process) reads ``fold 2/5 epoch 3/12 640 img/s``; folds running
    at once (Ray) are listed side by side, ``f1 e3/12 610/s | f2 e3/12 598/s``. A fold's
    images/s counts the images reported after its first report (a remote fold's first
    report may already carry many), over the time since then.
    """

    def __init__(self, bar, folds: int, epochs: int) -> None:
        self._bar, self._folds, self._epochs = bar, folds, epochs
        self._running: dict[int, list[float]] = {}  # fold -> [epoch, images since the first report, first, last]
        self._lock = threading.Lock()  # fold threads report while the scan's thread calls finished()

    def __call__(self, n: int, fold: int, epoch: int, loss: float, acc: float) -> None:
        with self._lock:
            self._update(n, fold, epoch, loss, acc)

    def _update(self, n: int, fold: int, epoch: int, loss: float, acc: float) -> None:
        now = time.perf_counter()
        state = self._running.setdefault(fold, [0, -n, now, now])
        state[0], state[1], state[3] = epoch, state[1] + n, now
        self._bar.set_description(self._describe(), refresh=False)
        if loss == loss:  # NaN = no fresh figures this step
            self._bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.2f}", refresh=False)
        self._bar.update(n)

    def finished(self, fold: int) -> None:
        """Drop ``fold`` from the description (its result is in)."""
        with self._lock:
            self._running.pop(fold, None)

    def _describe(self) -> str:
        parts = []
        for fold, (epoch, images, first, last) in sorted(self._running.items()):
            rate = f" {images / (last - first):.0f} img/s" if last > first else ""
            parts.append((fold, int(epoch), rate))
        if len(parts) == 1:
            fold, epoch, rate = parts[0]
            return f"fold {fold + 1}/{self._folds} epoch {epoch + 1}/{self._epochs}{rate}"
        return " | ".join(f"f{fold + 1} e{epoch + 1}/{self._epochs}{rate.replace(' img/s', '/s')}"
                          for fold, epoch, rate in parts)


# -------------------------------------------------------------------------- 3. score


def score(prepared: PreparedData, run: FoldRun, *, cfg: ScanConfig, components: tuple[str, ...]) -> ScoredTable:
    """Signals from the folds' records, combined into ``mislabel_score``, suggestion and flag."""
    results, labels, classes = run.results, prepared.labels, prepared.classes
    if prepared.annotations is not None:
        return _score_consensus(prepared, run, cfg, components)
    signals = compute_signals(results, labels, len(classes))  # flip signals only where flip records exist
    components = tuple(name for name in components if name in signals.table.columns)  # flip signals may be off
    return ScoredTable(scores=_score_table(prepared, signals, components, cfg), signals=signals,
                       components=components)


def _score_table(prepared: PreparedData, signals: Signals, components: tuple[str, ...], cfg: ScanConfig
                 ) -> pd.DataFrame:
    scores = combine(signals.table, components)
    flagged = flag(scores, n_estimated=signals.n_label_issues, threshold=cfg.flag_threshold)
    names = np.asarray(prepared.classes, dtype=object)
    table = pd.DataFrame({
        "path": prepared.paths,
        "given_label": names[prepared.labels],
        "suggested_label": names[suggest(signals.pred_probs, prepared.labels, flagged)],
        "mislabel_score": scores,
        "flagged": flagged,
    })
    return pd.concat([table, signals.table], axis=1)


def _score_consensus(prepared: PreparedData, run: FoldRun, cfg: ScanConfig, components: tuple[str, ...]
                     ) -> ScoredTable:
    """Several annotators per image: the consensus becomes the given label (:mod:`labelaudit.consensus`)."""
    annotations, paths = prepared.annotations, list(prepared.paths)
    found = score_consensus(run.results, prepared.labels, annotations.votes(paths, prepared.classes), paths,
                            prepared.classes, annotations.annotators, components, cfg.flag_threshold)
    return ScoredTable(scores=found.scores, signals=found.signals,
                       components=tuple(found.summary["score_components"]), consensus=found)


# ------------------------------------------------------------------ summary, manifest


def _summary(prepared: PreparedData, run: FoldRun, scored: ScoredTable, device_name: str,
             scan_dir: ScanDir) -> ScanSummary:
    scores, signals = scored.scores, scored.signals
    n = len(scores)
    majority = float(scores["given_label"].value_counts(normalize=True).iloc[0])
    # several annotators: the count is the consensus's expected number of wrong labels, not a tempered count
    # (one annotation per image is a single-label scan: its count is the tempered one)
    consensus = scored.consensus.summary if scored.consensus is not None else None
    by_consensus = bool(consensus) and not consensus.get("one_annotation_per_image")
    n_issues = consensus["estimated_wrong_consensus"] if consensus else signals.n_label_issues
    return ScanSummary(
        n_samples=n,
        n_classes=len(prepared.classes),
        n_skipped=len(prepared.skipped()),
        n_unscored=len(prepared.unscored()),
        n_dropped_small_classes=len(prepared.too_small),
        n_too_large=len(prepared.dataset.too_large),
        n_in_linked_folders=sum(prepared.dataset.linked_folders.values()),
        n_missing_files=prepared.dataset.n_missing_files,
        small_classes=prepared.small_classes,
        empty_classes=list(prepared.dataset.empty_classes),
        estimated_noise_rate=n_issues / n,
        n_estimated_label_issues=n_issues,
        count_temperature=None if by_consensus else signals.count_temperature,
        n_flagged=int(scores["flagged"].sum()),
        holdout_accuracy=signals.holdout_accuracy,
        majority_rate=majority,
        # a quarter of the way from always-the-largest-class to perfect: below that, rankings are noise
        weak_models=bool(signals.holdout_accuracy < majority + 0.25 * (1 - majority)),
        fold_holdout_accuracy=[r.holdout_accuracy for r in run.results],
        folds_resumed=run.resumed,
        device=device_name,
        scan_dir=str(scan_dir.path.resolve()),
        consensus=consensus,
    )


def _versions() -> dict[str, str]:
    import cleanlab
    import sklearn
    import torch

    versions = {"labelaudit": __version__, "python": platform.python_version(), "torch": torch.__version__,
                "cleanlab": cleanlab.__version__, "numpy": np.__version__, "scikit-learn": sklearn.__version__,
                "pandas": pd.__version__}
    if torch.version.cuda:  # a CUDA build of PyTorch (whether or not the scan used the GPU)
        versions.update(cuda=torch.version.cuda, cudnn=str(torch.backends.cudnn.version()))
    return versions


def _signal_info(signals: Signals) -> dict[str, dict[str, Any]]:
    """Direction and description of every signal stored."""
    info = {name: {"direction": s.direction, "description": s.description}
            for name, s in SIGNALS.items() if name in signals.table.columns}
    return {**{name: {"direction": d, "description": text} for name, (d, text) in CONSENSUS_SIGNALS.items()
               if name in signals.table.columns}, **info}


def _manifest(prepared: PreparedData, scored: ScoredTable, summary: ScanSummary, cfg: ScanConfig,
              timings: dict[str, float], labels_csv, annotations_csv=None) -> ScanManifest:
    return ScanManifest(
        created_at=storage.utc_now(microseconds=True),  # the scan's identity too (stale pages, stats cache)
        dataset_root=str(prepared.dataset.root),
        labels_csv=str(Path(labels_csv).resolve()) if labels_csv else None,
        annotations_csv=str(Path(annotations_csv).resolve()) if annotations_csv else None,
        summary=summary,
        classes=list(prepared.classes),
        config=cfg.to_dict(),
        score_components=list(scored.components),
        signals=_signal_info(scored.signals),
        noise_matrix=scored.signals.noise_matrix,
        versions=_versions(),
        timings=timings,
    )


# --------------------------------------------------------------------------- writing


def _top_classes(pred_probs: np.ndarray, classes: list[str], k: int = 5) -> list[list[tuple[str, float]]]:
    order = np.argsort(-pred_probs, axis=1)[:, :k]
    return [[(classes[j], float(p[j])) for j in row] for p, row in zip(pred_probs, order)]


def write_outputs(scan_dir: ScanDir, prepared: PreparedData, run: FoldRun, scored: ScoredTable,
                  manifest: ScanManifest) -> None:
    """Write every file of the scan directory, each atomically, the manifest last.

    The previous manifest is removed first: until the new one is written the folder is
    not a complete scan (a scan killed while writing is never mistaken for a finished one).
    """
    scan_dir.manifest_path.unlink(missing_ok=True)
    signals, classes = scored.signals, prepared.classes
    noise_matrix = pd.DataFrame(signals.noise_matrix, index=pd.Index(classes, name="given \\ true"), columns=classes)
    atomic_write(scan_dir.scores, lambda fh: scored.scores.to_csv(fh, index=False))
    skipped = prepared.skipped().assign(path=lambda t: t["path"].map(escape_controls))  # a report: one line per row
    atomic_write(scan_dir.skipped, lambda fh: skipped.to_csv(fh, index=False))
    atomic_write(scan_dir.noise_matrix, lambda fh: noise_matrix.to_csv(fh))
    atomic_write(scan_dir.pred_probs, lambda fh: np.save(fh, signals.pred_probs), binary=True)
    atomic_write(scan_dir.pred_probs_image, lambda fh: np.save(fh, signals.pred_probs_image), binary=True)
    scan_dir.map.unlink(missing_ok=True)  # the review app's map of the earlier scan's embeddings
    if (embeddings := run.embeddings) is not None:
        atomic_write(scan_dir.embeddings, lambda fh: np.save(fh, embeddings), binary=True)
    else:  # a scan from predicted probabilities has none: an earlier scan's would name other rows
        scan_dir.embeddings.unlink(missing_ok=True)
    if scored.consensus is not None:
        atomic_write(scan_dir.annotators, lambda fh: scored.consensus.annotators.to_csv(fh, index=False))
    else:  # a re-scan without annotations leaves none of an earlier scan's behind
        scan_dir.annotators.unlink(missing_ok=True)
        scan_dir.provisional_labels.unlink(missing_ok=True)
    _write_database(scan_dir, prepared, scored, manifest)
    scan_dir.write_manifest(manifest)


def _write_database(scan_dir: ScanDir, prepared: PreparedData, scored: ScoredTable, manifest: ScanManifest) -> None:
    """Samples, classes, unscored images and the little metadata the database keeps of its own."""
    classes, signals = prepared.classes, scored.signals
    conn = storage.connect(scan_dir.database)
    try:
        storage.write_scan(
            conn, scored.scores, classes=classes,
            class_counts=np.bincount(prepared.labels, minlength=len(classes)),
            top_classes=_top_classes(signals.pred_probs, classes),
            signal_columns=list(signals.table.columns),
            unscored=prepared.unscored(),
            votes=prepared.annotations.table if prepared.annotations is not None else None,
            annotators=scored.consensus.annotators if scored.consensus is not None else None,
            meta={"created_at": manifest.created_at, "signal_columns": list(signals.table.columns),
                  "dataset_root": manifest.dataset_root},
        )
    finally:
        conn.close()
