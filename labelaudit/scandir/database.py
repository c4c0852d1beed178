"""SQLite storage of a scan: samples, classes and scan metadata; connections and transactions.

The review's tables (decisions and their bookkeeping) are defined and written by
:mod:`labelaudit.review`; :func:`connect` creates them too. The schema is
created with ``CREATE TABLE IF NOT EXISTS`` so opening an older database adds
what is missing and never drops data. Decisions are keyed by the sample's
relative path, not its row id, so a re-scan of the same dataset keeps every
decision already made.
"""

from __future__ import annotations

import json
import os
import sqlite3
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from labelaudit.errors import CorruptDatabase, DatabaseBusy, NoScanInDatabase, ReadOnlyScanDir
from labelaudit.scandir.layout import ScanDir, json_safe

__all__ = [
    "DB_NAME", "SCHEMA", "connect", "is_busy", "busy_error", "sqlite_errors", "read_snapshot", "check_readable",
    "check_holds_scan", "has_table", "transaction", "write_scan",
    "write_annotations", "read_meta", "read_classes", "read_unscored", "utc_now",
    "json_safe",
]

DB_NAME = ScanDir.DATABASE  # the one spelling lives in scandir.layout

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL                 -- JSON
);
CREATE TABLE IF NOT EXISTS classes (
    class_id  INTEGER PRIMARY KEY,      -- index into the probability columns
    name      TEXT NOT NULL UNIQUE,
    n_samples INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS samples (
    sample_id       INTEGER PRIMARY KEY, -- 0-based row of scores.csv and of the scan's arrays
    path            TEXT NOT NULL UNIQUE,-- relative to the dataset root, POSIX separators
    given_label     TEXT NOT NULL,
    suggested_label TEXT NOT NULL,
    mislabel_score  REAL NOT NULL,       -- in [0, 1], higher = more likely mislabeled
    flagged         INTEGER NOT NULL,    -- 0/1: proposed for review
    score_rank      INTEGER NOT NULL,    -- 1 = highest mislabel_score
    top_classes     TEXT NOT NULL,       -- JSON [[class name, out-of-sample probability], ...]
    signals         TEXT NOT NULL        -- JSON {signal name: value or null}
);
CREATE INDEX IF NOT EXISTS samples_by_rank ON samples (flagged, score_rank);
CREATE INDEX IF NOT EXISTS samples_by_given ON samples (given_label, score_rank);
CREATE INDEX IF NOT EXISTS samples_by_suggested ON samples (suggested_label, score_rank);
-- Every labelled image of the input that was not scored: readable = 1 for an image of a class
-- too small for the folds (exported with its given label), 0 for a file that could not be decoded.
CREATE TABLE IF NOT EXISTS unscored (
    path        TEXT PRIMARY KEY,        -- relative to the dataset root, POSIX separators
    given_label TEXT NOT NULL,
    reason      TEXT NOT NULL,
    readable    INTEGER NOT NULL
);
-- Several annotators per image (scan --annotations): every annotation, and one row per annotator.
-- samples.given_label is then the consensus; a reviewer's decision overrides it like any other.
CREATE TABLE IF NOT EXISTS votes (
    path      TEXT NOT NULL,             -- relative to the dataset root, POSIX separators
    annotator TEXT NOT NULL,
    label     TEXT NOT NULL,             -- as the annotator wrote it (may be a class that was not scanned)
    PRIMARY KEY (path, annotator)
);
CREATE INDEX IF NOT EXISTS votes_by_annotator ON votes (annotator, path);
CREATE TABLE IF NOT EXISTS annotators (
    annotator     TEXT PRIMARY KEY,
    n_labels      INTEGER NOT NULL,
    agreement     REAL,                  -- share of their labels equal to the consensus
    quality       REAL,                  -- estimated accuracy, higher = better
    most_confused TEXT NOT NULL          -- "consensus -> their label (count); ..."
);
"""


def utc_now(*, microseconds: bool = False) -> str:
    """Current UTC time as an ISO 8601 string with seconds (or microseconds) precision."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds" if microseconds else "seconds")


def connect(db_path: str | Path, *, read_only: bool = False) -> sqlite3.Connection:
    """Open ``db_path`` (creating the schema unless ``read_only``).

    The connection uses WAL journaling and ``synchronous=FULL`` so that a
    committed transaction survives a killed process or a power cut, and
    ``check_same_thread=False`` so a web server's worker threads can share it
    behind their own lock.

    Raises
    ------
    CorruptDatabase
        SQLite cannot read the file (damaged, truncated, not a database); it is left as it is.
    DatabaseBusy
        Another process holds the database locked.
    """
    db_path = Path(db_path)
    with sqlite_errors(db_path):
        return _connect(db_path, read_only=read_only)


