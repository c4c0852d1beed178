"""The folds' records of one scan, gathered per sample for the signals."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cached_property

import numpy as np

from labelaudit.errors import ScanError, TrainingDiverged
from labelaudit.folds.records import RECORDS, FoldResult

__all__ = ["Evidence"]


class Evidence:
    """What the signals compute from: fold records, labels, and results shared between signals.

    Parameters
    ----------
    results : sequence of FoldResult
        One per fold; their ``holdout_idx`` partition ``range(N)``.
    labels : numpy.ndarray of int, shape (N,)
        Given labels.
    n_classes : int
        Number of classes ``C``.

    Raises
    ------
    ScanError
        The held-out sets do not cover every sample, or a train/holdout record is made
        by some folds only.
    TrainingDiverged
        A held-out record holds non-finite values.
    """

    def __init__(self, results: Sequence[FoldResult], labels: np.ndarray, n_classes: int) -> None:
        self.results = list(results)
        self.labels = np.asarray(labels)
        self.n = len(self.labels)
        self.n_classes = n_classes
        self._held_out: dict[str, np.ndarray] = {}
        self._check_coverage()
        self._check_records()

    def _check_coverage(self) -> None:
        held_out = np.zeros(self.n, bool)
        for r in self.results:
            held_out[r.holdout_idx] = True
        if not held_out.all():
            raise ScanError("the folds' held-out sets do not cover every sample")

    def _check_records(self) -> None:
        for name, record in RECORDS.items():
            made = sum(name in r.records for r in self.results)
            if record.scope != "all" and 0 < made < len(self.results):
                raise ScanError(f"fold record {name!r} is missing from some folds")
        for name in (n for n, record in RECORDS.items() if record.scope == "holdout" and self.has(n)):
            values = self.held_out(name)
            if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
                raise TrainingDiverged(f"non-finite out-of-sample values in {name!r}: a fold's training diverged")

    def has(self, name: str) -> bool:
        """Whether record ``name`` is available: made by every fold (any fold for all-scope records)."""
        made = [name in r.records for r in self.results]
        return bool(made) and (any(made) if RECORDS[name].scope == "all" else all(made))

    def in_sample_mean(self, per_fold: Callable[[Mapping[str, np.ndarray]], np.ndarray],
                       requires: Sequence[str]) -> np.ndarray:
        """Mean over the folds a sample was trained in of ``per_fold(records)``.

        Parameters
        ----------
        per_fold : callable
            Maps one fold's ``requires`` records (train scope, shape (T, n_train)) to
            values of shape (n_train,).
        requires : sequence of str
            Record names handed to ``per_fold``.

        Returns
        -------
        numpy.ndarray of float64, shape (N,)
            NaN for a sample trained in no fold.
        """
        total, count = np.zeros(self.n), np.zeros(self.n)
        for r in self.results:
            np.add.at(total, r.train_idx, per_fold({name: r.records[name] for name in requires}))
            np.add.at(count, r.train_idx, 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / np.maximum(count, 1), np.nan)

    def held_out(self, name: str) -> np.ndarray:
        """Holdout-scope record ``name`` of every sample, from the fold that held it out, shape (N, ...)."""
        if name not in self._held_out:
            first = self.results[0].records[name]
            fill = np.nan if np.issubdtype(first.dtype, np.floating) else 0
            full = np.full((self.n, *first.shape[1:]), fill, first.dtype)
            for r in self.results:
                full[r.holdout_idx] = r.records[name]
            self._held_out[name] = full
        return self._held_out[name]

    @cached_property
    def pred_probs(self) -> np.ndarray:
        """Out-of-sample probabilities (N, C) for confident learning: mean of image and mirror when both exist."""
        probs = self.held_out("holdout_probs")
        if self.has("holdout_probs_flip"):
            return (probs + self.held_out("holdout_probs_flip")) / 2
        return probs

    @cached_property
    def confident_learning(self) -> dict[str, np.ndarray | int | float]:
        """:func:`labelaudit.signals.confident.confident_learning` on :attr:`pred_probs`, computed once."""
        from labelaudit.signals.confident import confident_learning

        return confident_learning(self.labels, self.pred_probs)
