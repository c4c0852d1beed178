"""SQLite storage of a scan: samples, classes, scan metadata and review decisions.

This module is the only place that writes to ``labelaudit.db``. The schema is
created with ``CREATE TABLE IF NOT EXISTS`` so opening an older database adds
what is missing and never drops data. Decisions are keyed by the sample's
relative path, not its row id, so a re-scan of the same dataset keeps every
decision already made.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DB_NAME", "SCHEMA", "DECISION_ACTIONS", "connect", "transaction", "write_scan",
    "read_meta", "read_classes", "record_decision", "utc_now",
]

DB_NAME = "labelaudit.db"

#: Review actions; ``label`` of a decision is the label the sample ends up with
#: (NULL for ``unusable``, which drops the sample, and for ``clear``, which
#: withdraws the earlier decision so the sample is unreviewed again).
DECISION_ACTIONS = ("accept", "suggested", "relabel", "unusable", "clear")

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
CREATE TABLE IF NOT EXISTS decisions (
    decision_id INTEGER PRIMARY KEY AUTOINCREMENT,
    path        TEXT NOT NULL,           -- samples.path; stable across re-scans
    action      TEXT NOT NULL CHECK (action IN ('accept', 'suggested', 'relabel', 'unusable', 'clear')),
    label       TEXT,                    -- resulting label; NULL for 'unusable' and 'clear'
    note        TEXT NOT NULL DEFAULT '',
    reviewer    TEXT NOT NULL DEFAULT '',
    decided_at  TEXT NOT NULL            -- ISO 8601, UTC
);
CREATE INDEX IF NOT EXISTS decisions_by_path ON decisions (path, decision_id);
-- The decision in force for each sample: its latest row, unless that row is a 'clear'.
CREATE VIEW IF NOT EXISTS current_decisions AS
    SELECT d.* FROM decisions AS d
    JOIN (SELECT path, MAX(decision_id) AS decision_id FROM decisions GROUP BY path) AS latest
      USING (path, decision_id)
    WHERE d.action != 'clear';
"""


def utc_now() -> str:
    """Current UTC time as an ISO 8601 string with seconds precision."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def connect(db_path: str | Path, *, read_only: bool = False) -> sqlite3.Connection:
    """Open ``db_path`` (creating the schema unless ``read_only``).

    The connection uses WAL journaling and ``synchronous=FULL`` so that a
    committed transaction survives a killed process or a power cut, and
    ``check_same_thread=False`` so a web server's worker threads can share it
    behind their own lock.
    """
    db_path = Path(db_path)
    if read_only:
        if not db_path.exists():
            raise FileNotFoundError(f"no labelaudit database at {db_path}")
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, check_same_thread=False)
    else:
        conn = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def dumps(value: Any) -> str:
    """JSON text for a value that may hold numpy scalars/arrays; NaN becomes null."""
    return json.dumps(_nan_to_none(value), default=_json_default, allow_nan=False)


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, np.floating) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value


def write_scan(
    conn: sqlite3.Connection,
    scores: pd.DataFrame,
    *,
    classes: Sequence[str],
    class_counts: Sequence[int],
    top_classes: Sequence[Sequence[tuple[str, float]]],
    signal_columns: Sequence[str],
    meta: dict[str, Any],
) -> None:
    """Replace the scan's samples, classes and metadata in one transaction.

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
        JSON-serialisable values stored in the ``meta`` table (one row per key).

    Decisions are left untouched.
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
        conn.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.executemany(
            "INSERT INTO classes VALUES (?, ?, ?)",
            [(i, name, int(n)) for i, (name, n) in enumerate(zip(classes, class_counts))],
        )
        conn.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, dumps(v)) for k, v in meta.items()]
        )


def read_meta(conn: sqlite3.Connection) -> dict[str, Any]:
    """All ``meta`` rows as ``{key: decoded JSON value}``."""
    return {row["key"]: json.loads(row["value"]) for row in conn.execute("SELECT key, value FROM meta")}


def read_classes(conn: sqlite3.Connection) -> list[str]:
    """Class names in class-id order."""
    return [row["name"] for row in conn.execute("SELECT name FROM classes ORDER BY class_id")]


def record_decision(
    conn: sqlite3.Connection,
    path: str,
    action: str,
    *,
    label: str | None = None,
    note: str = "",
    reviewer: str = "",
) -> int:
    """Append one decision in its own committed transaction; return its ``decision_id``.

    Raises
    ------
    KeyError
        If ``path`` is not a scanned sample.
    ValueError
        If ``action`` is unknown, or ``label`` is missing/unknown for an action that
        needs one, or given for one that must not have one.
    """
    if action not in DECISION_ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {', '.join(DECISION_ACTIONS)}")
    needs_label = action in ("accept", "suggested", "relabel")
    if needs_label and not label:
        raise ValueError(f"action {action!r} needs a label")
    if not needs_label and label is not None:
        raise ValueError(f"action {action!r} takes no label")
    with transaction(conn):
        if conn.execute("SELECT 1 FROM samples WHERE path = ?", (path,)).fetchone() is None:
            raise KeyError(f"no scanned sample with path {path!r}")
        if needs_label and conn.execute("SELECT 1 FROM classes WHERE name = ?", (label,)).fetchone() is None:
            raise ValueError(f"unknown class {label!r}")
        cursor = conn.execute(
            "INSERT INTO decisions (path, action, label, note, reviewer, decided_at) VALUES (?, ?, ?, ?, ?, ?)",
            (path, action, label, note, reviewer, utc_now()),
        )
    return int(cursor.lastrowid)
