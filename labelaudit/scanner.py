"""The scan pipeline: dataset folder in, scan directory with ranked mislabel scores out.

``scan()`` loads and decodes the images (cached), drops classes too small for the
folds, trains one model per stratified fold through an executor (finished folds are
kept on disk, so a killed scan resumes), turns the folds' records into signals,
combines them into ``mislabel_score`` and writes ``scores.csv``, ``skipped.csv``,
``noise_matrix.csv``, ``pred_probs.npy``, ``embeddings.npy``, ``labelaudit.db`` and
``scan.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold
from tqdm.auto import tqdm

from labelaudit.progress import progress_bar

from labelaudit import __version__
from labelaudit.scandir import database as storage
from labelaudit.config import ScanConfig
from labelaudit.data import LoadedDataset, load_dataset
from labelaudit.folds.executor import FoldExecutor, FoldStore, InProcessExecutor
from labelaudit.scoring import DEFAULT_RECIPE, DEFAULT_RECIPE_NO_FLIP, RECIPES, combine, flag, suggest
from labelaudit.signals.core import SIGNALS, Signals, compute_signals
from labelaudit.folds.training import TRAINING_VERSION, FoldJob, FoldResult, resolve_device

__all__ = ["scan", "ScanError", "SCORE_COLUMNS"]

SCORE_COLUMNS = ["path", "given_label", "suggested_label", "mislabel_score", "flagged"]


class ScanError(ValueError):
    """A scan that cannot run, with a message meant for the user."""


def scan(
    data_dir: str | os.PathLike,
    *,
    out: str | os.PathLike,
    labels_csv: str | os.PathLike | None = None,
    config: ScanConfig | None = None,
    executor: FoldExecutor | None = None,
    progress: bool = True,
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
    config : ScanConfig, optional
        All settings; keyword ``settings`` (e.g. ``epochs=5``) override its fields.
    executor : FoldExecutor, optional
        Runs the fold jobs; default :class:`~labelaudit.executor.InProcessExecutor`.
    progress : bool
        Show progress bars on stderr.

    Returns
    -------
    pandas.DataFrame, shape (N, 5 + n_signals)
        ``scores.csv``: one row per scanned sample with ``path``, ``given_label``,
        ``suggested_label``, ``mislabel_score`` (in [0, 1], higher = more likely
        mislabeled), ``flagged`` and one column per signal. ``.attrs["summary"]`` holds
        the summary figures written to ``scan.json``.
    """
    unknown = sorted(set(settings) - set(ScanConfig.__dataclass_fields__))
    if unknown:
        raise TypeError(f"scan() got unknown setting(s) {', '.join(unknown)}; settings are the fields of "
                        f"ScanConfig: {', '.join(ScanConfig.__dataclass_fields__)} (labels: use labels_csv=)")
    cfg = replace(config or ScanConfig(), **settings)
    components = _recipe_components(cfg.recipe, cfg.flip)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    dataset = load_dataset(data_dir, labels_csv=labels_csv, image_size=cfg.image_size, workers=cfg.workers,
                           cache_dir=out / "cache", exclude=out, progress=progress)
    timings["load_s"] = time.perf_counter() - started
    kept, classes, labels, small, small_classes = _keep_trainable_classes(dataset, cfg.folds)
    images_path = _scan_images_file(dataset, kept, out / "cache")

    phase = time.perf_counter()
    folds = _fold_assignment(labels, cfg.folds, cfg.seed)
    store = FoldStore(out / "folds", _fingerprint(cfg, device, images_path, labels, folds))
    results, resumed, trained_images = _run_folds(
        store, executor or InProcessExecutor(), images_path, labels, len(classes), folds, cfg, progress)
    timings["train_s"] = time.perf_counter() - phase

    phase = time.perf_counter()
    signals = compute_signals(results, labels, len(classes), flip=cfg.flip)
    components = tuple(name for name in components if name in signals.table.columns)  # flip signals may be off
    scores = _score_table(dataset, kept, classes, labels, signals, components, cfg)
    timings["signals_s"] = time.perf_counter() - phase
    timings["total_s"] = time.perf_counter() - started
    timings["train_images_per_s"] = trained_images / timings["train_s"] if trained_images else float("nan")

    skipped = pd.concat([dataset.skipped, small], ignore_index=True)
    summary = _summary(scores, classes, skipped, small, small_classes, signals, results, resumed, device, out)
    embeddings = next((r.all_features for r in results if r.all_features is not None), None)
    _write_outputs(out, dataset, scores, skipped, classes, labels, signals, embeddings, summary,
                   cfg, components, timings, device, labels_csv)
    scores.attrs["summary"] = summary
    return scores


