"""What the app knows about its scan (read at start-up, and again after a re-scan) and the per-request
dependencies.

The scan is read through :class:`labelaudit.scandir.ScanDir` and its typed
:class:`~labelaudit.scandir.ScanManifest`; the database through one
:class:`labelaudit.review.ReviewDatabase` per app, which owns the connections and every
write. This module only hands them out.
"""

from __future__ import annotations

import copy
import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import Depends, HTTPException, Request

from labelaudit.errors import ScanDirError
from labelaudit.review import ClassOrder, ReviewDatabase, read_class_order
from labelaudit.review.projection import MapCache
from labelaudit.scandir import ScanDir, ScanManifest
from labelaudit.scandir.database import read_classes

__all__ = ["Settings", "ScanView", "get_settings", "get_db", "get_review", "Db", "Review", "SettingsDep", "Embeddings",
           "LOOPBACK_NAMES", "get_reviewer", "Reviewer", "REVIEWER_COOKIE", "REVIEWER_PATTERN", "SignalStats",
           "is_reviewer_name",
           "class_order", "ScanId", "SCAN_HEADER", "get_scan_id"]

#: A reviewer name chosen in the browser (cookie) or sent by a script (header).
REVIEWER_PATTERN = re.compile(r"[\w .'@+-]{1,64}")


def is_reviewer_name(name: str) -> bool:
    """Whether ``name`` is a reviewer name: all of it :data:`REVIEWER_PATTERN`, no space at either end
    (the one rule for ``--reviewer``, the header, the cookie and the page's form)."""
    return bool(REVIEWER_PATTERN.fullmatch(name)) and name == name.strip()
REVIEWER_COOKIE = "la_reviewer"
REVIEWER_HEADER = "x-labelaudit-reviewer"
#: The scan a page was made from (:meth:`labelaudit.review.ReviewDatabase.scan_id`), sent back with its writes.
SCAN_HEADER = "x-labelaudit-scan"

#: ``Host`` names always served without a token (IP literals of the loopback ranges too:
#: see :func:`labelaudit.webapp.security.is_loopback`).
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


class Embeddings:
    """``embeddings.npy`` of the scan, loaded on first use (float32, centred, rows L2-normalised).

    The rows are centred on their mean before normalising: features after a ReLU all point
    into one corner, where every cosine similarity reads 0.99; centred, they spread out.
    """

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
                    arr -= arr.mean(axis=0, keepdims=True)
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


class SignalStats:
    """Each signal's values over all scanned samples, sorted, to rank one sample among them."""

    def __init__(self) -> None:
        self._sorted: dict[str, np.ndarray] | None = None
        self._lock = threading.Lock()

    def _load(self, conn: sqlite3.Connection) -> dict[str, np.ndarray]:
        if self._sorted is None:
            with self._lock:
                if self._sorted is None:
                    values: dict[str, list[float]] = {}
                    for (text,) in conn.execute("SELECT signals FROM samples"):
                        for name, v in json.loads(text).items():
                            if v is not None:
                                values.setdefault(name, []).append(v)
                    self._sorted = {k: np.sort(np.asarray(v, dtype=float)) for k, v in values.items()}
        return self._sorted

    def suspicion(self, conn: sqlite3.Connection, name: str, value: float | None, direction: int) -> float | None:
        """Share of the scanned samples *less* suspicious than ``value`` (0-1; ties count half), or None.

        ``direction`` +1: a higher value is more suspicious; -1: a lower one is.
        """
        arr = self._load(conn).get(name)
        if value is None or arr is None or not len(arr):
            return None
        below = np.searchsorted(arr, value, side="left")
        ties = np.searchsorted(arr, value, side="right") - below
        less_suspicious = below if direction >= 0 else len(arr) - below - ties
        return float(less_suspicious + 0.5 * ties) / len(arr)  # mid-rank: a value most samples share is no outlier


def class_order(conn: sqlite3.Connection, settings: "Settings") -> ClassOrder:
    """The class order and keys in force (stored in the database, else the natural default)."""
    return read_class_order(conn, settings.classes)


@dataclass(frozen=True)
class ScanView:
    """One finished scan as the app serves it: swapped whole when a re-scan replaces ``scan.json``,
    so a request never pairs one scan's manifest with another's classes, embeddings or map."""

    manifest: ScanManifest
    dataset_root: Path
    classes: list[str]
    embeddings: Embeddings
    signal_stats: SignalStats
    map: MapCache

    @classmethod
    def read(cls, scan: ScanDir, manifest: ScanManifest, review: ReviewDatabase | None) -> "ScanView":
        """The view of ``manifest``; class names from the database (``review``) when it lists none."""
        root = manifest.dataset_root
        classes = list(manifest.classes)
        if not classes and review is not None:
            with review.reader() as conn:
                classes = read_classes(conn)
        return cls(manifest=manifest, dataset_root=Path(root).resolve() if root else scan.path.resolve(),
                   classes=classes, embeddings=Embeddings(scan.embeddings), signal_stats=SignalStats(),
                   map=MapCache(scan))