#: SQLite's result codes for "another connection holds the lock" (``SQLITE_BUSY``, ``SQLITE_LOCKED``).
_BUSY_CODES = (5, 6)


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "database is locked": another connection holds the lock.

    By the result code (``sqlite_errorcode``, Python >= 3.11); on Python 3.10, which has no
    code, by SQLite's fixed text of those two results.
    """
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _BUSY_CODES
    return str(exc) in ("database is locked", "database table is locked")


def busy_error(db_path: str | Path) -> DatabaseBusy:
    """The one-line :class:`~labelaudit.errors.DatabaseBusy` for ``db_path``."""
    return DatabaseBusy(
        f"{db_path} is locked by another process (a scan writing into that folder, or a program holding the "
        "database open in an exclusive transaction); try again once it has finished")


@contextmanager
def sqlite_errors(db_path: Path) -> Iterator[None]:
    """Turn SQLite's errors on opening or reading ``db_path`` into typed ones.

    A lock held by another process becomes :class:`~labelaudit.errors.DatabaseBusy`; damage
    (not a database, truncated, malformed) :class:`~labelaudit.errors.CorruptDatabase`; other
    operational errors (no permission, ...) propagate as they are.
    """
    try:
        yield
    except (sqlite3.DatabaseError, pd.errors.DatabaseError) as raised:
        exc = raised.__cause__ if isinstance(raised, pd.errors.DatabaseError) else raised  # pandas wraps SQLite's
        if is_busy(exc):
            raise busy_error(db_path) from exc
        if _is_damage(exc):
            raise _corrupt(db_path, exc) from None
        raise  # no permission, disk, a programming error...: not damage


#: SQLite's result codes for a damaged file (``SQLITE_CORRUPT``) and a file that is no database (``SQLITE_NOTADB``).
_DAMAGE_CODES = (11, 26)


def _is_damage(exc: BaseException | None) -> bool:
    """Whether ``exc`` is SQLite finding the file damaged or no database (by result code; by class on Python 3.10)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _DAMAGE_CODES
    return type(exc) is sqlite3.DatabaseError


