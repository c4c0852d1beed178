"""Running fold jobs, and keeping their results on disk so a killed scan resumes.

An executor takes :class:`~labelaudit.training.FoldJob` objects and hands back
:class:`~labelaudit.training.FoldResult` objects. :class:`InProcessExecutor` runs them
one after the other here; a cluster engine only has to implement :class:`FoldExecutor`
(jobs are plain data: index arrays, a config dict and the path of a ``.npy`` file).
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from labelaudit.folds.training import FoldJob, FoldResult, ProgressReport, run_fold

__all__ = ["FoldExecutor", "InProcessExecutor", "FoldStore"]


class FoldExecutor(Protocol):
    """Anything that can run fold jobs."""

    def map(self, jobs: Sequence[FoldJob], *, report: ProgressReport | None = None) -> Iterator[FoldResult]:
        """Run ``jobs`` and yield one result per job, in any order, as each finishes."""


class InProcessExecutor:
    """Run folds sequentially in this process (GPU or CPU, as the config says)."""

    def __init__(self, run: Callable[..., FoldResult] = run_fold) -> None:
        self._run = run

    def map(self, jobs: Sequence[FoldJob], *, report: ProgressReport | None = None) -> Iterator[FoldResult]:
        for job in jobs:
            yield self._run(job, report=report)


class FoldStore:
    """Fold results as ``fold-<k>.npz`` files in a directory, tagged with a fingerprint.

    A result is only reused when its fingerprint (training settings + data + labels +
    fold split) matches, so changing anything retrains instead of mixing old results in.
    Files are written to a temporary name and renamed, so a process killed mid-write
    leaves no half-written result.
    """

    def __init__(self, directory: Path, fingerprint: str) -> None:
        self.directory = Path(directory)
        self.fingerprint = fingerprint

    def _path(self, fold: int) -> Path:
        return self.directory / f"fold-{fold}.npz"

    def save(self, result: FoldResult) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        arrays = {name: getattr(result, name) for name in FoldResult.ARRAYS if getattr(result, name) is not None}
        meta = {"fingerprint": self.fingerprint, "fold": result.fold,
                "holdout_accuracy": result.holdout_accuracy, "timings": result.timings}
        tmp = self._path(result.fold).with_suffix(".tmp.npz")
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._path(result.fold))

    def load(self, fold: int) -> FoldResult | None:
        """The stored result of ``fold`` if present and made with this fingerprint."""
        path = self._path(fold)
        if not path.exists():
            return None
        try:
            with np.load(path) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("fingerprint") != self.fingerprint:
                    return None
                arrays = {name: data[name] if name in data else None for name in FoldResult.ARRAYS}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None  # unreadable: train the fold again
        return FoldResult(fold=meta["fold"], holdout_accuracy=meta["holdout_accuracy"],
                          timings=meta["timings"], **arrays)
