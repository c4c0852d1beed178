"""Short-lived named sets of samples: a box drawn on the map, opened in the grid by its id.

A selection is stored in the scan database (``selections``, ``selection_info``) so that the
grid pages through it with the same keyset queries as any filter; selections older than
:data:`MAX_AGE_HOURS` are removed when a new one is made.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from labelaudit.errors import SampleNotFound
from labelaudit.scandir.database import utc_now

__all__ = ["MAX_AGE_HOURS", "MAX_SELECTION", "create_selection_in", "selection_size"]

MAX_AGE_HOURS = 24
#: Samples in one selection at most (the whole of a large scan is never needed in one grid).
MAX_SELECTION = 200_000


def _prune(conn: sqlite3.Connection) -> None:
    cutoff = (datetime.now(timezone.utc) - timedelta(hours=MAX_AGE_HOURS)).isoformat(timespec="seconds")
    old = [r[0] for r in conn.execute("SELECT selection_id FROM selection_info WHERE created_at < ?", (cutoff,))]
    for sid in old:
        conn.execute("DELETE FROM selections WHERE selection_id = ?", (sid,))
        conn.execute("DELETE FROM selection_info WHERE selection_id = ?", (sid,))


def create_selection_in(conn: sqlite3.Connection, sample_ids: Sequence[int]) -> tuple[str, int]:
    """Store a selection inside the caller's transaction; return ``(selection id, size)``.

    Raises
    ------
    SampleNotFound
        An id that is no scanned sample.
    """
    ids = sorted(set(int(i) for i in sample_ids))
    n_samples = conn.execute("SELECT MAX(sample_id) FROM samples").fetchone()[0]
    if ids and (ids[0] < 0 or n_samples is None or ids[-1] > n_samples):
        raise SampleNotFound(f"no sample {ids[0] if ids[0] < 0 else ids[-1]}")
    _prune(conn)
    selection_id = secrets.token_urlsafe(9)
    conn.executemany("INSERT INTO selections VALUES (?, ?)", ((selection_id, i) for i in ids))
    conn.execute("INSERT INTO selection_info VALUES (?, ?, ?)", (selection_id, len(ids), utc_now()))
    return selection_id, len(ids)


def selection_size(conn: sqlite3.Connection, selection_id: str) -> int | None:
    """Number of samples in a selection, or None when there is no such (or an expired) one."""
    row = conn.execute("SELECT n FROM selection_info WHERE selection_id = ?", (selection_id,)).fetchone()
    return None if row is None else int(row[0])