@contextmanager
def read_snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Every read inside sees one state of the database, whatever other connections commit meanwhile.

    A deferred transaction: in WAL mode its first read fixes the snapshot until it ends. Inside a
    transaction the caller already holds, it adds nothing. Nothing may be written inside.
    """
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")  # read only: nothing to commit


def check_readable(db_path: str | Path) -> None:
    """Read every page of ``db_path`` once (``PRAGMA quick_check``) without writing to it.

    Run before work that ends in writing the database (a scan) or that reads all of it
    (the review app, an export), so that damage is reported at once, in one line.

    Raises
    ------
    CorruptDatabase
        SQLite cannot read the file or finds it damaged.
    """
    db_path = Path(db_path)
    with sqlite_errors(db_path):
        conn = _open_read_only(db_path)
        try:
            problem = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
        finally:
            conn.close()
    if problem != "ok":
        raise _corrupt(db_path, problem)


def check_holds_scan(db_path: str | Path) -> None:
    """:func:`check_readable`, and that ``db_path`` holds a finished write of a scan, without writing to it.

    Run before reading the scan's samples (the review app, an export): a database that SQLite
    reads but that holds no scan (a zero-byte file, the first scan killed while writing it)
    would otherwise show no sample and export an empty label list.

    Raises
    ------
    CorruptDatabase
        SQLite cannot read the file or finds it damaged.
    NoScanInDatabase
        No class is stored: no scan ever finished writing this database.
    """
    db_path = Path(db_path)
    check_readable(db_path)
    with sqlite_errors(db_path):
        conn = _open_read_only(db_path)
        try:
            holds = has_table(conn, "classes") and conn.execute("SELECT 1 FROM classes LIMIT 1").fetchone() is not None
        finally:
            conn.close()
    if not holds:
        raise NoScanInDatabase(
            f"{db_path} holds no scan (an empty file, or the first scan into {db_path.parent} was stopped before "
            "it finished writing it); run `labelaudit scan` into that folder to make one, or use another copy")


def _corrupt(db_path: Path, problem: object) -> CorruptDatabase:
    return CorruptDatabase(
        f"{db_path} cannot be read ({problem}): the file is damaged or not a labelaudit database. It may hold "
        f"review decisions: keep a copy, try `sqlite3 {db_path.name} .recover > recovered.sql`, then move it "
        f"out of {db_path.parent} to scan there again")


def _read_only_uri(db_path: Path, *, immutable: bool = False) -> str:
    """An SQLite ``file:`` URI opening ``db_path`` read-only (``?`` and ``#`` in the path escaped)."""
    return f"file:{urllib.parse.quote(str(db_path.absolute()), safe='/')}?mode=ro" + ("&immutable=1" if immutable else "")


def _open_read_only(db_path: Path) -> sqlite3.Connection:
    """A read-only connection to ``db_path``, also in a folder nobody can write to.

    SQLite reads a database in WAL mode through a ``-shm`` file it creates beside it; where it
    cannot (a read-only file system), the file is opened ``immutable``: no locks, no log. That is
    exact only for a database nobody writes and whose changes are all in the file, so it is done
    only when neither a ``-wal`` nor a ``-shm`` file is there (SQLite removes both when the last
    connection closes cleanly; a writer, or a killed one, leaves them).

    Raises
    ------
    ReadOnlyScanDir
        The folder is read-only and a ``-wal`` or ``-shm`` file is there: a review server still
        running, or one that was killed with changes not yet in the database file.
    """
    conn = None
    try:
        conn = sqlite3.connect(_read_only_uri(db_path), uri=True, check_same_thread=False)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1")
        return conn
    except sqlite3.OperationalError:
        if conn is not None:
            conn.close()
        if os.access(db_path.parent, os.W_OK):
            raise
    logs = [db_path.with_name(db_path.name + suffix) for suffix in ("-wal", "-shm")]
    if any(log.exists() for log in logs):
        raise ReadOnlyScanDir(
            f"{db_path.parent} is read-only, and {db_path.name} has a write-ahead log beside it (a review server "
            "running, or stopped without closing it: changes may not be in the file yet): copy the scan folder "
            "somewhere writable and use the copy")
    return sqlite3.connect(_read_only_uri(db_path, immutable=True), uri=True, check_same_thread=False)


def _connect(db_path: Path, *, read_only: bool) -> sqlite3.Connection:
    if read_only:
        if not db_path.exists():
            raise FileNotFoundError(f"no labelaudit database at {db_path}")
        conn = _open_read_only(db_path)
    else:
        conn = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
    try:
        if not read_only:
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(SCHEMA)
            _ensure_review_schema(conn)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=10000")
    except BaseException:
        conn.close()
        raise
    return conn


def _ensure_review_schema(conn: sqlite3.Connection) -> None:
    from labelaudit.review.schema import ensure_schema  # the review package imports this module

    ensure_schema(conn)


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error).

    Raises
    ------
    DatabaseBusy
        Another process held the write lock for longer than the connection's ``busy_timeout``
        (nothing was written).
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if is_busy(exc):
            raise busy_error(_file_of(conn)) from exc
        raise
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _file_of(conn: sqlite3.Connection) -> str:
    """The file of ``conn``'s main database ("" for one in memory)."""
    return next((row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"), "")


def dumps(value: Any) -> str:
    """JSON text for a value that may hold numpy scalars/arrays or paths; NaN becomes null."""
    return json.dumps(json_safe(value), allow_nan=False)


def write_scan(
    conn: sqlite3.Connection,
    scores: pd.DataFrame,
    *,
    classes: Sequence[str],
    class_counts: Sequence[int],
    top_classes: Sequence[Sequence[tuple[str, float]]],
    signal_columns: Sequence[str],
    meta: dict[str, Any],
    unscored: pd.DataFrame | None = None,
    votes: pd.DataFrame | None = None,
    annotators: pd.DataFrame | None = None,
) -> None:
    """Replace the scan's samples, classes, unscored images and metadata in one transaction.

    Parameters
    ----------
    conn : sqlite3.Connection
        From :func:`connect`.
    scores : pandas.DataFrame
        One row per scanned sample (row ``i`` becomes ``sample_id = i``) with columns
        ``path``, ``given_label``, ``suggested_label``, ``mislabel_score``, ``flagged``
        and every name in ``signal_columns``.
    classes, class_counts : sequence
        Class names in class-id order and the number of scanned samples of each.
    top_classes : sequence, length ``len(scores)``
        Per sample, the most likely classes as ``(name, probability)`` pairs.
    signal_columns : sequence of str
        Columns of ``scores`` stored in the ``signals`` JSON object.
    meta : dict
        JSON-serialisable values stored in the ``meta`` table (one row per key); the
        keys of an earlier scan are removed.
    unscored : pandas.DataFrame, optional
        ``path, given_label, reason, readable`` of the labelled images not scored.
    votes : pandas.DataFrame, optional
        ``path, annotator, label``: every annotation (several annotators per image).
    annotators : pandas.DataFrame, optional
        ``annotator, n_labels, agreement, quality, most_confused``, one row per annotator.

    Decisions are left untouched; votes and annotators of an earlier scan are replaced (removed
    when not given).
    """
    ranks = scores["mislabel_score"].rank(ascending=False, method="first").astype(int)
    signal_values = scores[list(signal_columns)].astype(float).to_numpy()
    rows = (
        (
            i, row.path, row.given_label, row.suggested_label, float(row.mislabel_score),
            int(bool(row.flagged)), int(rank), dumps([[c, round(float(p), 6)] for c, p in top]),
            dumps(dict(zip(signal_columns, (float(v) for v in values)))),
        )
        for i, (row, rank, top, values) in enumerate(
            zip(scores.itertuples(index=False), ranks, top_classes, signal_values)
        )
    )
    with transaction(conn):
        conn.execute("DELETE FROM samples")
        conn.execute("DELETE FROM classes")
        conn.execute("DELETE FROM unscored")
        conn.execute("DELETE FROM meta")
        conn.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.executemany(
            "INSERT INTO classes VALUES (?, ?, ?)",
            [(i, name, int(n)) for i, (name, n) in enumerate(zip(classes, class_counts))],
        )
        conn.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, dumps(v)) for k, v in meta.items()]
        )
        if unscored is not None:
            conn.executemany("INSERT INTO unscored VALUES (?, ?, ?, ?)", _unscored_rows(unscored))
        write_annotations(conn, votes, annotators)


