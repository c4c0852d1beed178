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
    "read_meta", "read_classes", "read_unscored", "record_decision", "utc_now", "json_safe",
    "SAMPLES_WITH_DECISIONS", "record_decisions", "undo_last_decision", "decision_history",
    "samples_with_decisions",
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
-- Every labelled image of the input that was not scored: readable = 1 for an image of a class
-- too small for the folds (exported with its given label), 0 for a file that could not be decoded.
CREATE TABLE IF NOT EXISTS unscored (
    path        TEXT PRIMARY KEY,        -- relative to the dataset root, POSIX separators
    given_label TEXT NOT NULL,
    reason      TEXT NOT NULL,
    readable    INTEGER NOT NULL
);
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
-- Review bookkeeping, one row per decisions row written by record_decisions/undo_last_decision
-- (append-only too): rows recorded together (a grid-mode batch, an undo) share batch_id, and an
-- undo row names the decision it withdraws. Rows without a link are single, non-undo decisions.
CREATE TABLE IF NOT EXISTS decision_links (
    decision_id INTEGER PRIMARY KEY,     -- decisions.decision_id
    batch_id    INTEGER NOT NULL,        -- decision_id of the first row of the batch
    undoes      INTEGER                  -- for an undo row: the decision_id it withdraws
);
CREATE INDEX IF NOT EXISTS decision_links_by_undoes ON decision_links (undoes) WHERE undoes IS NOT NULL;
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
    return json.dumps(json_safe(value), default=_json_default, allow_nan=False)


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats (nested in dicts/lists too) replaced by None."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, np.floating) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
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
    unscored: pd.DataFrame | None = None,
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


def _unscored_rows(unscored: pd.DataFrame) -> list[tuple[str, str, str, int]]:
    return [(str(p), str(g), str(r), int(bool(x))) for p, g, r, x in
            zip(unscored["path"], unscored["given_label"], unscored["reason"], unscored["readable"])]


def read_meta(conn: sqlite3.Connection) -> dict[str, Any]:
    """All ``meta`` rows as ``{key: decoded JSON value}``."""
    return {row["key"]: json.loads(row["value"]) for row in conn.execute("SELECT key, value FROM meta")}


def read_unscored(conn: sqlite3.Connection) -> pd.DataFrame:
    """The ``unscored`` rows (``path, given_label, reason, readable``) sorted by path.

    Empty for a database written before the table existed.
    """
    columns = ["path", "given_label", "reason", "readable"]
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'unscored'").fetchone() is None:
        return pd.DataFrame(columns=columns)
    rows = conn.execute(f"SELECT {', '.join(columns)} FROM unscored ORDER BY path").fetchall()
    return pd.DataFrame([tuple(r) for r in rows], columns=columns)


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
    return record_decisions(conn, [(path, action, label)], note=note, reviewer=reviewer)[0]


def _check_decision(action: str, label: str | None) -> None:
    if action not in DECISION_ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {', '.join(DECISION_ACTIONS)}")
    needs_label = action in ("accept", "suggested", "relabel")
    if needs_label and not label:
        raise ValueError(f"action {action!r} needs a label")
    if not needs_label and label is not None:
        raise ValueError(f"action {action!r} takes no label")


def record_decisions(
    conn: sqlite3.Connection,
    items: Sequence[tuple[str, str, str | None]],
    *,
    note: str = "",
    reviewer: str = "",
) -> list[int]:
    """Append several decisions ``(path, action, label)`` in one committed transaction.

    All rows or none are written; they share one ``decision_links.batch_id`` so that
    :func:`undo_last_decision` withdraws them together. Returns the new ``decision_id`` s
    in the order of ``items``. Raises like :func:`record_decision` (nothing is written).
    """
    for _, action, label in items:
        _check_decision(action, label)
    if not items:
        return []
    known = None
    ids: list[int] = []
    with transaction(conn):
        for path, action, label in items:
            if conn.execute("SELECT 1 FROM samples WHERE path = ?", (path,)).fetchone() is None:
                raise KeyError(f"no scanned sample with path {path!r}")
            if label is not None:
                if known is None:
                    known = {row[0] for row in conn.execute("SELECT name FROM classes")}
                if label not in known:
                    raise ValueError(f"unknown class {label!r}")
        now = utc_now()
        for path, action, label in items:
            cursor = conn.execute(
                "INSERT INTO decisions (path, action, label, note, reviewer, decided_at) VALUES (?, ?, ?, ?, ?, ?)",
                (path, action, label, note, reviewer, now),
            )
            ids.append(int(cursor.lastrowid))
        conn.executemany(
            "INSERT INTO decision_links (decision_id, batch_id, undoes) VALUES (?, ?, NULL)",
            [(i, ids[0]) for i in ids],
        )
    return ids


# A decisions row is "live" when it is not an undo row and no undo row withdraws it.
_LIVE = """
    NOT EXISTS (SELECT 1 FROM decision_links AS lk WHERE lk.decision_id = {d}.decision_id AND lk.undoes IS NOT NULL)
    AND NOT EXISTS (SELECT 1 FROM decision_links AS un WHERE un.undoes = {d}.decision_id)
"""

