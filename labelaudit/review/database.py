"""The review's one handle on ``labelaudit.db``: pooled readers, one serialised writer.

Modelled on datasette's ``Database``: reads use a pool of connections, and every write
goes through :meth:`ReviewDatabase.execute_write_fn`, which runs it on the one write
connection, under one lock, inside one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction.
Decisions (:meth:`~ReviewDatabase.decide`, :meth:`~ReviewDatabase.undo`) are the writes.
"""

from __future__ import annotations

import copy
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from labelaudit.errors import DatabaseBusy, DecisionError, SampleNotFound, StaleScan
from labelaudit.review import decisions
from labelaudit.review.actions import resolve
from labelaudit.review.classorder import ClassOrder, write_class_order
from labelaudit.review.selections import create_selection_in
from labelaudit.review.tags import change_tags_in
from labelaudit.scandir.database import connect, read_meta, transaction

__all__ = ["ReviewDatabase", "ConnectionPool", "StatsCache", "MAX_SQLITE_INT", "valid_id"]

T = TypeVar("T")

#: SQLite integers are signed 64-bit; larger Python ints cannot even be bound.
MAX_SQLITE_INT = 2**63 - 1


def valid_id(value: int) -> bool:
    """True if ``value`` can be a rowid (an int SQLite can bind, not negative)."""
    return isinstance(value, int) and 0 <= value <= MAX_SQLITE_INT