def _recipe_components(recipe: str, flip: bool) -> tuple[str, ...]:
    default = DEFAULT_RECIPE if flip else DEFAULT_RECIPE_NO_FLIP
    name = default if recipe == "default" else recipe
    if name not in RECIPES:
        raise ScanError(f"unknown score recipe {recipe!r}; choose one of: default, {', '.join(RECIPES)}")
    return RECIPES[name]


def _keep_trainable_classes(dataset: LoadedDataset, folds: int):
    """Drop classes with fewer samples than folds (they cannot be stratified).

    Returns
    -------
    kept : numpy.ndarray of int, shape (N,)
        Rows of ``dataset`` that are scanned.
    classes : list of str
        Sorted names of the kept classes.
    labels : numpy.ndarray of int64, shape (N,)
        Class ids of the kept rows.
    small : pandas.DataFrame
        ``path, reason`` rows for the dropped samples.
    small_classes : list of str
        Names of the dropped classes.
    """
    names = pd.Series(dataset.label_names, dtype=str)
    counts = names.value_counts()
    too_small = counts[counts < folds]
    drop = names.isin(too_small.index).to_numpy()
    small = pd.DataFrame({
        "path": np.asarray(dataset.paths, dtype=object)[drop],
        "reason": [f"class {n!r} has only {counts[n]} sample(s), fewer than the {folds} folds"
                   for n in names[drop]],
    })
    classes = sorted(counts.index[counts >= folds])
    if len(classes) < 2:
        found = ", ".join(f"{n!r}: {c}" for n, c in counts.items()) or "none"
        fix = ("Add images or lower --folds." if len(counts) >= 2
               else "A classifier needs at least two classes: add the other classes' folders (or CSV rows).")
        raise ScanError(f"need at least 2 classes with >= {folds} samples each to cross-validate; "
                        f"found {found}. {fix}")
    kept = np.flatnonzero(~drop)
    index = {name: i for i, name in enumerate(classes)}
    labels = np.array([index[n] for n in names[~drop]], dtype=np.int64)
    return kept, classes, labels, small, sorted(too_small.index)


def _scan_images_file(dataset: LoadedDataset, kept: np.ndarray, cache_dir: Path) -> Path:
    """The ``.npy`` file of the scanned uint8 images (N, S, S, 3) that the fold jobs memory-map.

    That is the decode cache itself when every decoded image is scanned; only when classes
    were dropped (or the cache could not be written) is a subset stored, named by content.
    """
    if dataset.images_file is not None and len(kept) == len(dataset):
        return dataset.images_file
    images = dataset.images[kept]
    digest = hashlib.sha256(np.ascontiguousarray(images).data).hexdigest()[:20]
    path = cache_dir / f"scan-images-{digest}.npy"
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, images)
        os.replace(tmp, path)
    return path


