"""Append, undo and read review decisions on a connection to ``labelaudit.db``.

Every function that writes runs one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction. A
write may carry a client ``request_id``: the first request with it is stored together with
its rows, and any later one is answered with that first result without writing again
(a client that lost the response of a decision can safely send it again).

:class:`labelaudit.review.database.ReviewDatabase` serialises these calls for the web app.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import pandas as pd

from labelaudit.errors import DecisionError, RequestIdReused, SampleNotFound
from labelaudit.review.actions import Action, check_stored
from labelaudit.review.schema import SAMPLES_WITH_DECISIONS, in_force
from labelaudit.scandir.database import has_table, transaction, utc_now

__all__ = [
    "record_decision", "record_decisions", "undo_last_decision", "decision_history", "recorded",
    "samples_with_decisions", "unscored_with_decisions", "count_decisions_in_force", "orphaned_decisions",
    "accepted_labels_since_changed", "DECISION_FIELDS", "record_decisions_in", "undo_last_decision_in", "replayed", "check_same_decisions", "decision_log",
]

#: The fields of a decision as the API shows it.
DECISION_FIELDS = ("decision_id", "action", "label", "note", "reviewer", "decided_at", "undoes")


def record_decision(conn: sqlite3.Connection, path: str, action: str, *, label: str | None = None,
                    note: str = "", reviewer: str = "", request_id: str | None = None) -> int:
    """Append one decision in its own committed transaction; return its ``decision_id``.

    Raises
    ------
    SampleNotFound
        ``path`` is not a scanned sample.
    DecisionError
        Unknown action or class, label missing for an action that needs one, or given for
        one that takes none.
    """
    return record_decisions(conn, [(path, action, label)], note=note, reviewer=reviewer, request_id=request_id)[0]


def _check_items(conn: sqlite3.Connection, items: Sequence[tuple[str, str, str | None]]) -> None:
    known: set[str] | None = None
    for path, action, label in items:
        if conn.execute("SELECT 1 FROM samples WHERE path = ?", (path,)).fetchone() is None:
            raise SampleNotFound(f"no scanned sample with path {path!r}")
        if label is not None:
            known = known if known is not None else {r[0] for r in conn.execute("SELECT name FROM classes")}
            if label not in known:
                raise DecisionError(f"unknown class {label!r}")


def replayed(conn: sqlite3.Connection, request_id: str | None, kind: str,
             reviewer: str | None = None) -> list[int] | None:
    """The decision ids a stored request wrote (``[]``: none), or None for a new request.

    A request id answers only a retry of its own request: the same kind and, when given, the
    same reviewer (:func:`check_same_decisions` compares what a decision request wrote).

    Raises
    ------
    RequestIdReused
        ``request_id`` was stored for another kind of request or another reviewer.
    """
    if request_id is None:
        return None
    row = conn.execute("SELECT kind, batch_id, reviewer FROM decision_requests WHERE request_id = ?",
                       (request_id,)).fetchone()
    if row is None:
        return None
    if row[0] != kind:
        raise RequestIdReused(f"request id {request_id!r} was already used for a{'n' if row[0] == 'undo' else ''} "
                              f"{row[0]} request")
    if reviewer is not None and row[2] != reviewer:
        raise RequestIdReused(f"request id {request_id!r} was already used by another reviewer")
    if row[1] is None:
        return []
    return [r[0] for r in conn.execute(
        "SELECT decision_id FROM decision_links WHERE batch_id = ? ORDER BY decision_id", (row[1],))]


def check_same_decisions(conn: sqlite3.Connection, request_id: str, ids: list[int],
                         items: Sequence[tuple[str, str, str | None]], note: str) -> None:
    """Raise :class:`RequestIdReused` unless the decisions rows ``ids`` are exactly ``items`` with ``note``.

    ``items`` are resolved ``(path, action, label)`` triples, as stored (a relabel to the given
    class is an accept), so a retry compares equal and any other request does not.
    """
    rows = conn.execute(f"SELECT path, action, label, note FROM decisions WHERE decision_id IN "
                        f"({', '.join('?' * len(ids))})", ids).fetchall() if ids else []
    same = (sorted((r[0], r[1], r[2] or "") for r in rows) == sorted((p, a, lab or "") for p, a, lab in items)
            and all(r[3] == note for r in rows))
    if not same:
        raise RequestIdReused(f"request id {request_id!r} was already used for other decisions; "
                              "send a new request id with a new request")


def _remember(conn, request_id: str | None, kind: str, ids: list[int], reviewer: str, now: str) -> None:
    if request_id is not None:
        conn.execute("INSERT INTO decision_requests VALUES (?, ?, ?, ?, ?)",
                     (request_id, kind, ids[0] if ids else None, reviewer, now))


def _insert(conn, path: str, action: str, label: str | None, note: str, reviewer: str, now: str) -> int:
    cursor = conn.execute(
        "INSERT INTO decisions (path, action, label, note, reviewer, decided_at) VALUES (?, ?, ?, ?, ?, ?)",
        (path, action, label, note, reviewer, now))
    return int(cursor.lastrowid)


def record_decisions_in(conn: sqlite3.Connection, items: Sequence[tuple[str, str, str | None]], *,
                        note: str = "", reviewer: str = "", request_id: str | None = None) -> list[int]:
    """:func:`record_decisions` inside a transaction the caller holds."""
    replay = replayed(conn, request_id, "decide", reviewer)
    if replay is not None:
        check_same_decisions(conn, request_id, replay, items, note)
        return replay
    for _, action, label in items:
        check_stored(action, label)
    _check_items(conn, items)
    now = utc_now()
    ids = [_insert(conn, path, action, label, note, reviewer, now) for path, action, label in items]
    conn.executemany("INSERT INTO decision_links (decision_id, batch_id, undoes) VALUES (?, ?, NULL)",
                     [(i, ids[0]) for i in ids])
    _remember(conn, request_id, "decide", ids, reviewer, now)
    return ids


def record_decisions(conn: sqlite3.Connection, items: Sequence[tuple[str, str, str | None]], *,
                     note: str = "", reviewer: str = "", request_id: str | None = None) -> list[int]:
    """Append decisions ``(path, action, label)`` in one committed transaction.

    All rows or none are written; they share one ``decision_links.batch_id`` so that
    :func:`undo_last_decision` withdraws them together.

    Parameters
    ----------
    request_id : str, optional
        The client's id of this request. When a request with this id was stored before,
        nothing is written and the ``decision_id`` s it wrote are returned.

    Returns
    -------
    list of int
        The new ``decision_id`` s in the order of ``items``.

    Raises
    ------
    SampleNotFound, DecisionError
        As :func:`record_decision` (nothing is written).
    """
    if not items:
        return []
    with transaction(conn):
        return record_decisions_in(conn, items, note=note, reviewer=reviewer, request_id=request_id)


# A decisions row is "live" when it is not an undo row and no undo row withdraws it.
_LIVE = """
    NOT EXISTS (SELECT 1 FROM decision_links AS lk WHERE lk.decision_id = {d}.decision_id AND lk.undoes IS NOT NULL)
    AND NOT EXISTS (SELECT 1 FROM decision_links AS un WHERE un.undoes = {d}.decision_id)
