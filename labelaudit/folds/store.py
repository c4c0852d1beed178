"""Finished folds on disk, so a killed scan resumes instead of retraining them."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from labelaudit.folds.records import FoldResult
from labelaudit.fsutil import atomic_write

__all__ = ["FoldStore", "STORE_FORMAT"]

#: Layout of a stored fold file; files of another layout are retrained, never misread.
STORE_FORMAT = 2


class FoldStore:
    """Fold results as ``fold-<k>.npz`` files in a directory, tagged with a fingerprint.

    A file holds ``train_idx``, ``holdout_idx``, every record of the result under its own
    name, and a JSON ``meta`` entry (fingerprint, fold, accuracy, timings, record names).
    A result is only reused when its fingerprint (training settings + data + labels +
    fold split) matches, so changing anything retrains instead of mixing old results in.
    Files are written with :func:`labelaudit.fsutil.atomic_write`, so a process killed
    mid-write leaves no half-written result.

    Parameters
    ----------
    directory : path
        Folder of the fold files (created on the first save).
    fingerprint : str
        What a stored fold must match to be loaded.
    """

    def __init__(self, directory: Path, fingerprint: str) -> None:
        self.directory = Path(directory)
        self.fingerprint = fingerprint

    def _path(self, fold: int) -> Path:
        return self.directory / f"fold-{fold}.npz"

    def save(self, result: FoldResult) -> None:
        """Write ``result`` (all of its records) as the stored result of its fold."""
        self.directory.mkdir(parents=True, exist_ok=True)
        meta = {"format": STORE_FORMAT, "fingerprint": self.fingerprint, "fold": result.fold,
                "holdout_accuracy": result.holdout_accuracy, "timings": result.timings,
                "records": sorted(result.records)}
        arrays = {"meta": np.array(json.dumps(meta)), "train_idx": result.train_idx,
                  "holdout_idx": result.holdout_idx, **result.records}
        atomic_write(self._path(result.fold), lambda fh: np.savez(fh, **arrays), binary=True)

    def stored_folds(self) -> list[int]:
        """Fold ids with a file in the store, whatever made it (see :meth:`load` for which are reusable)."""
        if not self.directory.is_dir():
            return []
        names = (p.name for p in self.directory.glob("fold-*.npz"))
        return sorted(int(n[5:-4]) for n in names if n[5:-4].isdigit())

    def load(self, fold: int) -> FoldResult | None:
        """The stored result of ``fold``, or None when absent, unreadable or made otherwise.

        "Made otherwise" is another fingerprint or another file layout; the caller trains
        the fold again.
        """
        path = self._path(fold)
        if not path.exists():
            return None
        try:
            with np.load(path) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("format") != STORE_FORMAT or meta.get("fingerprint") != self.fingerprint:
                    return None
                return FoldResult(fold=meta["fold"], train_idx=data["train_idx"], holdout_idx=data["holdout_idx"],
                                  holdout_accuracy=meta["holdout_accuracy"], timings=meta["timings"],
                                  records={name: data[name] for name in meta["records"]})
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None  # unreadable or undeclared records: train the fold again
