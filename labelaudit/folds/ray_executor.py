"""Folds on Ray: one Ray task per fold, on this machine or across a cluster.

:class:`RayExecutor` implements :class:`~labelaudit.folds.executor.FoldExecutor`:

* each fold is a Ray task with a declared resource request (``gpus_per_fold``: 1 by
  default when the cluster has GPUs, fractions let small folds share a GPU;
  ``cpus_per_fold``); a worker trains on the device Ray gave it, the driver needs none;
* the decoded images travel once: the uint8 array is put into Ray's object store
  (:func:`ray.put`) and every fold task gets the same reference (a read-only view of its
  node's shared memory, fetched once per node), or, with ``images="shared-path"``, every
  task reads the scan's ``.npy`` file from a path all nodes mount;
* a fold whose worker process dies (killed, out of memory, node lost) is run again, up to
  ``retries`` times (Ray's ``max_retries``); errors raised by the training itself are not
  retried (they would fail again);
* progress (images, epoch, loss, accuracy) is pushed by each task to a small actor on the
  driver's node that the driver polls while it waits (:func:`ray.wait`) and forwards to the
  scan's ``report`` callback, so the progress bar moves as the remote folds train; progress
  is advisory: should that actor die, the folds and the scan go on without it.

Results come back as the same :class:`~labelaudit.folds.records.FoldResult` objects as
the in-process executor's; the scan stores them on the driver, so a killed driver resumes
from the folds already stored.

Ray is imported only when a :class:`RayExecutor` is made: without it that fails at once
with :class:`~labelaudit.errors.MissingExtra`.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from labelaudit.errors import ClusterError, DeviceUnavailable, LabelauditError, MissingExtra, SettingsError, first_line
from labelaudit.folds.records import FoldResult
from labelaudit.folds.training import FoldJob, ProgressReport, resolve_precision, run_fold

__all__ = ["RayExecutor", "IMAGES_MODES", "import_ray"]

#: How fold tasks get the images: Ray's object store (put once) or a path every node mounts.
IMAGES_MODES = ("object-store", "shared-path")

INSTALL_HINT = 'pip install "ray[client]>=2.9" (in a labelaudit clone: pip install -e ".[ray]")'

#: Seconds the driver, or a fold task's last push, waits for the progress board to answer before going on without it.
_BOARD_TIMEOUT_S = 30.0


def import_ray():
    """The ``ray`` module.

    Raises
    ------
    MissingExtra
        Ray is not installed; the message says how to install it.
    """
    try:
        import ray
    except ImportError:
        raise MissingExtra(f"the Ray executor (--executor ray) needs Ray, which is not installed: {INSTALL_HINT}"
                           ) from None
    return ray


class RayExecutor:
    """Run each fold as a Ray task, all at once, as the cluster's resources allow.

    Parameters
    ----------
    address : str, optional
        Cluster to connect to (``ray://head:10001``, ``auto``, ``head:6379``). None: the
        ``RAY_ADDRESS`` environment variable, else a Ray instance started on this machine
        (``ray start``), else a new local one. Ignored when Ray is already initialised in
        this process.
    gpus_per_fold : float, optional
        GPUs each fold task requests; a fraction (0.5) lets two folds share a GPU. None:
        1 when the cluster has GPUs (and the ``device`` setting is not ``cpu``), else 0.
    cpus_per_fold : float
        CPUs each fold task requests; also its PyTorch thread count (at least 1).
    retries : int
        How many times a fold whose worker died is run again (Ray's ``max_retries``).
    images : {"object-store", "shared-path"}
        ``"object-store"``: the driver puts the images into Ray's object store once.
        ``"shared-path"``: tasks read the scan's ``.npy`` file themselves, so the scan
        directory must be on a filesystem every node mounts at the same path.
    runtime_env : dict, optional
        Ray runtime environment for the job (e.g. ``{"pip": ["/shared/labelaudit-X.whl"]}``, a wheel
        built with ``pip wheel --no-deps .``, where the nodes do not have labelaudit installed).
    run : callable
        ``run(job, report=...) -> FoldResult`` executed in the task;
        :func:`~labelaudit.folds.training.run_fold` by default (tests wrap it). It is
        pickled to the workers.
    poll_s : float
        How often the driver reads the tasks' progress while waiting.

    Raises
    ------
    MissingExtra
        Ray is not installed.
    SettingsError
        A resource request or option out of range.
    """

    def __init__(self, *, address: str | None = None, gpus_per_fold: float | None = None, cpus_per_fold: float = 1,
                 retries: int = 3, images: str = "object-store", runtime_env: dict[str, Any] | None = None,
                 run: Callable[..., FoldResult] = run_fold, poll_s: float = 0.5) -> None:
        self._ray = import_ray()
        _check_options(gpus_per_fold, cpus_per_fold, retries, images)
        self.address, self.gpus_per_fold, self.cpus_per_fold = address, gpus_per_fold, cpus_per_fold
        self.retries, self.images, self.runtime_env = retries, images, runtime_env
        self._run, self._poll_s = run, poll_s
        self._gpus: float | None = None  # resolved by device()
        self._started_ray = False

    # ------------------------------------------------------------------ FoldExecutor

    def device(self, setting: str) -> torch.device:
        """``cuda`` when each fold gets a GPU share, else ``cpu``; connects to the cluster to find out.

        Raises
        ------
        DeviceUnavailable
            CUDA or a GPU share is asked for and the cluster has no GPU.
        SettingsError
            ``gpus_per_fold`` > 0 with the ``device`` setting ``cpu``.
        ClusterError
            The cluster cannot be reached.
        """
        self._connect()
        self._gpus = self._resolve_gpus(setting, self._cluster_gpus())
        return torch.device("cuda" if self._gpus > 0 else "cpu")

    def describe(self, device: torch.device) -> str:
        """E.g. ``ray (cuda, 0.5 GPU + 1 CPU per fold)``."""
        gpus = self._gpus if self._gpus is not None else 0
        share = f"{gpus:g} GPU + {self.cpus_per_fold:g} CPU" if gpus else f"{self.cpus_per_fold:g} CPU"
        return f"ray ({device.type}, {share} per fold)"

    def map(self, jobs: Sequence[FoldJob], *, report: ProgressReport | None = None) -> Iterator[FoldResult]:
        """Submit every job as a Ray task and yield each result as it finishes.

        Raises
        ------
        LabelauditError
            What the training raised in a task (e.g. :class:`TrainingDiverged`), unwrapped.
        ClusterError
            A fold's worker died more often than ``retries`` allows, or the images file is
            not visible on a node (``images="shared-path"``).
        """
        if not jobs:
            self._shutdown()
            return
        if self._gpus is None:
            self.device(jobs[0].config.get("device", "auto"))
        board, pending = None, {}
        try:
            board = self._progress_board()
            pending = self._submit(jobs, board)
            yield from self._collect(pending, board, report)
        finally:
            self._cancel(pending)
            if board is not None:
                _quietly(self._ray.kill, board)
            self._shutdown()

    # ------------------------------------------------------------------ connection

    def _connect(self) -> None:
        """Initialise Ray unless this process already did; remember whether to shut it down."""
        if self._ray.is_initialized():
            return
        try:
            self._ray.init(address=self.address, runtime_env=self.runtime_env)
        except (ConnectionError, TimeoutError, RuntimeError) as exc:
            raise ClusterError(f"cannot connect to the Ray cluster at {self.address or os.environ.get('RAY_ADDRESS')!r}"
                               f": {exc}; check --ray-address (e.g. ray://HEAD:10001) and that the head is up") from exc
        self._started_ray = True

    def _shutdown(self) -> None:
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False

    def _cluster_gpus(self) -> float:
        return float(self._ray.cluster_resources().get("GPU", 0))

    def _resolve_gpus(self, setting: str, cluster_gpus: float) -> float:
        """GPUs per fold task for the ``device`` setting on a cluster with ``cluster_gpus`` GPUs."""
        wanted = self.gpus_per_fold
        if setting == "cpu":
            if wanted:
                raise SettingsError(f"--gpus-per-fold {wanted:g} with --device cpu: use --device auto or cuda")
            return 0.0
        if wanted is None:
            wanted = 1.0 if cluster_gpus > 0 else 0.0
        needs_gpu = wanted > 0 or setting.startswith("cuda")
        if needs_gpu and cluster_gpus <= 0:
            raise DeviceUnavailable("the Ray cluster has no GPU (ray.cluster_resources() lists none); "
                                    "use --device auto or cpu, or add GPU nodes")
        if setting.startswith("cuda") and wanted == 0:
            raise SettingsError("--device cuda with --gpus-per-fold 0: give each fold a GPU share")
        return wanted

    # ------------------------------------------------------------------ tasks

    def _submit(self, jobs: Sequence[FoldJob], board) -> dict[Any, int]:
        """One task per job, all sharing one object-store copy of the images; task ref -> fold."""
        task = self._ray.remote(_fold_task).options(
            num_cpus=self.cpus_per_fold, num_gpus=self._gpus, max_retries=self.retries, retry_exceptions=False,
            name="labelaudit-fold")
        device = "cuda" if self._gpus else "cpu"  # the task's own GPU is "cuda" (Ray sets CUDA_VISIBLE_DEVICES)
        threads = max(1, int(self.cpus_per_fold))
        images = self._images_ref(jobs)
        pending = {}
        for job in jobs:
            job = replace(job, images_path=os.path.abspath(job.images_path), config=_task_config(job.config, device))
            pending[task.remote(self._run, job, images, board, threads)] = job.fold
        return pending

    def _images_ref(self, jobs: Sequence[FoldJob]):
        """An object ref to the images, put into the object store once (None: tasks read the shared path)."""
        if self.images == "shared-path":
            return None
        paths = {job.images_path for job in jobs}
        if len(paths) != 1:
            raise SettingsError(f"fold jobs of one scan must share one images file, got {len(paths)}")
        return self._ray.put(np.asarray(np.load(paths.pop(), mmap_mode="r")))

    def _progress_board(self):
        """The progress actor, on the driver's own node: a worker node lost mid-scan must not take it along.

        Progress is advisory: should the board die all the same, the folds go on without it
        (see :meth:`_collect` and :class:`_BoardReporter`).
        """
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        board = self._ray.remote(num_cpus=0)(_ProgressBoard)
        try:
            driver_node = self._ray.get_runtime_context().get_node_id()
        except Exception:  # a connection mode without a node of its own: Ray's default placement
            actor = board.remote()
        else:  # hard affinity: a soft one lets Ray place it on a worker node when the driver's has no CPU
            actor = board.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=driver_node,
                                                                                    soft=False)).remote()
        # not waited for: a busy node starts the actor's worker process slowly (40 s and more, importing
        # torch), and the pushes and reads sent meanwhile wait for it in Ray's queue
        return actor

    def _collect(self, pending: dict[Any, int], board, report: ProgressReport | None) -> Iterator[FoldResult]:
        """Yield results as tasks finish, forwarding progress every ``poll_s`` seconds meanwhile.

        The board is read without waiting: one read in flight, forwarded once answered (a board still
        starting answers late, not never). A board that died (its node was lost) stops the progress,
        not the scan.
        """
        forward = _ProgressForwarder(report)
        reading = None  # the board read in flight: polled, never waited on while folds run
        while pending:
            ready, _ = self._ray.wait(list(pending), num_returns=1, timeout=self._poll_s)
            if board is not None:
                reading = reading or board.read.remote()
                if self._ray.wait([reading], timeout=0)[0]:
                    board = self._forward(board, reading, forward)
                    reading = None
            for ref in ready:
                fold = pending.pop(ref)
                yield self._result(ref, fold)
        if board is not None:  # each task's last push was answered before its result: the final counts
            self._forward(board, board.read.remote(), forward)

    def _forward(self, board, reading, forward: "_ProgressForwarder"):
        """Forward the snapshot of the board read ``reading``; the board, or None once it died or hangs."""
        try:
            forward(self._ray.get(reading, timeout=_BOARD_TIMEOUT_S))
            return board
        except (self._ray.exceptions.RayActorError, self._ray.exceptions.GetTimeoutError):
            return None

    def _result(self, ref, fold: int) -> FoldResult:
        """The task's result; its own labelaudit error unwrapped, a dead worker as :class:`ClusterError`."""
        exceptions = self._ray.exceptions
        try:
            return self._ray.get(ref)
        except exceptions.RayTaskError as exc:
            if isinstance(exc.cause, LabelauditError):
                raise exc.cause from None
            raise
        except exceptions.RayError as exc:
            raise ClusterError(
                f"fold {fold + 1} failed on the Ray cluster after {self.retries} retr"
                f"{'y' if self.retries == 1 else 'ies'} ({type(exc).__name__}: {first_line(exc)}); "
                "check the worker logs (out of memory?), raise --fold-retries, and run the same command "
                "again to resume from the finished folds") from exc

    def _cancel(self, pending: dict[Any, int]) -> None:
        for ref in pending:
            self._ray.cancel(ref, force=True)


def _check_options(gpus_per_fold: float | None, cpus_per_fold: float, retries: int, images: str) -> None:
    """Raise :class:`SettingsError` for a resource request or option out of range."""
    problems = []
    if gpus_per_fold is not None and not (0 <= gpus_per_fold and (gpus_per_fold <= 1 or gpus_per_fold == int(gpus_per_fold))):
        problems.append(f"gpus_per_fold={gpus_per_fold!r} (0, a fraction of one GPU, or a whole number)")
    if not cpus_per_fold > 0:
        problems.append(f"cpus_per_fold={cpus_per_fold!r} (> 0)")
    if not (isinstance(retries, int) and retries >= 0):
        problems.append(f"retries={retries!r} (an int >= 0)")
    if images not in IMAGES_MODES:
        problems.append(f"images={images!r} (one of {', '.join(IMAGES_MODES)})")
    if problems:
        raise SettingsError(f"invalid Ray executor option(s): {'; '.join(problems)}")


def _task_config(config: dict[str, Any], device: str) -> dict[str, Any]:
    """``config`` with the task's device, and ``precision`` resolved here as the fold fingerprint resolves it.

    A worker's CPU may differ from the driver's (native bfloat16 or not): the driver's
    resolution is the one the stored folds are fingerprinted with, so every task uses it.
    """
    precision = resolve_precision(config.get("precision", "auto"), torch.device(device))
    return {**config, "device": device, "precision": precision}


def _quietly(call: Callable[..., Any], *args: Any) -> None:
    """``call(*args)``, ignoring Ray's errors (clean-up of an actor whose node may be gone)."""
    import ray

    try:
        call(*args)
    except ray.exceptions.RayError:
        pass


# ---------------------------------------------------------------------- in the task


def _fold_task(run: Callable[..., FoldResult], job: FoldJob, images: np.ndarray | None, board,
               threads: int) -> FoldResult:
    """Body of one fold's Ray task: train with the shared images, push progress to ``board``.

    ``images`` arrives as the array itself (Ray resolves the object ref passed as an
    argument to a read-only view of the node's object store), or None to read
    ``job.images_path``.
    """
    torch.set_num_threads(threads)
    # arrays from Ray are read-only views; torch wants writable ones (these are small)
    job = replace(job, labels=np.array(job.labels), train_idx=np.array(job.train_idx),
                  holdout_idx=np.array(job.holdout_idx))
    if images is not None:
        job = replace(job, images=images)
    elif not os.path.exists(job.images_path):
        raise ClusterError(f"the images file {job.images_path} is not visible on node {socket.gethostname()}: "
                           "put the scan directory on a filesystem every node mounts at the same path, "
                           "or use --ray-images object-store")
    reporter = _BoardReporter(board, job.fold)
    result = run(job, report=reporter)
    reporter.flush(wait=True)  # the driver sees the final count before the result
    return result


class _BoardReporter:
    """A fold task's ``report`` callback: counts images, pushes the latest state every ``interval`` s."""

    def __init__(self, board, fold: int, interval: float = 0.5) -> None:
        self._board, self._fold, self._interval = board, fold, interval
        self._epoch, self._done, self._loss, self._acc = 0, 0, math.nan, math.nan
        self._last = time.monotonic()

    def __call__(self, n: int, fold: int, epoch: int, loss: float, acc: float) -> None:
        self._done += n
        self._epoch = epoch
        if loss == loss:  # NaN: no fresh figures this step
            self._loss, self._acc = loss, acc
        if time.monotonic() - self._last >= self._interval:
            self.flush()

    def flush(self, *, wait: bool = False) -> None:
        """Push the latest state; a board that died (its node was lost) or does not answer within
        ``_BOARD_TIMEOUT_S`` is given up: progress never fails a fold nor holds it up."""
        import ray

        self._last = time.monotonic()
        if self._board is None:
            return
        try:
            ref = self._board.push.remote(self._fold, self._epoch, self._done, self._loss, self._acc)
            if wait:
                ray.get(ref, timeout=_BOARD_TIMEOUT_S)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            self._board = None


class _ProgressBoard:
    """Ray actor: the latest ``(epoch, images done, loss, accuracy)`` of each running fold."""

    def __init__(self) -> None:
        self._latest: dict[int, tuple[int, int, float, float]] = {}

    def push(self, fold: int, epoch: int, done: int, loss: float, acc: float) -> None:
        self._latest[fold] = (epoch, done, loss, acc)

    def read(self) -> dict[int, tuple[int, int, float, float]]:
        return dict(self._latest)


class _ProgressForwarder:
    """Turn board snapshots into ``report(n, fold, epoch, loss, acc)`` calls of new images only.

    A retried fold starts counting from 0 again: its images are reported only once they
    pass what its dead attempt had reached, so the bar never counts an image twice.
    """

    def __init__(self, report: ProgressReport | None) -> None:
        self._report = report
        self._seen: dict[int, int] = {}

    def __call__(self, snapshot: dict[int, tuple[int, int, float, float]]) -> None:
        if self._report is None:
            return
        for fold, (epoch, done, loss, acc) in sorted(snapshot.items()):
            new = done - self._seen.get(fold, 0)
            if new > 0:
                self._seen[fold] = done
                self._report(new, fold, epoch, loss, acc)
