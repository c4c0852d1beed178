"""What a signal is: a name, a direction, the fold records it needs, and how it computes itself.

Every signal is one value per sample. Its ``direction`` says which way is suspicious:
``+1`` = higher is more likely mislabeled, ``-1`` = lower is more likely mislabeled.
Adding a signal means writing one subclass and registering an instance of it (see
:mod:`labelaudit.signals.registry`); training, the fold store and scoring need no change
as long as the records it needs exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    from labelaudit.signals.evidence import Evidence

__all__ = ["Signal", "InSampleSignal", "OutOfSampleSignal"]


class Signal:
    """Base class of a per-sample mislabel signal.

    Subclasses set the class attributes and implement :meth:`compute` (or use one of the
    helpers :class:`InSampleSignal` / :class:`OutOfSampleSignal`).

    Attributes
    ----------
    name : str
        Column name in ``scores.csv`` and the database.
    direction : {+1, -1}
        +1: higher = more likely mislabeled; -1: lower = more likely mislabeled.
    description : str
        One line for ``scan.json`` and the review app.
    requires : tuple of str
        Fold records (keys of :data:`labelaudit.folds.records.RECORDS`) the signal reads;
        a scan computes the signal only when every fold has them all.
    """

    name: ClassVar[str]
    direction: ClassVar[int]
    description: ClassVar[str]
    requires: ClassVar[tuple[str, ...]]

    def compute(self, evidence: Evidence) -> np.ndarray:
        """Per-sample values.

        Parameters
        ----------
        evidence : Evidence
            The folds' records gathered per sample, the labels, and shared results
            (confident learning) computed once for all signals.

        Returns
        -------
        numpy.ndarray, shape (N,)
            Oriented by :attr:`direction`.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} direction={self.direction:+d} requires={self.requires}>"


class InSampleSignal(Signal):
    """A signal computed in each fold from its train-scope records, averaged over the folds.

    Every sample is trained in ``K - 1`` folds; its value is the mean of those folds'.
    """

    def per_fold(self, records: Mapping[str, np.ndarray]) -> np.ndarray:
        """Values of one fold's training samples.

        Parameters
        ----------
        records : mapping of str to numpy.ndarray
            This fold's :attr:`requires` records, each of shape (T, n_train).

        Returns
        -------
        numpy.ndarray, shape (n_train,)
        """
        raise NotImplementedError

    def compute(self, evidence: Evidence) -> np.ndarray:
        return evidence.in_sample_mean(self.per_fold, self.requires)


class OutOfSampleSignal(Signal):
    """A signal computed from held-out records, each sample's from the fold that held it out."""

    def per_sample(self, held_out: Mapping[str, np.ndarray], labels: np.ndarray) -> np.ndarray:
        """Values of all samples.

        Parameters
        ----------
        held_out : mapping of str to numpy.ndarray
            The :attr:`requires` records assembled over the folds, each of shape (N, ...).
        labels : numpy.ndarray of int, shape (N,)
            Given labels.

        Returns
        -------
        numpy.ndarray, shape (N,)
        """
        raise NotImplementedError

    def compute(self, evidence: Evidence) -> np.ndarray:
        return self.per_sample({name: evidence.held_out(name) for name in self.requires}, evidence.labels)
