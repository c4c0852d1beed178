"""Per-sample mislabel signals from the folds' training records and held-out predictions.

Every signal is one value per sample. Its ``direction`` says which way is suspicious:
``+1`` = higher is more likely mislabeled, ``-1`` = lower is more likely mislabeled.
In-sample signals are averaged over the ``K - 1`` folds a sample was trained in;
out-of-sample ones come from the one fold that held it out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from labelaudit.folds.training import FoldResult

__all__ = [
    "SIGNALS", "Signal", "Signals", "compute_signals", "area_under_margin",
    "learned_epoch", "forgetting_events", "confident_learning",
]


@dataclass(frozen=True)
class Signal:
    name: str
    direction: int
    needs_flip: bool
    description: str


SIGNALS: dict[str, Signal] = {s.name: s for s in [
    Signal("label_quality", -1, False,
           "cleanlab self-confidence: out-of-sample probability of the given label "
           "(averaged over image and mirror when flips are on)"),
    Signal("oos_self_confidence", -1, False, "out-of-sample probability of the given label, image only"),
    Signal("oos_flip_self_confidence", -1, True, "out-of-sample probability of the given label for the mirror"),
    Signal("cl_label_issue", +1, False, "1 if cleanlab.filter.find_label_issues flags the sample"),
    Signal("aum", -1, False, "area under the margin: mean over epochs of given-label logit minus largest other logit"),
    Signal("mean_loss", +1, False, "mean training cross-entropy over epochs"),
    Signal("learned_epoch", +1, False,
           "fraction of training before the sample is predicted right and stays right (1 = never learned)"),
    Signal("forgetting_events", +1, False, "times a sample goes from predicted right to wrong between epochs"),
    Signal("flip_loss_in", +1, True,
           "in-sample loss of the never-trained-on mirror image over the late epochs (resists memorisation)"),
    Signal("flip_loss_gap_in", +1, True, "in-sample loss of the mirror minus loss of the image, late epochs"),
    Signal("flip_agree_in", -1, True, "fraction of late epochs where image and mirror get the same class"),
    Signal("flip_agree_oos", -1, True, "1 if the held-out image and its mirror get the same predicted class"),
    Signal("flip_loss_gap_oos", +1, True, "out-of-sample loss of the mirror minus loss of the image"),
]}


@dataclass
class Signals:
    """All signals of a scan.

    Attributes
    ----------
    table : pandas.DataFrame, shape (N, n_signals)
        One column per signal in :data:`SIGNALS` (flip signals absent when flips are off).
    pred_probs : numpy.ndarray of float32, shape (N, C)
        Out-of-sample probabilities used for confident learning (mean of image and mirror
        when flips are on).
    pred_probs_image : numpy.ndarray of float32, shape (N, C)
        Out-of-sample probabilities of the image alone (the plain cleanlab input).
    noise_matrix : numpy.ndarray, shape (C, C)
        ``noise_matrix[i, j]`` = estimated P(given label = i | true label = j).
    n_label_issues : int
        Confident learning's calibrated estimate of the number of mislabeled samples.
    holdout_accuracy : float
        Out-of-sample accuracy against the given labels.
    """

    table: pd.DataFrame
    pred_probs: np.ndarray
    pred_probs_image: np.ndarray
    noise_matrix: np.ndarray
    n_label_issues: int
    holdout_accuracy: float


def area_under_margin(margins: np.ndarray) -> np.ndarray:
    """AUM (Pleiss et al., 2020): mean margin over epochs.

    Parameters
    ----------
    margins : numpy.ndarray, shape (E, n)
        Per epoch, given-label logit minus the largest other logit.

    Returns
    -------
    numpy.ndarray, shape (n,)
        Lower = more likely mislabeled.
    """
    return margins.mean(axis=0)


def learned_epoch(correct: np.ndarray) -> np.ndarray:
    """Fraction of training before a sample is learned for good.

    Parameters
    ----------
    correct : numpy.ndarray of bool, shape (E, n)
        Whether each epoch predicted the given label.

    Returns
    -------
    numpy.ndarray of float, shape (n,)
        ``e / E`` for the first epoch ``e`` from which every epoch is correct; 1.0 when
        the last epoch is wrong (never learned). Higher = more likely mislabeled.
    """
    n_epochs = correct.shape[0]
    stays_correct = np.flip(np.logical_and.accumulate(np.flip(correct, 0), axis=0), 0)
    first = np.where(stays_correct.any(axis=0), stays_correct.argmax(axis=0), n_epochs)
    return first / n_epochs


def forgetting_events(correct: np.ndarray) -> np.ndarray:
    """Number of right-to-wrong transitions between consecutive epochs (Toneva et al., 2019).

    Parameters
    ----------
    correct : numpy.ndarray of bool, shape (E, n)

    Returns
    -------
    numpy.ndarray of int, shape (n,)
        Higher = more likely mislabeled (or hard). A sample never predicted right counts
        ``E`` events, the most possible (Toneva et al. treat it as forgotten forever).
    """
    events = (correct[:-1] & ~correct[1:]).sum(axis=0)
    return np.where(correct.any(axis=0), events, correct.shape[0])


def confident_learning(labels: np.ndarray, pred_probs: np.ndarray) -> dict[str, np.ndarray | int]:
    """cleanlab's confident learning on out-of-sample probabilities.

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (N,)
    pred_probs : numpy.ndarray, shape (N, C)

    Returns
    -------
    dict
        ``label_quality`` (N,) self-confidence, lower = more likely mislabeled;
        ``label_issue`` (N,) bool from ``find_label_issues``; ``noise_matrix`` (C, C);
        ``n_label_issues`` calibrated count estimate (cleanlab's documented cut-off for a
        custom ranking score).
    """
    from cleanlab.count import estimate_py_and_noise_matrices_from_probabilities, num_label_issues
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    _, noise_matrix, _, _ = estimate_py_and_noise_matrices_from_probabilities(labels, pred_probs)
    return {
        "label_quality": get_label_quality_scores(labels, pred_probs, method="self_confidence"),
        "label_issue": find_label_issues(labels, pred_probs, n_jobs=1),
        "noise_matrix": noise_matrix,
        "n_label_issues": int(num_label_issues(labels, pred_probs, estimation_method="off_diagonal_calibrated")),
    }


class _FoldMean:
    """Mean over folds of per-sample values, each fold covering a subset of samples."""

    def __init__(self, n: int) -> None:
        self.total = np.zeros(n)
        self.count = np.zeros(n)

    def add(self, idx: np.ndarray, values: np.ndarray) -> None:
        np.add.at(self.total, idx, values)
        np.add.at(self.count, idx, 1)

    def mean(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.total / np.maximum(self.count, 1), np.nan)


def compute_signals(results: Sequence[FoldResult], labels: np.ndarray, n_classes: int, *, flip: bool) -> Signals:
    """Combine fold results into per-sample signals.

    Parameters
    ----------
    results : sequence of FoldResult
        One per fold; their ``holdout_idx`` partition ``range(N)``.
    labels : numpy.ndarray of int, shape (N,)
        Given labels.
    n_classes : int
    flip : bool
        Whether the folds recorded mirror views.

    Returns
    -------
    Signals
    """
    labels = np.asarray(labels)
    n = len(labels)
    in_sample = {name: _FoldMean(n) for name in
                 ("aum", "mean_loss", "learned_epoch", "forgetting_events",
                  "flip_loss_in", "flip_loss_gap_in", "flip_agree_in")}
    probs = np.full((n, n_classes), np.nan, np.float32)
    probs_flip = np.full((n, n_classes), np.nan, np.float32)
    for r in results:
        in_sample["aum"].add(r.train_idx, area_under_margin(r.train_margins))
        in_sample["mean_loss"].add(r.train_idx, r.train_losses.mean(axis=0))
        in_sample["learned_epoch"].add(r.train_idx, learned_epoch(r.train_correct))
        in_sample["forgetting_events"].add(r.train_idx, forgetting_events(r.train_correct))
        if flip:
            in_sample["flip_loss_in"].add(r.train_idx, r.view_flip_losses.mean(axis=0))
            in_sample["flip_loss_gap_in"].add(r.train_idx, (r.view_flip_losses - r.view_losses).mean(axis=0))
            in_sample["flip_agree_in"].add(r.train_idx, r.view_flip_agree.mean(axis=0))
        probs[r.holdout_idx] = r.holdout_probs
        if flip:
            probs_flip[r.holdout_idx] = r.holdout_probs_flip
    held_out = np.zeros(n, bool)
    for r in results:
        held_out[r.holdout_idx] = True
    if not held_out.all():
        raise ValueError("the folds' held-out sets do not cover every sample")
    if not (np.isfinite(probs).all() and (not flip or np.isfinite(probs_flip).all())):
        raise ValueError("non-finite out-of-sample probabilities: a fold's training diverged")

    rows = np.arange(n)
    pred_probs = (probs + probs_flip) / 2 if flip else probs
    cl = confident_learning(labels, pred_probs)
    table = {
        "label_quality": cl["label_quality"],
        "oos_self_confidence": probs[rows, labels],
        "cl_label_issue": cl["label_issue"].astype(float),
        **{name: acc.mean() for name, acc in in_sample.items() if flip or not SIGNALS[name].needs_flip},
    }
    if flip:
        eps = 1e-7
        loss = -np.log(probs[rows, labels] + eps)
        flip_loss = -np.log(probs_flip[rows, labels] + eps)
        table["oos_flip_self_confidence"] = probs_flip[rows, labels]
        table["flip_agree_oos"] = (probs.argmax(1) == probs_flip.argmax(1)).astype(float)
        table["flip_loss_gap_oos"] = flip_loss - loss
    ordered = [name for name in SIGNALS if name in table]
    return Signals(
        table=pd.DataFrame({name: np.asarray(table[name], dtype=float) for name in ordered}),
        pred_probs=pred_probs.astype(np.float32),
        pred_probs_image=probs,
        noise_matrix=cl["noise_matrix"],
        n_label_issues=cl["n_label_issues"],
        holdout_accuracy=float((pred_probs.argmax(1) == labels).mean()),
    )
