"""What the app knows about its scan (read once at start-up) and the per-request dependencies.

The scan is read through :class:`labelaudit.scandir.ScanDir` and its typed
:class:`~labelaudit.scandir.ScanManifest`; the database through one
:class:`labelaudit.review.ReviewDatabase` per app, which owns the connections and every
write. This module only hands them out.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import Depends, Request

from labelaudit.review import ReviewDatabase
from labelaudit.scandir import ScanDir, ScanManifest
from labelaudit.scandir.database import read_classes

__all__ = ["Settings", "get_settings", "get_db", "get_review", "Db", "Review", "SettingsDep", "Embeddings",
           "LOOPBACK_NAMES"]

#: ``Host`` names always served without a token (IP literals of the loopback ranges too:
#: see :func:`labelaudit.webapp.security.is_loopback`).
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


class Embeddings:
    """``embeddings.npy`` of the scan, loaded on first use (float32, rows L2-normalised)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._array: np.ndarray | None = None
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return self.path.is_file()

    def array(self) -> np.ndarray | None:
        if self._array is None and self.available:
            with self._lock:
                if self._array is None:
                    arr = np.load(self.path, mmap_mode="r").astype(np.float32)
                    norms = np.linalg.norm(arr, axis=1, keepdims=True)
                    arr /= np.where(norms > 0, norms, 1)
                    self._array = arr
        return self._array

    def nearest(self, sample_id: int, k: int) -> list[tuple[int, float]]:
        """The ``k`` samples most similar (cosine) to ``sample_id``, excluding itself."""
        arr = self.array()
        if arr is None or not 0 <= sample_id < len(arr):
            return []
        sims = arr @ arr[sample_id]
        sims[sample_id] = -np.inf
        k = min(k, len(arr) - 1)
        if k <= 0:
            return []
        idx = np.argpartition(-sims, k - 1)[:k]
        idx = idx[np.argsort(-sims[idx])]
        return [(int(i), float(sims[i])) for i in idx]


@dataclass
class Settings:
    """What the app knows about the scan it serves (read once at start-up).

    Raises
    ------
    ScanDirError
        ``scan_dir`` has no database or no readable ``scan.json``.
    """

    scan_dir: Path
    reviewer: str
    token: str | None = None
    allowed_hosts: tuple[str, ...] = LOOPBACK_NAMES
    scan: ScanDir = field(init=False)
    manifest: ScanManifest = field(init=False)
    dataset_root: Path = field(init=False)
    classes: list[str] = field(init=False)
    embeddings: Embeddings = field(init=False)

    def __post_init__(self) -> None:
        self.scan_dir = Path(self.scan_dir).resolve()
        self.scan = ScanDir(self.scan_dir)
        self.scan.require_database()
        self.manifest = self.scan.read_manifest()
        root = self.manifest.dataset_root
        self.dataset_root = Path(root).resolve() if root else self.scan_dir
        self.classes = list(self.manifest.classes)
        self.embeddings = Embeddings(self.scan.embeddings)

    def load_classes(self, review: ReviewDatabase) -> None:
        """Take the class names from the database when the manifest lists none."""
        if not self.classes:
            with review.reader() as conn:
                self.classes = read_classes(conn)

    @property
    def scan_name(self) -> str:
        return self.scan_dir.name

    @property
    def dataset_name(self) -> str:
        """The dataset folder's name (the scan folder's is often just "scan")."""
        return self.dataset_root.name or str(self.dataset_root)

    def noise_matrix(self) -> dict | None:
        """``{"classes", "matrix"}`` of the manifest, or None when the scan estimated none."""
        nm = self.manifest.noise_matrix
        if not nm or not self.manifest.classes:
            return None
        return {"classes": list(self.manifest.classes), "matrix": [[float(v or 0) for v in row] for row in nm]}


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_review(request: Request) -> ReviewDatabase:
    return request.app.state.review


def get_db(request: Request) -> Iterator[sqlite3.Connection]:
    """One pooled read connection for the duration of a request."""
    with request.app.state.review.reader() as conn:
        yield conn


SettingsDep = Annotated[Settings, Depends(get_settings)]
Db = Annotated[sqlite3.Connection, Depends(get_db)]
Review = Annotated[ReviewDatabase, Depends(get_review)]
