"""Running fold jobs: who trains the folds (this process now; a cluster engine later).

An executor takes :class:`~labelaudit.folds.training.FoldJob` objects and hands back
:class:`~labelaudit.folds.records.FoldResult` objects. :class:`InProcessExecutor` runs
them one after the other here; a cluster engine only has to implement
:class:`FoldExecutor` (jobs are plain data: index arrays, a config dict and the path of a
``.npy`` file; results are index arrays and named numpy records). Finished folds are kept
by :class:`labelaudit.folds.store.FoldStore`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from labelaudit.folds.records import FoldResult
from labelaudit.folds.training import FoldJob, ProgressReport, run_fold

__all__ = ["FoldExecutor", "InProcessExecutor"]


class FoldExecutor(Protocol):
    """Anything that can run fold jobs."""

    def map(self, jobs: Sequence[FoldJob], *, report: ProgressReport | None = None) -> Iterator[FoldResult]:
        """Run ``jobs`` and yield one result per job, in any order, as each finishes."""


class InProcessExecutor:
    """Run folds sequentially in this process (GPU or CPU, as the config says).

    Parameters
    ----------
    run : callable
        ``run(job, report=...) -> FoldResult``; :func:`~labelaudit.folds.training.run_fold`
        by default (tests wrap it to count or interrupt folds).
    """

    def __init__(self, run: Callable[..., FoldResult] = run_fold) -> None:
        self._run = run

    def map(self, jobs: Sequence[FoldJob], *, report: ProgressReport | None = None) -> Iterator[FoldResult]:
        """Run ``jobs`` one after the other, yielding each result as it finishes."""
        for job in jobs:
            yield self._run(job, report=report)
