"""Which signals exist: a registry of :class:`~labelaudit.signals.base.Signal` instances by name.

:data:`SIGNALS` is the default registry (the built-in signals, in the column order of
``scores.csv``); :func:`~labelaudit.signals.compute.compute_signals` computes every signal
of a registry whose records the folds made. To try a new signal without touching the
process-wide default, register it in a copy::

    registry = SIGNALS.copy()
    registry.register(MySignal())
    signals = compute_signals(results, labels, n_classes, registry=registry)
    scores = combine(signals.table, ("label_quality", "my_signal"), registry=registry)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from labelaudit.folds.records import RECORDS
from labelaudit.signals.base import Signal
from labelaudit.signals.confident import ClLabelIssue, LabelQuality, OosMargin, OosSelfConfidence
from labelaudit.signals.dynamics import AreaUnderMargin, ForgettingEvents, LearnedEpoch, MeanLoss
from labelaudit.signals.flip import (
    FlipAgreeIn, FlipAgreeOos, FlipLossGapIn, FlipLossGapOos, FlipLossIn, OosFlipSelfConfidence,
)
from labelaudit.signals.knn import KnnAgreement

__all__ = ["SignalRegistry", "default_registry", "SIGNALS"]


class SignalRegistry(Mapping[str, Signal]):
    """Signals by name, in registration order (the order of the score table's columns).

    Parameters
    ----------
    signals : iterable of Signal
        Registered in order (see :meth:`register`).
    """

    def __init__(self, signals: Iterable[Signal] = (), *, read_only: bool = False) -> None:
        self._signals: dict[str, Signal] = {}
        for signal in signals:
            self.register(signal)
        self._read_only = read_only

    def register(self, signal: Signal) -> Signal:
        """Add ``signal``; return it.

        Raises
        ------
        TypeError
            ``signal`` is not a :class:`Signal` instance, or the registry is read-only (the
            default :data:`SIGNALS`: register in a :meth:`copy`).
        ValueError
            Its name is taken, its direction is not +1 or -1, or it requires a record
            that :data:`labelaudit.folds.records.RECORDS` does not declare.
        """
        if getattr(self, "_read_only", False):
            raise TypeError("this registry is read-only (the default one every scan uses): register in "
                            "SIGNALS.copy() and pass that registry")
        if not isinstance(signal, Signal):
            raise TypeError(f"register a Signal instance, not {signal!r}")
        if signal.name in self._signals:
            raise ValueError(f"a signal named {signal.name!r} is already registered")
        if signal.direction not in (+1, -1):
            raise ValueError(f"signal {signal.name!r}: direction must be +1 or -1, not {signal.direction!r}")
        undeclared = [name for name in signal.requires if name not in RECORDS]
        if not signal.requires or undeclared:
            raise ValueError(f"signal {signal.name!r} requires undeclared fold records {undeclared}")
        self._signals[signal.name] = signal
        return signal

    def copy(self) -> SignalRegistry:
        """A new registry with the same signals; registering in it leaves this one unchanged."""
        return SignalRegistry(self._signals.values())

    def __getitem__(self, name: str) -> Signal:
        return self._signals[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._signals)

    def __len__(self) -> int:
        return len(self._signals)

    def __repr__(self) -> str:
        return f"SignalRegistry({list(self._signals)})"


def default_registry(*, read_only: bool = False) -> SignalRegistry:
    """A fresh registry of the built-in signals, in the column order of ``scores.csv``."""
    return SignalRegistry(read_only=read_only, signals=[
        LabelQuality(), OosMargin(), OosSelfConfidence(), OosFlipSelfConfidence(), ClLabelIssue(),
        AreaUnderMargin(), MeanLoss(), LearnedEpoch(), ForgettingEvents(),
        FlipLossIn(), FlipLossGapIn(), FlipAgreeIn(), FlipAgreeOos(), FlipLossGapOos(),
        KnnAgreement(),
    ])


#: The registry a scan uses: name -> :class:`Signal` (``.direction``, ``.description``, ``.requires``).
SIGNALS: SignalRegistry = default_registry(read_only=True)
