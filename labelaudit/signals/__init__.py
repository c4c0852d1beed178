"""Signals: per-sample evidence of a wrong label, computed from the folds' named records.

* :mod:`~labelaudit.signals.base` -- :class:`Signal` (name, direction, required records,
  ``compute``) and the in-sample / out-of-sample helpers;
* :mod:`~labelaudit.signals.evidence` -- :class:`Evidence`, the records gathered per sample;
* :mod:`~labelaudit.signals.confident`, :mod:`~labelaudit.signals.dynamics`,
  :mod:`~labelaudit.signals.flip` -- the built-in signals by family;
  :mod:`~labelaudit.signals.knn` -- kNN label agreement (scans from embeddings only);
* :mod:`~labelaudit.signals.registry` -- :class:`SignalRegistry` and the default :data:`SIGNALS`;
* :mod:`~labelaudit.signals.compute` -- :func:`compute_signals` -> :class:`Signals`.

Direction: ``+1`` = higher is more likely mislabeled, ``-1`` = lower is.
"""

from labelaudit.signals.base import InSampleSignal, OutOfSampleSignal, Signal
from labelaudit.signals.compute import Signals, compute_signals
from labelaudit.signals.confident import confident_learning
from labelaudit.signals.dynamics import area_under_margin, forgetting_events, learned_epoch
from labelaudit.signals.evidence import Evidence
from labelaudit.signals.registry import SIGNALS, SignalRegistry, default_registry

__all__ = [
    "SIGNALS", "Signal", "InSampleSignal", "OutOfSampleSignal", "SignalRegistry", "default_registry",
    "Evidence", "Signals", "compute_signals", "area_under_margin", "learned_epoch", "forgetting_events",
    "confident_learning",
]
