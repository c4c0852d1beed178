"""Settings and per-request dependencies: the scan's SQLite connections and its arrays."""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, Request

from labelaudit.scandir import database as storage

__all__ = ["Settings", "ConnectionPool", "get_settings", "get_db", "Db", "SettingsDep", "Embeddings"]


class ConnectionPool:
    """A few reusable SQLite connections to one database, shared by the worker threads.

    SQLite in WAL mode lets readers run beside the one writer; writes are additionally
    serialised by :attr:`write_lock` so that two requests never race for the write lock
    (each decision is still its own ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction).
    """

    def __init__(self, db_path: Path, size: int = 8) -> None:
        self.db_path = db_path
        self._idle: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._all: list[sqlite3.Connection] = []
        self._size = size
        self._lock = threading.Lock()
        self.write_lock = threading.Lock()

    def acquire(self) -> sqlite3.Connection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if len(self._all) < self._size:
                conn = storage.connect(self.db_path)
                conn.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache per connection
                self._all.append(conn)
                return conn
        return self._idle.get(timeout=30)

    def release(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:  # a failed request must not leave a transaction open
            conn.rollback()
        self._idle.put(conn)

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()


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
    """What the app knows about the scan it serves (read once at start-up)."""

    scan_dir: Path
    reviewer: str
    token: str | None = None
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1", "[::1]")
    dataset_root: Path = field(init=False)
    meta: dict[str, Any] = field(init=False)
    classes: list[str] = field(init=False)
    embeddings: Embeddings = field(init=False)
    pool: ConnectionPool = field(init=False)

    def __post_init__(self) -> None:
        self.scan_dir = Path(self.scan_dir).resolve()
        db_path = self.scan_dir / storage.DB_NAME
        if not db_path.is_file():
            raise FileNotFoundError(f"no {storage.DB_NAME} in {self.scan_dir}; run `labelaudit scan` first")
        self.pool = ConnectionPool(db_path)
        conn = self.pool.acquire()
        try:
            self.meta = storage.read_meta(conn)
            self.classes = storage.read_classes(conn)
        finally:
            self.pool.release(conn)
        root = self.meta.get("dataset_root")
        self.dataset_root = Path(root).resolve() if root else self.scan_dir
        self.embeddings = Embeddings(self.scan_dir / "embeddings.npy")

    @property
    def scan_name(self) -> str:
        return self.scan_dir.name

    @property
    def dataset_name(self) -> str:
        """The dataset folder's name (the scan folder's is often just "scan")."""
        return self.dataset_root.name or str(self.dataset_root)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_db(request: Request) -> Iterator[sqlite3.Connection]:
    """One pooled connection for the duration of a request (returned to the pool after)."""
    pool: ConnectionPool = request.app.state.settings.pool
    conn = pool.acquire()
    try:
        yield conn
    finally:
        pool.release(conn)


SettingsDep = Annotated[Settings, Depends(get_settings)]
Db = Annotated[sqlite3.Connection, Depends(get_db)]