@dataclass
class Settings:
    """What the app knows about the scan it serves: read at start-up, and again when ``scan.json``
    changes (a re-scan into the folder while the app runs: :meth:`refresh` swaps in a new
    :class:`ScanView`; its classes, summary, noise matrix, embeddings, signal ranks and map are
    the new scan's).

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

    def __post_init__(self) -> None:
        self.scan_dir = Path(self.scan_dir).resolve()
        self.scan = ScanDir(self.scan_dir)
        self.scan.require_database()
        self._refresh_lock = threading.Lock()
        self._stamp = self._manifest_stamp()
        self._unreadable: tuple[int, int, int] | None = None  # the stamp of a scan.json that could not be read
        self.view = ScanView.read(self.scan, self.scan.read_manifest(), None)

    # the current view's parts (requests read them from a copy pinned to one view: get_settings)
    manifest = property(lambda self: self.view.manifest)
    dataset_root = property(lambda self: self.view.dataset_root)
    classes = property(lambda self: self.view.classes)
    embeddings = property(lambda self: self.view.embeddings)
    signal_stats = property(lambda self: self.view.signal_stats)
    map = property(lambda self: self.view.map)

    def _manifest_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.scan.manifest_path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def refresh(self, review: ReviewDatabase) -> "Settings":
        """Swap in the view of a ``scan.json`` replaced since (one ``stat`` per call otherwise).

        While a re-scan writes (no ``scan.json``) the last finished scan is kept; the pages of the
        old scan are refused on their next write anyway (:class:`~labelaudit.errors.StaleScan`).
        A ``scan.json`` that cannot be read is tried once per change, not on every request.
        """
        stamp = self._manifest_stamp()
        if stamp is None or stamp == self._stamp:
            return self
        if stamp == self._unreadable:
            return self
        with self._refresh_lock:
            if stamp != self._stamp and stamp != self._unreadable:
                try:
                    manifest = self.scan.read_manifest()
                except ScanDirError:
                    self._unreadable = stamp
                    return self
                self.view = ScanView.read(self.scan, manifest, review)
                self._stamp = stamp  # after the swap: a request meanwhile waits for the new view
        return self

    def load_classes(self, review: ReviewDatabase) -> None:
        """Take the class names from the database when the manifest lists none."""
        if not self.view.classes:
            self.view = ScanView.read(self.scan, self.view.manifest, review)

    @property
    def scan_name(self) -> str:
        return self.scan_dir.name

    @property
    def dataset_name(self) -> str:
        """The dataset folder's name (the scan folder's is often just "scan")."""
        return self.dataset_root.name or str(self.dataset_root)

    def noise_matrix(self) -> dict | None:
        """``{"classes", "matrix"}`` of the manifest, or None when the scan estimated none."""
        manifest = self.manifest  # once: one scan's matrix with its own classes
        nm = manifest.noise_matrix
        if not nm or not manifest.classes:
            return None
        return {"classes": list(manifest.classes), "matrix": [[float(v or 0) for v in row] for row in nm]}


def get_settings(request: Request) -> Settings:
    """The app's :class:`Settings` for this request, read again first when a re-scan replaced ``scan.json``.

    A shallow copy pinned to the current :class:`ScanView`: every part a request reads (manifest,
    classes, noise matrix, embeddings, map) is of one scan, even when a re-scan swaps the view while
    it runs. FastAPI hands the same copy to every use of the dependency within a request.
    """
    return copy.copy(request.app.state.settings.refresh(request.app.state.review))


def get_review(request: Request) -> ReviewDatabase:
    return request.app.state.review


def get_db(request: Request) -> Iterator[sqlite3.Connection]:
    """One pooled read connection for the duration of a request."""
    with request.app.state.review.reader() as conn:
        yield conn


def get_reviewer(request: Request) -> str:
    """The reviewer of this request: the ``X-Labelaudit-Reviewer`` header, else the name chosen in
    this browser (cookie), else the server's ``--reviewer``.

    Raises
    ------
    HTTPException
        422 when the header is there but is no valid name: a script's decisions are never
        stored (and undone) under another reviewer's name. The header's bytes are read as
        UTF-8 (HTTP hands them over as latin-1), so ``José`` is José.
    """
    header = request.headers.get(REVIEWER_HEADER)
    if header is not None:
        name = _utf8(header).strip()
        if not is_reviewer_name(name):
            raise HTTPException(422, f"{REVIEWER_HEADER} is not a reviewer name: 1-64 letters, digits, "
                                     "spaces or . _ ' @ + -")
        return name
    cookie = request.cookies.get(REVIEWER_COOKIE)
    if cookie and is_reviewer_name(cookie.strip()):
        return cookie.strip()
    return request.app.state.settings.reviewer


def _utf8(header: str) -> str:
    """A header value as the UTF-8 text a client sent (unchanged when its bytes are not UTF-8)."""
    try:
        return header.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return header


def get_scan_id(request: Request) -> str | None:
    """The scan the request's page was made from (``X-Labelaudit-Scan``), or None (a script)."""
    return request.headers.get(SCAN_HEADER) or None


SettingsDep = Annotated[Settings, Depends(get_settings)]
Reviewer = Annotated[str, Depends(get_reviewer)]
Db = Annotated[sqlite3.Connection, Depends(get_db)]
Review = Annotated[ReviewDatabase, Depends(get_review)]
ScanId = Annotated[str | None, Depends(get_scan_id)]
