"""The review's tables in ``labelaudit.db`` and the one definition of the decision in force.

The tables are append-only: ``decisions`` (one row per decision, undo and clear),
``decision_links`` (which rows were written together, which row an undo withdraws),
``decision_requests`` (the client request id of every write, so that a retried request
is answered with its first result instead of being stored twice) and ``tag_events`` (tags
added to and removed from samples). ``review_settings`` keeps the review's settings (the
class order and keys) and ``selections`` short-lived sets of samples (a box drawn on the map).

Older databases are brought up to date by :func:`ensure_schema`: missing tables and
indexes are created, and a ``decisions`` table whose ``CHECK`` lists fewer actions than
:data:`~labelaudit.review.actions.ACTIONS` is rebuilt once with every row and id kept.
"""

from __future__ import annotations

import sqlite3

from labelaudit.review.actions import ACTIONS, Action

__all__ = ["DECISIONS_SCHEMA", "REVIEW_SCHEMA", "in_force", "SAMPLES_WITH_DECISIONS", "CURRENT_DECISIONS_VIEW",
           "ensure_schema", "CURRENT_TAGS", "tag_in_force"]


def in_force(d: str, path: str) -> str:
    """SQL condition: the decisions row ``d`` is the decision in force for ``path``.

    The decision in force of a sample is its latest decisions row, unless that row is a
    ``clear``. The latest row is found by one probe of ``decisions_by_path`` (alias ``x``),
    so a listing that joins it per sample stays index-driven.

    Parameters
    ----------
    d : str
        Alias of the decisions row tested.
    path : str
        SQL expression of the sample's path (``s.path``, or ``d.path`` for the view).
    """
    return (f"{d}.decision_id = (SELECT MAX(x.decision_id) FROM decisions AS x WHERE x.path = {path}) "
            f"AND {d}.action != '{Action.CLEAR.value}'")


_ACTION_LIST = ", ".join(f"'{a}'" for a in ACTIONS)

#: The decision in force of every sample that has one (one row per path).
CURRENT_DECISIONS_VIEW = (
    "CREATE VIEW current_decisions AS SELECT d.* FROM decisions AS d WHERE " + in_force("d", "d.path")
)

_DECISIONS_TABLE = f"""
CREATE TABLE IF NOT EXISTS decisions (
    decision_id INTEGER PRIMARY KEY AUTOINCREMENT,
    path        TEXT NOT NULL,           -- samples.path; stable across re-scans
    action      TEXT NOT NULL CHECK (action IN ({_ACTION_LIST})),
    label       TEXT,                    -- resulting label; NULL for 'unusable', 'unsure', 'clear'
    note        TEXT NOT NULL DEFAULT '',
    reviewer    TEXT NOT NULL DEFAULT '',
    decided_at  TEXT NOT NULL            -- ISO 8601, UTC
)"""

DECISIONS_SCHEMA = _DECISIONS_TABLE + """;
CREATE INDEX IF NOT EXISTS decisions_by_path ON decisions (path, decision_id);
-- lets counts over the decisions in force read an index instead of the table rows
CREATE INDEX IF NOT EXISTS decisions_in_force ON decisions (path, decision_id, action, label);
-- Rows recorded together (a grid-mode batch, an undo) share batch_id, and an undo row names
-- the decision it withdraws. Rows without a link are single, non-undo decisions.
CREATE TABLE IF NOT EXISTS decision_links (
    decision_id INTEGER PRIMARY KEY,     -- decisions.decision_id
    batch_id    INTEGER NOT NULL,        -- decision_id of the first row of the batch
    undoes      INTEGER                  -- for an undo row: the decision_id it withdraws
);
CREATE INDEX IF NOT EXISTS decision_links_by_undoes ON decision_links (undoes) WHERE undoes IS NOT NULL;
CREATE INDEX IF NOT EXISTS decision_links_by_batch ON decision_links (batch_id);
-- One row per client request that wrote (or tried to write) decisions: a retry with the same
-- request_id is answered from the rows of batch_id instead of writing again.
CREATE TABLE IF NOT EXISTS decision_requests (
    request_id  TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('decide', 'undo')),
    batch_id    INTEGER,                 -- decision_links.batch_id written; NULL when nothing was
    reviewer    TEXT NOT NULL,
    received_at TEXT NOT NULL            -- ISO 8601, UTC
);
CREATE INDEX IF NOT EXISTS decisions_by_reviewer ON decisions (reviewer, decision_id);
"""

