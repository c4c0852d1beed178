"""Running fold jobs: who trains the folds (this process, or a Ray cluster).

An executor takes :class:`~labelaudit.folds.training.FoldJob` objects and hands back
:class:`~labelaudit.folds.records.FoldResult` objects. :class:`InProcessExecutor` runs
them one after the other here; :class:`ThreadedExecutor` runs several at once in threads
of this process (on CUDA each fold in its own stream, so that small models share one
device); :class:`StackedExecutor` trains all of them at once as one stacked network (one
program's kernel launches for K models, :mod:`labelaudit.folds.stacked`);
:class:`labelaudit.folds.ray_executor.RayExecutor` runs each as a Ray task, on one machine
or a cluster. Any other engine only has to implement
:class:`FoldExecutor` (jobs are plain data: index arrays, a config dict and the path of a
``.npy`` file; results are index arrays and named numpy records). Finished folds are kept
by :class:`labelaudit.folds.store.FoldStore`; :func:`resolve_executor` turns the names
``"local"`` / ``"threads"`` / ``"stacked"`` / ``"ray"`` into executors.
"""

from __future__ import annotations

import contextlib
import platform
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Protocol

import torch

from labelaudit.errors import SettingsError
from labelaudit.folds.records import FoldResult
from labelaudit.folds.stacked import iter_folds_stacked
from labelaudit.folds.training import (FoldJob, ProgressReport, deterministic_cudnn, resolve_device, run_fold,
                                       torch_threads)

__all__ = ["FoldExecutor", "InProcessExecutor", "ThreadedExecutor", "StackedExecutor", "EXECUTORS",
           "resolve_executor"]

#: Executor names accepted by :func:`resolve_executor` (and ``labelaudit scan --executor``).
EXECUTORS = ("local", "threads", "stacked", "ray")


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

    # Optional: ``check_config(config: dict) -> None`` raises SettingsError for settings the
    # executor cannot run; the scanner calls it before loading any data (ThreadedExecutor has one).


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


class _Cancelled(Exception):
    """Raised inside a fold thread when the scan stopped waiting for it (another fold failed, Ctrl-C)."""


class ThreadedExecutor:
    """Run up to ``workers`` folds at once, each in a thread of this process.

    On CUDA every fold runs in its own stream, so that the kernels of several small models
    overlap on one device instead of leaving it idle between launches. On the CPU the
    process's PyTorch threads are split between the folds (2 folds x 1 thread on two
    cores instead of 1 fold x 2 threads), which pays when one small model does not keep
    every core busy. Each fold is the same job as with :class:`InProcessExecutor`: same
    seed, same data, same records; on the CPU the last digits of the arithmetic may differ
    with the number of threads per fold, as they do between machines.

    Parameters
    ----------
    workers : int
        Folds trained at the same time (at least 1; more than the scan's folds is the same
        as one thread per fold).
    run : callable
        ``run(job, report=...) -> FoldResult``; :func:`~labelaudit.folds.training.run_fold`
        by default.

    Notes
    -----
    ``torch.compile`` is not thread-safe (PyTorch issues 118260, 136833), so jobs with
    ``compile`` other than ``"off"`` are refused with :class:`SettingsError`. The cuDNN
    flags of :func:`~labelaudit.folds.training.deterministic_cudnn` are process-wide; they
    are held once around all folds. The ``report`` callback is called from the fold
    threads, one call at a time.
    """

    def __init__(self, workers: int = 2, run: Callable[..., FoldResult] = run_fold) -> None:
        if workers < 1:
            raise SettingsError(f"--fold-workers must be at least 1, not {workers}")
        self.workers = workers
        self._run = run

    device = InProcessExecutor.device

    def describe(self, device: torch.device) -> str:
        """:meth:`InProcessExecutor.describe` and the number of folds trained at once."""
        return f"{InProcessExecutor.describe(self, device)}, {self.workers} folds at a time"

    def map(self, jobs: Sequence[FoldJob], *, report: ProgressReport | None = None) -> Iterator[FoldResult]:
        """Run ``jobs``, ``workers`` at a time, yielding each result as it finishes.

        If a fold raises, or the caller stops iterating (an error while storing a result,
        Ctrl-C), the folds still running stop at their next training batch and the
        unstarted ones never start; the fold's exception is re-raised here, after the
        results of folds that finished at the same moment.

        Raises
        ------
        SettingsError
            A job asks for ``torch.compile``.
        """
        if not jobs:
            return
        for job in jobs:
            self.check_config(job.config)
        device = resolve_device(jobs[0].config.get("device", "auto"))
        workers = min(self.workers, len(jobs))
        stop = threading.Event()
        report_one_at_a_time = _serialised(report, stop)
        with _threads_per_fold(device, workers), deterministic_cudnn(), \
                ThreadPoolExecutor(workers, thread_name_prefix="labelaudit-fold") as pool:
            pending: set[Future] = {pool.submit(self._run_in_stream, job, device, report_one_at_a_time)
                                    for job in jobs}
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    failed = [future for future in done if future.exception() is not None]
                    for future in done:  # the finished folds first: they get stored before an error stops the scan
                        if future not in failed:
                            yield future.result()
                    if failed:
                        failed[0].result()
            finally:
                stop.set()
                for future in pending:
                    future.cancel()

    def check_config(self, config: dict) -> None:
        """Raise :class:`SettingsError` for settings (:meth:`ScanConfig.to_dict`) this executor cannot run.

        The scanner calls it before loading any data; :meth:`map` checks every job again.
        """
        if config.get("compile", "off") != "off":
            raise SettingsError("--executor threads cannot be combined with --compile: torch.compile is "
                                "not thread-safe; use --executor local to compile the fold models")

    def _run_in_stream(self, job: FoldJob, device: torch.device, report: ProgressReport) -> FoldResult:
        """``job`` in a CUDA stream of its own (on the CPU, as it is)."""
        stream = torch.cuda.stream(torch.cuda.Stream(device)) if device.type == "cuda" \
            else contextlib.nullcontext()
        with stream:
            return self._run(job, report=report)


