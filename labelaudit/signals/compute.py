"""From the folds' records to the table of signals a scan scores and stores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from labelaudit.folds.records import FoldResult
from labelaudit.signals.evidence import Evidence
from labelaudit.signals.registry import SIGNALS, SignalRegistry

__all__ = ["Signals", "compute_signals"]


@dataclass
class Signals:
    """All signals of a scan.

    Attributes
    ----------
    table : pandas.DataFrame, shape (N, n_signals)
        One column per computed signal, in registry order (signals whose records the
        folds did not make, e.g. the flip signals with flips off, are absent).
    pred_probs : numpy.ndarray of float32, shape (N, C)
        Out-of-sample probabilities used for confident learning (mean of image and mirror
        when flips are on).
    pred_probs_image : numpy.ndarray of float32, shape (N, C)
        Out-of-sample probabilities of the image alone (the plain cleanlab input).
    noise_matrix : numpy.ndarray, shape (C, C)
        ``noise_matrix[i, j]`` = estimated P(given label = i | true label = j).
    n_label_issues : int
        Confident learning's estimate of the number of mislabeled samples (on the tempered
        probabilities: :func:`labelaudit.signals.confident.temper`).
    holdout_accuracy : float
        Out-of-sample accuracy of :attr:`pred_probs` against the given labels.
    count_temperature : float
        The temperature of that count (1 = the probabilities as they are).
    """

    table: pd.DataFrame
    pred_probs: np.ndarray
    pred_probs_image: np.ndarray
    noise_matrix: np.ndarray
    n_label_issues: int
    holdout_accuracy: float
    count_temperature: float = 1.0


def compute_signals(results: Sequence[FoldResult], labels: np.ndarray, n_classes: int, *,
                    registry: SignalRegistry | None = None) -> Signals:
    """Compute every registered signal whose required records all folds made.

    Parameters
    ----------
    results : sequence of FoldResult
        One per fold; their ``holdout_idx`` partition ``range(N)``; each has at least the
        ``holdout_probs`` record.
    labels : numpy.ndarray of int, shape (N,)
        Given labels.
    n_classes : int
        Number of classes ``C``.
    registry : SignalRegistry, optional
        The signals to compute; default :data:`labelaudit.signals.SIGNALS`.

    Returns
    -------
    Signals
        ``table`` columns oriented per signal (see each signal's ``direction``: +1 =
        higher is more likely mislabeled, -1 = lower is).

    Raises
    ------
    ScanError
        The held-out sets do not cover every sample, or folds made different records.
    TrainingDiverged
        Non-finite out-of-sample probabilities.
    ValueError
        A signal returned values of another shape than (N,).
    """
    evidence = Evidence(results, labels, n_classes)
    registry = SIGNALS if registry is None else registry
    table = {name: _values(signal, evidence) for name, signal in registry.items()
             if all(evidence.has(record) for record in signal.requires)}
    cl = evidence.confident_learning
    pred_probs = evidence.pred_probs
    return Signals(
        table=pd.DataFrame(table),
        pred_probs=pred_probs.astype(np.float32),
        pred_probs_image=evidence.held_out("holdout_probs"),
        noise_matrix=cl["noise_matrix"],
        n_label_issues=cl["n_label_issues"],
        holdout_accuracy=float((pred_probs.argmax(1) == evidence.labels).mean()),
        count_temperature=cl["temperature"],
    )


def _values(signal, evidence: Evidence) -> np.ndarray:
    values = np.asarray(signal.compute(evidence), dtype=float)
    if values.shape != (evidence.n,):
        raise ValueError(f"signal {signal.name!r} returned shape {values.shape}, expected ({evidence.n},)")
    return values