def _fold_assignment(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold id (N,) of each sample from a seeded stratified K-fold split."""
    assignment = np.empty(len(labels), np.int64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (_, holdout) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        assignment[holdout] = k
    return assignment


def _fingerprint(cfg: ScanConfig, device, images_path: Path, labels: np.ndarray, folds: np.ndarray) -> str:
    """What a stored fold must match to be resumed: settings, code version, device kind, data, split."""
    h = hashlib.sha256()
    for part in (cfg.training_fingerprint(), f"v{TRAINING_VERSION}", device.type, images_path.name,
                 labels.tobytes(), folds.tobytes()):
        h.update(part if isinstance(part, bytes) else part.encode())
    return h.hexdigest()[:24]


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
        def report(n: int, fold: int, epoch: int, loss: float, acc: float) -> None:
            bar.set_description(f"fold {fold + 1}/{cfg.folds} epoch {epoch + 1}/{cfg.epochs}", refresh=False)
            if loss == loss:  # NaN = no fresh figures this step
                bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.2f}", refresh=False)
            bar.update(n)

        for result in executor.map(jobs, report=report):
            store.save(result)
            results[result.fold] = result
    return [results[k] for k in range(cfg.folds)], resumed, total


def _score_table(dataset, kept, classes, labels, signals: Signals, components, cfg) -> pd.DataFrame:
    scores = combine(signals.table, components)
    flagged = flag(scores, n_estimated=signals.n_label_issues, threshold=cfg.flag_threshold)
    names = np.asarray(classes, dtype=object)
    table = pd.DataFrame({
        "path": np.asarray(dataset.paths, dtype=object)[kept],
        "given_label": names[labels],
        "suggested_label": names[suggest(signals.pred_probs)],
        "mislabel_score": scores,
        "flagged": flagged,
    })
    return pd.concat([table, signals.table], axis=1)


def _device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})"


def _summary(scores, classes, skipped, small, small_classes, signals, results, resumed, device, out) -> dict:
    n = len(scores)
    majority = float(scores["given_label"].value_counts(normalize=True).iloc[0])
    return {
        "n_samples": n,
        "n_classes": len(classes),
        "n_skipped": len(skipped),
        "n_dropped_small_classes": len(small),
        "small_classes": small_classes,
        "estimated_noise_rate": signals.n_label_issues / n,
        "n_estimated_label_issues": signals.n_label_issues,
        "n_flagged": int(scores["flagged"].sum()),
        "holdout_accuracy": signals.holdout_accuracy,
        "majority_rate": majority,
        # a quarter of the way from always-the-largest-class to perfect: below that, rankings are noise
        "weak_models": bool(signals.holdout_accuracy < majority + 0.25 * (1 - majority)),
        "fold_holdout_accuracy": [r.holdout_accuracy for r in results],
        "folds_resumed": resumed,
        "device": _device_name(device),
        "scan_dir": str(out.resolve()),
    }


def _versions() -> dict[str, str]:
    import cleanlab
    import sklearn
    import torch

    return {"labelaudit": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "cleanlab": cleanlab.__version__, "numpy": np.__version__, "scikit-learn": sklearn.__version__,
            "pandas": pd.__version__}


def _top_classes(pred_probs: np.ndarray, classes: list[str], k: int = 5) -> list[list[tuple[str, float]]]:
    order = np.argsort(-pred_probs, axis=1)[:, :k]
    return [[(classes[j], float(p[j])) for j in row] for p, row in zip(pred_probs, order)]


def _write_outputs(out, dataset, scores, skipped, classes, labels, signals, embeddings, summary,
                   cfg, components, timings, device, labels_csv) -> None:
    noise_matrix = pd.DataFrame(signals.noise_matrix, index=pd.Index(classes, name="given \\ true"), columns=classes)
    _atomic_write(out / "scores.csv", lambda fh: scores.to_csv(fh, index=False))
    _atomic_write(out / "skipped.csv", lambda fh: skipped.to_csv(fh, index=False))
    _atomic_write(out / "noise_matrix.csv", lambda fh: noise_matrix.to_csv(fh))
    _atomic_write(out / "pred_probs.npy", lambda fh: np.save(fh, signals.pred_probs), binary=True)
    _atomic_write(out / "pred_probs_image.npy", lambda fh: np.save(fh, signals.pred_probs_image), binary=True)
    if embeddings is not None:
        _atomic_write(out / "embeddings.npy", lambda fh: np.save(fh, embeddings), binary=True)
    created = storage.utc_now()
    scan_info = {
        "created_at": created,
        "dataset_root": str(dataset.root),
        "labels_csv": str(Path(labels_csv).resolve()) if labels_csv else None,
        "config": cfg.to_dict(),
        "score_components": list(components),
        "signals": {name: {"direction": s.direction, "description": s.description}
                    for name, s in SIGNALS.items() if name in signals.table.columns},
        "versions": _versions(),
        "device": summary["device"],
        "timings": timings,
        "summary": summary,
    }
    text = json.dumps(storage.json_safe(scan_info), indent=2)
    _atomic_write(out / "scan.json", lambda fh: fh.write(text))
    conn = storage.connect(out / storage.DB_NAME)
    try:
        storage.write_scan(
            conn, scores, classes=classes, class_counts=np.bincount(labels, minlength=len(classes)),
            top_classes=_top_classes(signals.pred_probs, classes),
            signal_columns=list(signals.table.columns),
            meta={"dataset_root": str(dataset.root), "summary": summary, "config": cfg.to_dict(),
                  "noise_matrix": {"classes": classes, "matrix": signals.noise_matrix},
                  "signal_columns": list(signals.table.columns), "created_at": created,
                  "score_components": list(components), "timings": timings},
        )
    finally:
        conn.close()


def _atomic_write(path: Path, write, *, binary: bool = False) -> None:
    """Call ``write(file)`` on a temporary file, then rename it over ``path``: never half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb" if binary else "w", encoding=None if binary else "utf-8", newline=None if binary else "") as fh:
        write(fh)
    os.replace(tmp, path)
