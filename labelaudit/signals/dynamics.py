"""Loss-dynamics signals: how each sample's training loss and margin evolve over the epochs.

In-sample: each value is the mean over the ``K - 1`` folds a sample was trained in.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from labelaudit.signals.base import InSampleSignal

__all__ = ["area_under_margin", "learned_epoch", "forgetting_events",
           "AreaUnderMargin", "MeanLoss", "LearnedEpoch", "ForgettingEvents"]


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


class AreaUnderMargin(InSampleSignal):
    """:func:`area_under_margin` of the training margins; lower = more likely mislabeled."""

    name = "aum"
    direction = -1
    description = "area under the margin: mean over epochs of given-label logit minus largest other logit"
    requires = ("train_margins",)

    def per_fold(self, records: Mapping[str, np.ndarray]) -> np.ndarray:
        return area_under_margin(records["train_margins"])


class MeanLoss(InSampleSignal):
    """Mean training cross-entropy over the epochs; higher = more likely mislabeled."""

    name = "mean_loss"
    direction = +1
    description = "mean training cross-entropy over epochs"
    requires = ("train_losses",)

    def per_fold(self, records: Mapping[str, np.ndarray]) -> np.ndarray:
        return records["train_losses"].mean(axis=0)


class LearnedEpoch(InSampleSignal):
    """:func:`learned_epoch` of the per-epoch correctness; higher = more likely mislabeled."""

    name = "learned_epoch"
    direction = +1
    description = "fraction of training before the sample is predicted right and stays right (1 = never learned)"
    requires = ("train_correct",)

    def per_fold(self, records: Mapping[str, np.ndarray]) -> np.ndarray:
        return learned_epoch(records["train_correct"])


class ForgettingEvents(InSampleSignal):
    """:func:`forgetting_events` of the per-epoch correctness; higher = more likely mislabeled."""

    name = "forgetting_events"
    direction = +1
    description = "times a sample goes from predicted right to wrong between epochs"
    requires = ("train_correct",)

    def per_fold(self, records: Mapping[str, np.ndarray]) -> np.ndarray:
        return forgetting_events(records["train_correct"])