"""

#: Undoable rows of a reviewer: live, on an image of the scan (a decision on an image a re-scan left
#: out stays in force, unseen, until the image is found again), and not superseded by a later live
#: row of the same path.
_UNDOABLE = f"""
    SELECT d.decision_id, d.path, COALESCE(l.batch_id, d.decision_id) AS batch_id
    FROM decisions AS d LEFT JOIN decision_links AS l USING (decision_id)
    WHERE d.reviewer = :reviewer AND d.decision_id >= :min_id AND {_LIVE.format(d="d")}
      AND d.path IN (SELECT path FROM samples)
      AND NOT EXISTS (
          SELECT 1 FROM decisions AS e
          WHERE e.path = d.path AND e.decision_id > d.decision_id AND {_LIVE.format(d="e")})
"""


def _last_batch(conn: sqlite3.Connection, reviewer: str) -> list[sqlite3.Row]:
    last = conn.execute(_UNDOABLE + " ORDER BY d.decision_id DESC LIMIT 1",
                        {"reviewer": reviewer, "min_id": 0}).fetchone()
    if last is None:
        return []
    return conn.execute(f"SELECT * FROM ({_UNDOABLE}) WHERE batch_id = :batch ORDER BY decision_id",
                        {"reviewer": reviewer, "min_id": last["batch_id"], "batch": last["batch_id"]}).fetchall()


def _restore(conn, row: sqlite3.Row, reviewer: str, now: str) -> int:
    """Append the row that re-instates what ``row``'s sample had before ``row``."""
    prev = conn.execute("SELECT action, label, note FROM decisions WHERE path = ? AND decision_id < ? "
                        "ORDER BY decision_id DESC LIMIT 1", (row["path"], row["decision_id"])).fetchone()
    action, label, note = (prev[0], prev[1], prev[2]) if prev else (Action.CLEAR.value, None, "")
    return _insert(conn, row["path"], action, label, note, reviewer, now)