class ConnectionPool:
    """A few reusable read connections to one database, shared by worker threads.

    Parameters
    ----------
    db_path : Path
    size : int
        At most this many connections; :meth:`acquire` waits (30 s) when all are in use.
    """

    def __init__(self, db_path: Path, size: int = 8) -> None:
        self.db_path = db_path
        self.size = size
        self._idle: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def acquire(self) -> sqlite3.Connection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if len(self._all) < self.size:
                conn = _open(self.db_path)
                self._all.append(conn)
                return conn
        try:
            return self._idle.get(timeout=30)
        except queue.Empty:
            raise DatabaseBusy(f"all {self.size} database connections of the review app stayed in use for 30 s; "
                               "try again") from None

    def release(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:  # a failed request must not leave a transaction open
            conn.rollback()
        self._idle.put(conn)

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()


def _scan_id(conn: sqlite3.Connection) -> str | None:
    value = read_meta(conn).get("created_at")
    return None if value is None else str(value)


def _check_scan(conn: sqlite3.Connection, scan_id: str | None) -> None:
    """:class:`StaleScan` unless ``scan_id`` is None or the scan that wrote the samples."""
    current = _scan_id(conn) if scan_id is not None else None
    if current is not None and scan_id != current:
        raise StaleScan("the scan was run again since this page was loaded, so its sample numbers may name "
                        "other images now: reload the page (nothing was saved)")


def _open(db_path: Path) -> sqlite3.Connection:
    conn = connect(db_path)
    conn.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache per connection
    return conn


class StatsCache:
    """Computed statistics keyed by the database's content version (per app, not per process).

    The version changes whenever a decision is appended or the samples are rewritten, so
    a cached value is never stale. Each caller gets its own copy of the value (a route may add
    keys to the rows it renders without changing what the next request gets).
    """

    def __init__(self, max_entries: int = 64) -> None:
        self._data: dict[tuple, Any] = {}
        self._lock = threading.Lock()
        self._max = max_entries

    @staticmethod
    def version(conn: sqlite3.Connection) -> tuple:
        """The last decision, the samples' last row and the scan's ``created_at`` (a re-scan of as many
        images as before rewrites the samples with the same last row id)."""
        row = conn.execute("SELECT MAX(decision_id), (SELECT MAX(rowid) FROM samples), "
                           "(SELECT value FROM meta WHERE key = 'created_at') FROM decisions").fetchone()
        return (row[0], row[1], row[2])

    def get(self, name: str, conn: sqlite3.Connection, compute: Callable[[], T]) -> T:
        """``compute()``, or its value cached for ``name`` at the current version."""
        key = (name, self.version(conn))
        with self._lock:
            if key in self._data:
                return copy.deepcopy(self._data[key])
        value = compute()
        with self._lock:
            if len(self._data) >= self._max:
                self._data.clear()
            self._data[key] = copy.deepcopy(value)
        return value


class ReviewDatabase:
    """Connections to one scan's ``labelaudit.db`` and the only writer of its decisions.

    Parameters
    ----------
    db_path : path-like
        The database (its schema is completed on first connection).
    pool_size : int
        Read connections at most.
    """

    def __init__(self, db_path: str | Path, *, pool_size: int = 8) -> None:
        self.db_path = Path(db_path)
        self.pool = ConnectionPool(self.db_path, pool_size)
        self.stats = StatsCache()
        self._write_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None

    @contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        """A pooled connection for reading, returned to the pool afterwards."""
        conn = self.pool.acquire()
        try:
            yield conn
        finally:
            self.pool.release(conn)

    def execute_write_fn(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` as the only writer, in one committed transaction; return its value.

        ``fn`` runs on the write connection under the write lock, between ``BEGIN
        IMMEDIATE`` and ``COMMIT`` (``ROLLBACK`` when it raises, and the exception propagates).
        """
        with self._write_lock:
            if self._writer is None:
                self._writer = _open(self.db_path)
            with transaction(self._writer):
                return fn(self._writer)

    def scan_id(self, conn: sqlite3.Connection | None = None) -> str | None:
        """Which scan wrote the samples (its ``created_at``; None for a database without it).

        Pages send it back with their writes (:meth:`decide`, :meth:`change_tags`), since a
        re-scan renumbers the sample ids they hold. ``conn``: a reader the caller holds.
        """
        if conn is not None:
            return _scan_id(conn)
        with self.reader() as own:
            return _scan_id(own)

    def decide(
        self,
        sample_ids: Sequence[int],
        action: str,
        *,
        label: str | None = None,
        note: str = "",
        reviewer: str = "",
        request_id: str | None = None,
        scan_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Record ``action`` for each sample (one transaction, one undo step).

        The requested action is resolved per sample (:func:`labelaudit.review.actions.resolve`).
        A ``request_id`` seen before returns that request's result and writes nothing. With
        ``scan_id`` (:meth:`scan_id` when the caller read the ids) nothing is written once
        another scan has rewritten the samples.

        Returns
        -------
        list of dict
            ``[{sample_id, path, decision, undoes}]`` in the order of ``sample_ids``.

        Raises
        ------
        SampleNotFound
            An id that is no scanned sample (nothing is written).
        DecisionError
            See :func:`~labelaudit.review.actions.resolve`.
        RequestIdReused
            ``request_id`` answered another request (other samples, note, reviewer or kind).
        StaleScan
            ``scan_id`` is not the scan that wrote the samples (nothing is written).
        """
        ids = list(dict.fromkeys(sample_ids))

        def write(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            replay = decisions.replayed(conn, request_id, "decide", reviewer)
            if replay is not None:
                if scan_id is None or _scan_id(conn) == scan_id:  # the ids still name the images they did
                    decisions.check_same_decisions(conn, request_id, replay, _items_or_none(conn, ids, action, label),
                                                   note)
                return _replay_answer(conn, replay)
            _check_scan(conn, scan_id)
            items = _resolved_items(conn, ids, action, label)
            new = decisions.record_decisions_in(conn, items, note=note, reviewer=reviewer, request_id=request_id)
            return decisions.recorded(conn, new)

        return self.execute_write_fn(write)

    def undo(self, reviewer: str, *, request_id: str | None = None) -> list[dict[str, Any]]:
        """Withdraw ``reviewer``'s last decision or batch; return the samples' new state.

        A ``request_id`` seen before returns that undo's result and undoes nothing more.
        """
        def write(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            replay = decisions.replayed(conn, request_id, "undo", reviewer)
            if replay is not None:
                return _replay_answer(conn, replay)
            return decisions.recorded(conn, decisions.undo_last_decision_in(conn, reviewer, request_id=request_id))

        return self.execute_write_fn(write)

    def change_tags(self, sample_id: int, *, add: Sequence[str] = (), remove: Sequence[str] = (),
                    reviewer: str = "", scan_id: str | None = None) -> tuple[str, list[str]]:
        """Add / remove free tags of one sample (appended events); return ``(path, its tags)``.

        Raises
        ------
        SampleNotFound, DecisionError
            See :func:`labelaudit.review.tags.change_tags_in`.
        StaleScan
            As for :meth:`decide`.
        """
        def write(conn: sqlite3.Connection) -> tuple[str, list[str]]:
            _check_scan(conn, scan_id)
            row = conn.execute("SELECT path FROM samples WHERE sample_id = ?",
                               (sample_id if valid_id(sample_id) else -1,)).fetchone()
            if row is None:
                raise SampleNotFound(f"no sample {sample_id}")
            return row[0], change_tags_in(conn, row[0], add=add, remove=remove, reviewer=reviewer)

        return self.execute_write_fn(write)

    def set_class_order(self, order: ClassOrder | None, *, reviewer: str = "", scan_id: str | None = None) -> None:
        """Store the class order and keys (None: back to the natural default).

        Raises
        ------
        StaleScan
            As for :meth:`decide`: the order was made on a page of another scan (nothing is stored).
        """
        def write(conn: sqlite3.Connection) -> None:
            _check_scan(conn, scan_id)
            write_class_order(conn, order, reviewer=reviewer)

        self.execute_write_fn(write)

    def create_selection(self, sample_ids: Sequence[int], *, scan_id: str | None = None) -> tuple[str, int]:
        """Store a short-lived selection of samples; return ``(selection id, size)``.

        Raises
        ------
        StaleScan
            As for :meth:`decide`: the ids were read from another scan (nothing is stored).
        """
        def write(conn: sqlite3.Connection) -> tuple[str, int]:
            _check_scan(conn, scan_id)
            return create_selection_in(conn, sample_ids)

        return self.execute_write_fn(write)

    def close(self) -> None:
        """Close every connection (the object must not be used afterwards)."""
        self.pool.close()
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None


def _replay_answer(conn: sqlite3.Connection, replay: list[int]) -> list[dict[str, Any]]:
    """The first answer of a retried request, from the rows it wrote.

    Raises
    ------
    StaleScan
        A re-scan since left out an image the request decided on: there is no sample id to answer with.
    """
    answer = decisions.recorded(conn, replay)
    if any(item["sample_id"] is None for item in answer):
        raise StaleScan("this request was saved, but a re-scan since left out its image; reload the page")
    return answer


def _items_or_none(conn: sqlite3.Connection, ids: list[int], action: str, label: str | None) -> list:
    """:func:`_resolved_items`, or ``[]`` when they cannot be resolved (then no stored request matches)."""
    try:
        return _resolved_items(conn, ids, action, label)
    except (SampleNotFound, DecisionError):
        return []


def _resolved_items(conn: sqlite3.Connection, ids: list[int], action: str,
                    label: str | None) -> list[tuple[str, str, str | None]]:
    """``(path, stored action, stored label)`` per sample id; SampleNotFound for unknown ids."""
    for i in ids:
        if not valid_id(i):
            raise SampleNotFound(f"no sample {i}")
    found = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        found.update((r[0], r) for r in conn.execute(
            f"SELECT sample_id, path, given_label, suggested_label FROM samples "
            f"WHERE sample_id IN ({','.join('?' * len(chunk))})", chunk))
    missing = [i for i in ids if i not in found]
    if missing:
        raise SampleNotFound(f"no sample {missing[0]}")
    classes = {r[0] for r in conn.execute("SELECT name FROM classes")}
    return [(found[i][1], *resolve(action, label, given=found[i][2], suggested=found[i][3], classes=classes,
                                   path=found[i][1])) for i in ids]
