"""The review's tables in ``labelaudit.db`` and the one definition of the decision in force.

The tables are append-only: ``decisions`` (one row per decision, undo and clear),
``decision_links`` (which rows were written together, which row an undo withdraws) and
``decision_requests`` (the client request id of every write, so that a retried request
is answered with its first result instead of being stored twice).
"""

from __future__ import annotations

import sqlite3

from labelaudit.review.actions import ACTIONS, Action

__all__ = ["DECISIONS_SCHEMA", "in_force", "SAMPLES_WITH_DECISIONS", "CURRENT_DECISIONS_VIEW", "ensure_schema"]


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

DECISIONS_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS decisions (
    decision_id INTEGER PRIMARY KEY AUTOINCREMENT,
    path        TEXT NOT NULL,           -- samples.path; stable across re-scans
    action      TEXT NOT NULL CHECK (action IN ({_ACTION_LIST})),
    label       TEXT,                    -- resulting label; NULL for 'unusable' and 'clear'
    note        TEXT NOT NULL DEFAULT '',
    reviewer    TEXT NOT NULL DEFAULT '',
    decided_at  TEXT NOT NULL            -- ISO 8601, UTC
);
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
"""

#: Every sample with the decision in force for it (``d_*`` columns NULL when unreviewed).
SAMPLES_WITH_DECISIONS = f"""
SELECT s.sample_id, s.path, s.given_label, s.suggested_label, s.mislabel_score, s.flagged,
       s.score_rank, s.top_classes, s.signals,
       d.decision_id AS d_id, d.action AS d_action, d.label AS d_label, d.note AS d_note,
       d.reviewer AS d_reviewer, d.decided_at AS d_decided_at
FROM samples AS s
LEFT JOIN decisions AS d ON {in_force("d", "s.path")}
"""


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the review's tables and indexes if missing; bring ``current_decisions`` up to date.

    Idempotent and cheap when nothing is missing (older databases get what they lack;
    nothing is dropped but the view, which holds no data).
    """
    conn.executescript(DECISIONS_SCHEMA)
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'view' AND name = 'current_decisions'").fetchone()
    if row is not None and row[0] == CURRENT_DECISIONS_VIEW:
        return
    conn.executescript(
        f"BEGIN IMMEDIATE; DROP VIEW IF EXISTS current_decisions; {CURRENT_DECISIONS_VIEW}; COMMIT;")