def undo_last_decision_in(conn: sqlite3.Connection, reviewer: str, *, request_id: str | None = None) -> list[int]:
    """:func:`undo_last_decision` inside a transaction the caller holds; returns the new ids."""
    replay = replayed(conn, request_id, "undo", reviewer)
    if replay is not None:
        return replay
    now = utc_now()
    batch = _last_batch(conn, reviewer)
    ids = [_restore(conn, row, reviewer, now) for row in batch]
    conn.executemany("INSERT INTO decision_links (decision_id, batch_id, undoes) VALUES (?, ?, ?)",
                     [(i, ids[0], row["decision_id"]) for i, row in zip(ids, batch)])
    _remember(conn, request_id, "undo", ids, reviewer, now)
    return ids


def undo_last_decision(conn: sqlite3.Connection, reviewer: str, *,
                       request_id: str | None = None) -> list[dict[str, Any]]:
    """Withdraw ``reviewer``'s most recent decision (all of its batch) by appending rows.

    Only decisions on samples of the scan are undone: one on an image a re-scan left out is
    not visible to the reviewer, and stays in force for when the image is found again.

    Each withdrawn row ``r`` gets a new row that re-instates the state its sample had
    before ``r`` (a copy of the previous row of that path, or ``clear`` when there was
    none), linked to ``r`` through ``decision_links.undoes``. Nothing is updated or deleted,
    so repeated undos walk back through the reviewer's decisions, and a decision already
    replaced by a later one (of anyone) is not undone over it.

    Parameters
    ----------
    request_id : str, optional
        As for :func:`record_decisions`: a repeated undo request undoes nothing more.

    Returns
    -------
    list of dict
        The new rows (with ``undoes``), empty when there is nothing to undo.
    """
    with transaction(conn):
        ids = undo_last_decision_in(conn, reviewer, request_id=request_id)
    return [_row(conn, i) for i in ids]


def _row(conn: sqlite3.Connection, decision_id: int) -> dict[str, Any]:
    row = conn.execute("SELECT d.*, l.undoes FROM decisions AS d LEFT JOIN decision_links AS l USING (decision_id) "
                       "WHERE d.decision_id = ?", (decision_id,)).fetchone()
    return dict(row)


def recorded(conn: sqlite3.Connection, decision_ids: Sequence[int]) -> list[dict[str, Any]]:
    """What the API answers for written rows: ``[{sample_id, path, decision, undoes}]``.

    ``decision`` is the row as the decision in force (None for a ``clear`` row).
    """
    out = []
    for did in decision_ids:
        row = conn.execute(
            "SELECT s.sample_id, d.*, l.undoes FROM decisions AS d LEFT JOIN samples AS s USING (path) "
            "LEFT JOIN decision_links AS l USING (decision_id) WHERE d.decision_id = ?", (did,)).fetchone()
        decision = None if row["action"] == Action.CLEAR else {k: row[k] for k in DECISION_FIELDS}
        out.append({"sample_id": row["sample_id"], "path": row["path"], "decision": decision,
                    "undoes": row["undoes"]})
    return out


def decision_history(conn: sqlite3.Connection, path: str) -> list[dict[str, Any]]:
    """Every decisions row of ``path``, oldest first, with ``batch_id`` and ``undoes``."""
    rows = conn.execute(
        "SELECT d.*, COALESCE(l.batch_id, d.decision_id) AS batch_id, l.undoes "
        "FROM decisions AS d LEFT JOIN decision_links AS l USING (decision_id) "
        "WHERE d.path = ? ORDER BY d.decision_id", (path,))
    return [dict(row) for row in rows]


_FRAME_COLUMNS = ["sample_id", "path", "given_label", "suggested_label", "mislabel_score", "flagged",
                  "score_rank", "action", "label", "note", "reviewer", "decided_at"]


def count_decisions_in_force(conn: sqlite3.Connection) -> int:
    """How many paths have a decision in force (0 for a database the review never opened)."""
    if not has_table(conn, "decisions"):
        return 0
    return conn.execute(f"SELECT COUNT(*) FROM decisions AS d WHERE {in_force('d', 'd.path')}").fetchone()[0]