def write_annotations(conn: sqlite3.Connection, votes: pd.DataFrame | None,
                      annotators: pd.DataFrame | None) -> None:
    """Replace the ``votes`` and ``annotators`` rows (inside the caller's transaction).

    Parameters
    ----------
    votes : pandas.DataFrame or None
        ``path, annotator, label``, one row per annotation, in display order.
    annotators : pandas.DataFrame or None
        ``annotator, n_labels, agreement, quality, most_confused``.
    """
    conn.execute("DELETE FROM votes")
    conn.execute("DELETE FROM annotators")
    if votes is not None:
        conn.executemany("INSERT INTO votes VALUES (?, ?, ?)",
                         zip(votes["path"].astype(str), votes["annotator"].astype(str), votes["label"].astype(str)))
    if annotators is not None:
        conn.executemany("INSERT INTO annotators VALUES (?, ?, ?, ?, ?)", (
            (str(r.annotator), int(r.n_labels), _real(r.agreement), _real(r.quality), str(r.most_confused))
            for r in annotators.itertuples(index=False)))


def _real(value) -> float | None:
    value = float(value)
    return value if value == value else None


def _unscored_rows(unscored: pd.DataFrame) -> list[tuple[str, str, str, int]]:
    return [(str(p), str(g), str(r), int(bool(x))) for p, g, r, x in
            zip(unscored["path"], unscored["given_label"], unscored["reason"], unscored["readable"])]


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    """Whether the database has the table ``name`` (older scans lack some; the review's are made on first use)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def read_meta(conn: sqlite3.Connection) -> dict[str, Any]:
    """All ``meta`` rows as ``{key: decoded JSON value}``."""
    return {row["key"]: json.loads(row["value"]) for row in conn.execute("SELECT key, value FROM meta")}


def read_unscored(conn: sqlite3.Connection) -> pd.DataFrame:
    """The ``unscored`` rows (``path, given_label, reason, readable``) sorted by path.

    Empty for a database written before the table existed.
    """
    columns = ["path", "given_label", "reason", "readable"]
    if not has_table(conn, "unscored"):
        return pd.DataFrame(columns=columns)
    rows = conn.execute(f"SELECT {', '.join(columns)} FROM unscored ORDER BY path").fetchall()
    return pd.DataFrame([tuple(r) for r in rows], columns=columns)


def read_classes(conn: sqlite3.Connection) -> list[str]:
    """Class names in class-id order."""
    return [row["name"] for row in conn.execute("SELECT name FROM classes ORDER BY class_id")]
