"""Bring your own model: the prepare and train steps of a scan from embeddings or probabilities.

:func:`labelaudit.scanner.scan` calls these instead of :func:`~labelaudit.scanner.prepare`
and :func:`~labelaudit.scanner.train` when ``features`` or ``pred_probs`` are given; the
steps after them (signals, score, scan directory, review app, export) are the same.

* :func:`prepare_arrays` -- list the dataset's files without decoding them, align the
  arrays to them (:mod:`labelaudit.data.arrays`), keep the classes the folds can split;
* :func:`train_arrays` -- ``features``: a linear and an MLP head per fold, the one with
  the lower held-out loss kept (:mod:`labelaudit.folds.heads`); ``pred_probs``: the
  user's probabilities as the one held-out record (no training, so no loss-dynamics or
  flip records); with ``features`` also the nearest neighbours for the kNN signal
  (:mod:`labelaudit.signals.knn`).
"""

from __future__ import annotations

import os
import time

import numpy as np

from labelaudit.config import ScanConfig
from labelaudit.data.arrays import ArrayInputs, align_inputs
from labelaudit.data.loading import list_dataset
from labelaudit.errors import InputArrayError
from labelaudit.folds.heads import HeadSettings, train_heads
from labelaudit.folds.records import FoldResult
from labelaudit.folds.training import resolve_device, resolve_precision
from labelaudit.scandir import ScanDir, other_scan_reason
from labelaudit.scanner import FoldRun, PreparedData, _fold_assignment, _keep_trainable_classes
from labelaudit.signals.knn import KNN_K, KNN_REFERENCE, nearest_neighbours

__all__ = ["prepare_arrays", "train_arrays"]


def prepare_arrays(data_dir: str | os.PathLike, scan_dir: ScanDir, inputs: ArrayInputs, *,
                   labels_csv: str | os.PathLike | None, cfg: ScanConfig) -> PreparedData:
    """List the dataset (nothing decoded), align ``inputs`` to it and keep the scannable classes.

    With ``features`` the classes need ``cfg.folds`` samples each (stratified folds); with
    ``pred_probs`` every class is kept and the array needs one column per class, in sorted
    class-name order.

    Raises
    ------
    DatasetError
        Nothing listed in ``data_dir``; :class:`~labelaudit.errors.InputArrayError` for
        arrays that do not fit it.
    ScanError
        Fewer than two classes (with enough samples).
    """
    dataset = list_dataset(data_dir, labels_csv=labels_csv, exclude=scan_dir.own_paths(),
                           skip_folder=other_scan_reason)
    aligned = align_inputs(inputs, dataset)
    prepared = _keep_trainable_classes(dataset, 1 if aligned.mode == "pred_probs" else cfg.folds)
    if aligned.pred_probs is not None:
        _check_columns(aligned, prepared.classes)
    prepared.inputs = aligned
    return prepared


def _check_columns(inputs: ArrayInputs, classes: list[str]) -> None:
    n_columns = inputs.pred_probs.values.shape[1]
    if n_columns != len(classes):
        shown = ", ".join(classes[:12]) + (", ..." if len(classes) > 12 else "")
        raise InputArrayError(f"{inputs.pred_probs.where()} has {n_columns} columns but the dataset has "
                              f"{len(classes)} classes; one column per class, in sorted name order: {shown}")


def _rows(values: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """``values[kept]``, without a copy when every row is kept."""
    return values if len(kept) == len(values) else values[kept]


def train_arrays(prepared: PreparedData, *, cfg: ScanConfig, progress: bool,
                 head_settings: HeadSettings | None = None) -> FoldRun:
    """The folds' records from the arrays: trained heads, or the user's own probabilities.

    Returns
    -------
    FoldRun
        ``features``: L2-normalised input embeddings (float16, for ``embeddings.npy``);
        ``inputs``: what the scan was computed from (``scan.json``'s ``inputs``).
    """
    inputs, kept, labels = prepared.inputs, prepared.kept, prepared.labels
    described = inputs.describe()
    if inputs.pred_probs is not None:
        results, trained = [_given_probabilities(_rows(inputs.pred_probs.values, kept), labels)], 0
    else:
        flip = None if inputs.features_flip is None else _rows(inputs.features_flip.values, kept)
        settings = head_settings or HeadSettings()
        started = time.perf_counter()
        heads = train_heads(_rows(inputs.features.values, kept), labels, _fold_assignment(labels, cfg.folds, cfg.seed),
                            len(prepared.classes), features_flip=flip, seed=cfg.seed, device=cfg.device,
                            precision=cfg.precision, settings=settings, progress=progress)
        results, trained = heads.results, heads.images_trained
        described["head"] = {"kind": heads.kind, "holdout_losses": heads.holdout_losses,
                             "seconds": round(time.perf_counter() - started, 2), **settings.to_dict()}
    features = None
    if inputs.features is not None:
        features = _rows(inputs.features.values, kept)
        precision = resolve_precision(cfg.precision, resolve_device(cfg.device))
        started = time.perf_counter()
        neighbours, similarity = nearest_neighbours(features, KNN_K, reference=KNN_REFERENCE, seed=cfg.seed,
                                                    precision=precision)
        results[0].records.update(knn_neighbours=neighbours, knn_similarity=similarity)
        described["knn"] = {"k": int(neighbours.shape[1]), "reference_rows": min(len(features), KNN_REFERENCE),
                            "seconds": round(time.perf_counter() - started, 2)}
    return FoldRun(results=results, resumed=[], images_trained=trained,
                   features=None if features is None else _unit_rows(features), inputs=described)


def _given_probabilities(pred_probs: np.ndarray, labels: np.ndarray) -> FoldResult:
    """The user's out-of-sample probabilities as one fold that held every sample out and trained on none."""
    n = len(labels)
    accuracy = float((pred_probs.argmax(1) == labels).mean())
    return FoldResult(fold=0, train_idx=np.zeros(0, np.int64), holdout_idx=np.arange(n), holdout_accuracy=accuracy,
                      records={"holdout_probs": np.asarray(pred_probs, dtype=np.float32)})


def _unit_rows(features: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """L2-normalised rows as float16 (N, D), computed in chunks."""
    out = np.empty(features.shape, np.float16)
    for start in range(0, len(features), chunk):
        block = np.asarray(features[start:start + chunk], dtype=np.float32)
        out[start:start + chunk] = block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
    return out
