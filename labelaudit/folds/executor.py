"""Running fold jobs: who trains the folds (this process, or a Ray cluster).

An executor takes :class:`~labelaudit.folds.training.FoldJob` objects and hands back
:class:`~labelaudit.folds.records.FoldResult` objects. :class:`InProcessExecutor` runs
them one after the other here; :class:`labelaudit.folds.ray_executor.RayExecutor` runs
each as a Ray task, on one machine or a cluster. Any other engine only has to implement
:class:`FoldExecutor` (jobs are plain data: index arrays, a config dict and the path of a
``.npy`` file; results are index arrays and named numpy records). Finished folds are kept
by :class:`labelaudit.folds.store.FoldStore`; :func:`resolve_executor` turns the names
``"local"`` / ``"ray"`` into executors.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import torch

from labelaudit.errors import SettingsError
from labelaudit.folds.records import FoldResult
from labelaudit.folds.training import FoldJob, ProgressReport, resolve_device, run_fold

__all__ = ["FoldExecutor", "InProcessExecutor", "EXECUTORS", "resolve_executor"]

#: Executor names accepted by :func:`resolve_executor` (and ``labelaudit scan --executor``).
EXECUTORS = ("local", "ray")


class FoldExecutor(Protocol):
    """Anything that can run fold jobs."""

    def device(self, setting: str) -> torch.device:
        """The kind of device the folds will train on, for the ``device`` setting ``setting``.

        Raises
        ------
        DeviceUnavailable
            ``setting`` asks for CUDA and the executor has none.
        """

    def describe(self, device: torch.device) -> str:
        """Where the folds ran, in a few words (the scan summary's ``device``)."""

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

    def device(self, setting: str) -> torch.device:
        """This process's device for ``setting`` (:func:`~labelaudit.folds.training.resolve_device`)."""
        return resolve_device(setting)

    def describe(self, device: torch.device) -> str:
        """The GPU's name, or the CPU's thread count and architecture."""
        if device.type == "cuda":
            return f"cuda ({torch.cuda.get_device_name(device)})"
        return f"cpu ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})"

    def map(self, jobs: Sequence[FoldJob], *, report: ProgressReport | None = None) -> Iterator[FoldResult]:
        """Run ``jobs`` one after the other, yielding each result as it finishes."""
        for job in jobs:
            yield self._run(job, report=report)


def resolve_executor(executor: FoldExecutor | str | None) -> FoldExecutor:
    """The executor meant by ``executor``: an instance as is, or one of the names :data:`EXECUTORS`.

    Parameters
    ----------
    executor : FoldExecutor, str or None
        None or ``"local"``: :class:`InProcessExecutor`; ``"ray"``: a
        :class:`~labelaudit.folds.ray_executor.RayExecutor` with its defaults (a local Ray
        instance, or the cluster ``RAY_ADDRESS`` names).

    Raises
    ------
    MissingExtra
        ``"ray"`` without Ray installed (``pip install "labelaudit[ray]"``).
    SettingsError
        An unknown executor name.
    """
    if executor is None or executor == "local":
        return InProcessExecutor()
    if executor == "ray":
        from labelaudit.folds.ray_executor import RayExecutor

        return RayExecutor()
    if isinstance(executor, str):
        raise SettingsError(f"unknown executor {executor!r}; choose one of: {', '.join(EXECUTORS)}")
    return executor