class StackedExecutor:
    """Train all the jobs' folds at once as one stacked network in this process.

    See :mod:`labelaudit.folds.stacked`: K fold models side by side in grouped
    convolutions, each exactly its fold's model, trained with the kernel launches of one.
    Meant for a GPU; on the CPU grouped convolutions are slower than separate ones. All
    folds finish together, so a scan stopped during training keeps none of them (the
    in-process executors store each fold as it finishes); a fold whose training diverged
    does not cost the others theirs (they are yielded, and stored, before its error).

    Parameters
    ----------
    run : callable
        ``run(jobs, report=...) -> iterable of FoldResult``;
        :func:`~labelaudit.folds.stacked.iter_folds_stacked` by default.
    """

    def __init__(self, run: Callable[..., Iterable[FoldResult]] = iter_folds_stacked) -> None:
        self._run = run

    device = InProcessExecutor.device

    def describe(self, device: torch.device) -> str:
        """:meth:`InProcessExecutor.describe`, and that the folds trained stacked."""
        return f"{InProcessExecutor.describe(self, device)}, folds stacked in one network"

    def map(self, jobs: Sequence[FoldJob], *, report: ProgressReport | None = None) -> Iterator[FoldResult]:
        """Train ``jobs`` together; yield their results (in job order) once all are trained."""
        yield from self._run(list(jobs), report=report)


def _serialised(report: ProgressReport | None, stop: threading.Event) -> ProgressReport:
    """``report`` behind a lock, raising :class:`_Cancelled` in the calling fold once ``stop`` is set."""
    lock = threading.Lock()

    def report_one_at_a_time(*args) -> None:
        if stop.is_set():
            raise _Cancelled
        if report is not None:
            with lock:
                report(*args)

    return report_one_at_a_time


def _threads_per_fold(device: torch.device, workers: int):
    """On the CPU, the process's PyTorch threads split between ``workers`` folds; restored after."""
    return torch_threads(torch.get_num_threads() // workers if device.type == "cpu" else torch.get_num_threads())


def resolve_executor(executor: FoldExecutor | str | None) -> FoldExecutor:
    """The executor meant by ``executor``: an instance as is, or one of the names :data:`EXECUTORS`.

    Parameters
    ----------
    executor : FoldExecutor, str or None
        None or ``"local"``: :class:`InProcessExecutor`; ``"threads"``: a
        :class:`ThreadedExecutor` with two folds at a time; ``"stacked"``: a
        :class:`StackedExecutor`; ``"ray"``: a
        :class:`~labelaudit.folds.ray_executor.RayExecutor` with its defaults (a local Ray
        instance, or the cluster ``RAY_ADDRESS`` names).

    Raises
    ------
    MissingExtra
        ``"ray"`` without Ray installed (``pip install "ray[client]>=2.9"``).
    SettingsError
        An unknown executor name.
    """
    if executor is None or executor == "local":
        return InProcessExecutor()
    if executor == "threads":
        return ThreadedExecutor()
    if executor == "stacked":
        return StackedExecutor()
    if executor == "ray":
        from labelaudit.folds.ray_executor import RayExecutor

        return RayExecutor()
    if isinstance(executor, str):
        raise SettingsError(f"unknown executor {executor!r}; choose one of: {', '.join(EXECUTORS)}")
    return executor