def orphaned_decisions(conn: sqlite3.Connection) -> pd.DataFrame:
    """Decisions in force on paths the last scan does not have (renamed, moved or removed images).

    Kept in the log (a later scan that finds the file again applies them), but no export
    applies them, so the overview and the export report name them.

    Returns
    -------
    pandas.DataFrame
        ``path, action, label, reviewer, decided_at``, sorted by path; empty for a database the
        review never opened.
    """
    columns = ["path", "action", "label", "reviewer", "decided_at"]
    if not has_table(conn, "decisions"):
        return pd.DataFrame(columns=columns)
    unscored = "AND d.path NOT IN (SELECT path FROM unscored)" if has_table(conn, "unscored") else ""
    return pd.read_sql_query(
        f"SELECT {', '.join('d.' + c for c in columns)} FROM decisions AS d WHERE {in_force('d', 'd.path')} "
        f"AND d.path NOT IN (SELECT path FROM samples) {unscored} ORDER BY d.path", conn)


def accepted_labels_since_changed(conn: sqlite3.Connection) -> pd.DataFrame:
    """Accept decisions in force whose accepted label is no longer the image's given label.

    An accept stores the given label it agreed with; when a later scan reads another given label
    for the image (an edited labels CSV), the decision still gives the accepted label, which now
    differs from the given one: the export applies it as a change of label, so the overview names
    these for a second look and the export report counts them. Scanned images and the readable
    images the scan did not score (whose decisions the export applies too) are both looked at.

    Returns
    -------
    pandas.DataFrame
        ``path, given_label, label, reviewer, decided_at``, sorted by path.
    """
    if not has_table(conn, "decisions"):
        return pd.DataFrame(columns=["path", "given_label", "label", "reviewer", "decided_at"])
    changed = (f"JOIN decisions AS d ON d.path = s.path AND {in_force('d', 's.path')} "
               f"WHERE d.action = '{Action.ACCEPT.value}' AND d.label != s.given_label")
    query = f"SELECT s.path, s.given_label, d.label, d.reviewer, d.decided_at FROM samples AS s {changed}"
    if has_table(conn, "unscored"):
        query += (f" UNION ALL SELECT s.path, s.given_label, d.label, d.reviewer, d.decided_at "
                  f"FROM unscored AS s {changed} AND s.readable = 1")
    return pd.read_sql_query(query + " ORDER BY 1", conn)


def samples_with_decisions(conn: sqlite3.Connection) -> pd.DataFrame:
    """All samples (in ``sample_id`` order) with their decision in force, as a DataFrame.

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
    return pd.DataFrame([tuple(r) for r in rows], columns=_FRAME_COLUMNS)


_UNSCORED_COLUMNS = ["path", "given_label", "reason", "readable", "action", "label", "note", "reviewer",
                     "decided_at"]


def unscored_with_decisions(conn: sqlite3.Connection) -> pd.DataFrame:
    """The images the scan did not score (by path) with the decision in force for each, as a DataFrame.

    An image decided in an earlier scan keeps its decision when a re-scan no longer scores it
    (its class became too small for the folds, its file no longer decodes).

    Parameters
    ----------
    conn : sqlite3.Connection
        The scan's database (read-only will do).

    Returns
    -------
    pandas.DataFrame
        Columns ``path, given_label, reason, readable, action, label, note, reviewer, decided_at``
        (the last five NULL for images without a decision in force; the decision is the one
        :func:`~labelaudit.review.schema.in_force` defines), ordered by path. Empty for a
        database written before the ``unscored`` table existed.
    """
    if not has_table(conn, "unscored"):
        return pd.DataFrame(columns=_UNSCORED_COLUMNS)
    rows = conn.execute(f"""
        SELECT u.path, u.given_label, u.reason, u.readable, d.action, d.label, d.note, d.reviewer, d.decided_at
        FROM unscored AS u LEFT JOIN decisions AS d ON {in_force("d", "u.path")} ORDER BY u.path
    """).fetchall()
    return pd.DataFrame([tuple(r) for r in rows], columns=_UNSCORED_COLUMNS)


def decision_log(conn: sqlite3.Connection, *, limit: int = 100, before_id: int | None = None) -> list[dict[str, Any]]:
    """Every decisions row (changed, cleared and undo rows too), newest first.

    Parameters
    ----------
    limit : int
        Rows at most.
    before_id : int, optional
        Only rows with a smaller ``decision_id`` (the paging cursor).
    """
    rows = conn.execute(
        "SELECT d.*, s.sample_id, l.undoes FROM decisions AS d LEFT JOIN samples AS s USING (path) "
        "LEFT JOIN decision_links AS l USING (decision_id) "
        "WHERE (:before IS NULL OR d.decision_id < :before) ORDER BY d.decision_id DESC LIMIT :limit",
        {"before": before_id, "limit": limit}).fetchall()
    return [dict(r) for r in rows]
