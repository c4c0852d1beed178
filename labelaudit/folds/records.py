"""What a fold records: named per-sample arrays, each name declared once here.

A fold's training fills :attr:`FoldResult.records` with arrays whose names are keys of
:data:`RECORDS`; the fold store saves and loads any of them, and a signal names the
records it needs (:attr:`labelaudit.signals.Signal.requires`). A record that a fold did
not make (the mirror views with flips off) is absent, never an empty stand-in.

This module needs only numpy, so signals and stores can use it without loading PyTorch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = ["Record", "RECORDS", "Scope", "FoldResult"]

#: Which samples a record's per-sample axis follows:
#: ``"train"`` -- the last axis follows ``train_idx`` (shape ``(T, n_train)``, e.g. one row per epoch);
#: ``"holdout"`` -- the first axis follows ``holdout_idx`` (shape ``(n_holdout, ...)``);
#: ``"all"`` -- the first axis covers all ``N`` samples (shape ``(N, ...)``).
Scope = Literal["train", "holdout", "all"]


@dataclass(frozen=True)
class Record:
    """Declaration of one named fold record.

    Attributes
    ----------
    name : str
        Key in :attr:`FoldResult.records` and in the stored fold file.
    scope : {"train", "holdout", "all"}
        Which samples the record covers (see :data:`Scope`).
    description : str
        What the array holds, with its shape and dtype.
    """

    name: str
    scope: Scope
    description: str

    def check_shape(self, array: np.ndarray, n_train: int, n_holdout: int) -> None:
        """Raise ValueError unless ``array``'s per-sample axis has the length its scope asks for."""
        wrong = (array.ndim == 0
                 or (self.scope == "train" and array.shape[-1] != n_train)
                 or (self.scope == "holdout" and array.shape[0] != n_holdout))
        if wrong:
            raise ValueError(f"record {self.name!r} ({self.scope} scope) has shape {array.shape}, "
                             f"fold has {n_train} training and {n_holdout} held-out samples")


RECORDS: Mapping[str, Record] = {r.name: r for r in (
    Record("train_margins", "train", "float32 (E, n_train): per epoch, given-label logit minus the largest "
           "other logit of each training sample, from its (augmented) training batch"),
    Record("train_losses", "train", "float32 (E, n_train): per epoch, training cross-entropy of each sample"),
    Record("train_correct", "train", "bool (E, n_train): per epoch, whether the training pass predicted the "
           "given label"),
    Record("view_losses", "train", "float32 (L, n_train): in-sample loss of the un-augmented image in eval "
           "mode after each late epoch (flips on only)"),
    Record("view_flip_losses", "train", "float32 (L, n_train): the same for the mirror image (flips on only)"),
    Record("view_flip_agree", "train", "bool (L, n_train): image and mirror got the same predicted class "
           "(flips on only)"),
    Record("holdout_probs", "holdout", "float32 (n_holdout, C): out-of-sample softmax of the image"),
    Record("holdout_probs_flip", "holdout", "float32 (n_holdout, C): out-of-sample softmax of the mirror "
           "(flips on only)"),
    Record("all_features", "all", "float16 (N, D): unit-norm features of every sample from this fold's "
           "model (one fold only, for nearest-neighbour look-ups)"),
    Record("knn_neighbours", "all", "int64 (N, k): each sample's k nearest neighbours (cosine) in the input "
           "embeddings of a scan from --features, itself excluded, most similar first (computed once, not per fold)"),
    Record("knn_similarity", "all", "float32 (N, k): the cosine similarity of each of those neighbours"),
)}


@dataclass
class FoldResult:
    """Outputs of one fold: which samples it trained on and held out, and its named records.

    Attributes
    ----------
    fold : int
        0-based fold number.
    train_idx, holdout_idx : numpy.ndarray of int64, shapes (n_train,) and (n_holdout,)
        Samples trained on and predicted out of sample.
    holdout_accuracy : float
        Out-of-sample accuracy against the given labels.
    records : dict of str to numpy.ndarray
        Named arrays; every key is declared in :data:`RECORDS`, and its shape fits the
        record's scope (checked on construction: ValueError otherwise).
    timings : dict of str to float
        Seconds spent training and predicting.

    Notes
    -----
    ``result.<record name>`` reads a declared record too, None when the fold did not make
    it (kept for callers of the former one-field-per-array layout); prefer :meth:`get`.
    """

    fold: int
    train_idx: np.ndarray
    holdout_idx: np.ndarray
    holdout_accuracy: float
    records: dict[str, np.ndarray] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.train_idx = np.asarray(self.train_idx)
        self.holdout_idx = np.asarray(self.holdout_idx)
        for name, array in self.records.items():
            if name not in RECORDS:
                raise ValueError(f"undeclared fold record {name!r}; declare it in labelaudit.folds.records.RECORDS")
            RECORDS[name].check_shape(np.asarray(array), len(self.train_idx), len(self.holdout_idx))

    def get(self, name: str) -> np.ndarray | None:
        """The record ``name``, or None when this fold did not make it."""
        return self.records.get(name)

    def __getattr__(self, name: str) -> np.ndarray | None:
        if name in RECORDS:  # only reached for names that are not real attributes
            return self.__dict__.get("records", {}).get(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