#: Undoable rows of a reviewer: live, and not superseded by a later live row of the same path.
_UNDOABLE = f"""
    SELECT d.decision_id, d.path, COALESCE(l.batch_id, d.decision_id) AS batch_id
    FROM decisions AS d LEFT JOIN decision_links AS l USING (decision_id)
    WHERE d.reviewer = :reviewer AND d.decision_id >= :min_id AND {_LIVE.format(d="d")}
      AND NOT EXISTS (
          SELECT 1 FROM decisions AS e
          WHERE e.path = d.path AND e.decision_id > d.decision_id AND {_LIVE.format(d="e")})
"""


def undo_last_decision(conn: sqlite3.Connection, reviewer: str) -> list[dict[str, Any]]:
    """Withdraw ``reviewer``'s most recent decision (all of its batch) by appending rows.

    Each withdrawn row ``r`` gets a new row that re-instates the state its sample had
    before ``r`` (a copy of the previous row of that path, or ``clear`` when there was
    none), linked to ``r`` through ``decision_links.undoes``. Nothing is updated or deleted,
    so repeated undos walk back through the reviewer's decisions, and a decision already
    replaced by a later one (of anyone) is not undone over it.

    Returns the new rows as dicts (with ``undoes``), empty when there is nothing to undo.
    """
    with transaction(conn):
        last = conn.execute(
            _UNDOABLE + " ORDER BY d.decision_id DESC LIMIT 1", {"reviewer": reviewer, "min_id": 0}
        ).fetchone()
        if last is None:
            return []
        batch = conn.execute(
            f"SELECT * FROM ({_UNDOABLE}) WHERE batch_id = :batch ORDER BY decision_id",
            {"reviewer": reviewer, "min_id": last["batch_id"], "batch": last["batch_id"]},
        ).fetchall()
        now = utc_now()
        new_rows: list[dict[str, Any]] = []
        for row in batch:
            prev = conn.execute(
                "SELECT action, label, note FROM decisions WHERE path = ? AND decision_id < ? "
                "ORDER BY decision_id DESC LIMIT 1",
                (row["path"], row["decision_id"]),
            ).fetchone()
            action, label, note = (prev["action"], prev["label"], prev["note"]) if prev else ("clear", None, "")
            cursor = conn.execute(
                "INSERT INTO decisions (path, action, label, note, reviewer, decided_at) VALUES (?, ?, ?, ?, ?, ?)",
                (row["path"], action, label, note, reviewer, now),
            )
            new_rows.append({
                "decision_id": int(cursor.lastrowid), "path": row["path"], "action": action, "label": label,
                "note": note, "reviewer": reviewer, "decided_at": now, "undoes": int(row["decision_id"]),
            })
        first = new_rows[0]["decision_id"]
        conn.executemany(
            "INSERT INTO decision_links (decision_id, batch_id, undoes) VALUES (?, ?, ?)",
            [(r["decision_id"], first, r["undoes"]) for r in new_rows],
        )
    return new_rows


def decision_history(conn: sqlite3.Connection, path: str) -> list[dict[str, Any]]:
    """Every decisions row of ``path``, oldest first, with ``batch_id`` and ``undoes``."""
    rows = conn.execute(
        "SELECT d.*, COALESCE(l.batch_id, d.decision_id) AS batch_id, l.undoes "
        "FROM decisions AS d LEFT JOIN decision_links AS l USING (decision_id) "
        "WHERE d.path = ? ORDER BY d.decision_id",
        (path,),
    )
    return [dict(row) for row in rows]


#: Every sample with the decision in force for it (``d_*`` columns NULL when unreviewed).
#: The latest decisions row of each path is found through ``decisions_by_path``, so
#: filtering and paging on ``samples`` indexes stays fast however long the history is.
SAMPLES_WITH_DECISIONS = """
SELECT s.sample_id, s.path, s.given_label, s.suggested_label, s.mislabel_score, s.flagged,
       s.score_rank, s.top_classes, s.signals,
       d.decision_id AS d_id, d.action AS d_action, d.label AS d_label, d.note AS d_note,
       d.reviewer AS d_reviewer, d.decided_at AS d_decided_at
FROM samples AS s
LEFT JOIN decisions AS d
  ON d.decision_id = (SELECT MAX(x.decision_id) FROM decisions AS x WHERE x.path = s.path)
 AND d.action != 'clear'
"""


def samples_with_decisions(conn: sqlite3.Connection) -> pd.DataFrame:
    """All samples (in ``sample_id`` order) with their current decision, as a DataFrame.

    Columns: ``sample_id, path, given_label, suggested_label, mislabel_score, flagged,
    score_rank, action, label, note, reviewer, decided_at`` (the last five are NULL/NaN
    for samples without a decision in force).
    """
    sql = f"""
        SELECT sample_id, path, given_label, suggested_label, mislabel_score, flagged, score_rank,
               d_action AS action, d_label AS label, d_note AS note, d_reviewer AS reviewer,
               d_decided_at AS decided_at
        FROM ({SAMPLES_WITH_DECISIONS}) ORDER BY sample_id
    """
    rows = conn.execute(sql).fetchall()
    columns = ["sample_id", "path", "given_label", "suggested_label", "mislabel_score", "flagged",
               "score_rank", "action", "label", "note", "reviewer", "decided_at"]
    return pd.DataFrame([tuple(r) for r in rows], columns=columns)