#: Tags, the review's settings and map selections (all created if missing).
REVIEW_SCHEMA = """
-- Free tags of samples: one row per tag added or removed; a tag is on a sample when its
-- latest row for that (path, tag) is an 'add'.
CREATE TABLE IF NOT EXISTS tag_events (
    event_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    path       TEXT NOT NULL,            -- samples.path
    tag        TEXT NOT NULL,
    op         TEXT NOT NULL CHECK (op IN ('add', 'remove')),
    reviewer   TEXT NOT NULL DEFAULT '',
    at         TEXT NOT NULL             -- ISO 8601, UTC
);
CREATE INDEX IF NOT EXISTS tag_events_by_path ON tag_events (path, tag, event_id);
CREATE INDEX IF NOT EXISTS tag_events_by_tag ON tag_events (tag, path, event_id);
-- Settings of the review (JSON values), e.g. 'class_order'.
CREATE TABLE IF NOT EXISTS review_settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,            -- JSON
    updated_at TEXT NOT NULL,
    reviewer   TEXT NOT NULL DEFAULT ''
);
-- Short-lived sets of samples (a box drawn on the map), opened in the grid by id.
CREATE TABLE IF NOT EXISTS selections (
    selection_id TEXT NOT NULL,
    sample_id    INTEGER NOT NULL,
    PRIMARY KEY (selection_id, sample_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS selection_info (
    selection_id TEXT PRIMARY KEY,
    n            INTEGER NOT NULL,
    created_at   TEXT NOT NULL
);
"""

def tag_in_force(t: str, tag: str) -> str:
    """SQL condition: ``tag_events`` row ``t`` is the latest event of its path for the tag ``tag``
    (an SQL expression: ``t.tag`` or a parameter), and an ``add``: that tag is on the sample."""
    return (f"{t}.op = 'add' AND {t}.event_id = (SELECT MAX(x.event_id) FROM tag_events AS x "
            f"WHERE x.path = {t}.path AND x.tag = {tag})")


#: The tags on each sample: ``(path, tag)`` whose latest event is an ``add``.
CURRENT_TAGS = f"SELECT t.path, t.tag FROM tag_events AS t WHERE {tag_in_force('t', 't.tag')}"

#: Every sample with the decision in force for it (``d_*`` columns NULL when unreviewed).
SAMPLES_WITH_DECISIONS = f"""
SELECT s.sample_id, s.path, s.given_label, s.suggested_label, s.mislabel_score, s.flagged,
       s.score_rank, s.top_classes, s.signals,
       d.decision_id AS d_id, d.action AS d_action, d.label AS d_label, d.note AS d_note,
       d.reviewer AS d_reviewer, d.decided_at AS d_decided_at
FROM samples AS s
LEFT JOIN decisions AS d ON {in_force("d", "s.path")}
"""


def _decisions_check_current(conn: sqlite3.Connection) -> bool:
    """Whether ``decisions`` is missing or its ``CHECK`` accepts every action of today."""
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'decisions'").fetchone()
    return row is None or all(f"'{a}'" in row[0] for a in ACTIONS)


def _migrate_decisions(conn: sqlite3.Connection) -> None:
    """Rebuild ``decisions`` with today's ``CHECK`` (SQLite cannot alter one), keeping every row and id.

    One transaction: the new table is filled from the old one, which is then dropped and
    replaced; the indexes and the view are re-created afterwards. The ids keep their
    order, and AUTOINCREMENT continues above the largest one.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not _decisions_check_current(conn):  # another connection may have done it meanwhile
            conn.execute("DROP VIEW IF EXISTS current_decisions")
            conn.execute(_DECISIONS_TABLE.replace("IF NOT EXISTS decisions", "decisions_migrated"))
            conn.execute("INSERT INTO decisions_migrated SELECT decision_id, path, action, label, note, reviewer, "
                         "decided_at FROM decisions ORDER BY decision_id")
            conn.execute("DROP TABLE decisions")
            conn.execute("ALTER TABLE decisions_migrated RENAME TO decisions")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the review's tables and indexes if missing; bring ``current_decisions`` up to date.

    Idempotent and cheap when nothing is missing (older databases get what they lack;
    nothing is dropped but the view, which holds no data, and a ``decisions`` table whose
    ``CHECK`` predates an action, which is rebuilt with all its rows: :func:`_migrate_decisions`).
    """
    if not _decisions_check_current(conn):
        _migrate_decisions(conn)
    conn.executescript(DECISIONS_SCHEMA)
    conn.executescript(REVIEW_SCHEMA)
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'view' AND name = 'current_decisions'").fetchone()
    if row is not None and row[0] == CURRENT_DECISIONS_VIEW:
        return
    conn.executescript(
        f"BEGIN IMMEDIATE; DROP VIEW IF EXISTS current_decisions; {CURRENT_DECISIONS_VIEW}; COMMIT;")
