"""Free tags on samples: appended as ``add`` / ``remove`` events, never updated or deleted.

A tag is on a sample when the latest event of that ``(path, tag)`` is an ``add``
(:data:`labelaudit.review.schema.CURRENT_TAGS`). Tags are short texts chosen by the
reviewers (``blurry``, ``two objects``, ``ask Ada``); they are shown, filtered on and
exported nowhere else.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Sequence

from labelaudit.errors import DecisionError, SampleNotFound
from labelaudit.review.schema import CURRENT_TAGS, tag_in_force
from labelaudit.scandir.database import utc_now

__all__ = ["MAX_TAG_LENGTH", "clean_tag", "clean_tags", "change_tags_in", "tags_of", "tags_by_path", "all_tags"]

MAX_TAG_LENGTH = 40
_SPACE = re.compile(r"\s+")


def clean_tag(tag: str) -> str:
    """``tag`` trimmed, inner white space folded to one space, lower case.

    Raises
    ------
    DecisionError
        Empty, longer than :data:`MAX_TAG_LENGTH`, or with a control character or comma.
    """
    text = _SPACE.sub(" ", str(tag)).strip().lower()
    if not text:
        raise DecisionError("a tag cannot be empty")
    if len(text) > MAX_TAG_LENGTH:
        raise DecisionError(f"a tag has at most {MAX_TAG_LENGTH} characters")
    if "," in text or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise DecisionError("a tag cannot contain a comma or a control character")
    return text


def clean_tags(tags: Iterable[str]) -> list[str]:
    """:func:`clean_tag` of each, without repeats, in the order given."""
    return list(dict.fromkeys(clean_tag(t) for t in tags))


def tags_of(conn: sqlite3.Connection, path: str) -> list[str]:
    """The tags on one sample, sorted."""
    rows = conn.execute(f"SELECT tag FROM ({CURRENT_TAGS}) WHERE path = ? ORDER BY tag", (path,))
    return [r[0] for r in rows]


def tags_by_path(conn: sqlite3.Connection, paths: Sequence[str]) -> dict[str, list[str]]:
    """``{path: sorted tags}`` of the given samples (paths without tags are left out)."""
    out: dict[str, list[str]] = {}
    unique = list(dict.fromkeys(paths))
    for start in range(0, len(unique), 500):
        chunk = unique[start:start + 500]
        sql = (f"SELECT t.path, t.tag FROM tag_events AS t WHERE t.path IN ({','.join('?' * len(chunk))}) "
               f"AND {tag_in_force('t', 't.tag')} ORDER BY t.path, t.tag")
        for path, tag in conn.execute(sql, chunk):
            out.setdefault(path, []).append(tag)
    return out


def all_tags(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    """Every tag in use with its number of samples, most used first."""
    rows = conn.execute(f"SELECT tag, COUNT(*) FROM ({CURRENT_TAGS}) GROUP BY tag ORDER BY 2 DESC, 1")
    return [(r[0], r[1]) for r in rows]


def change_tags_in(conn: sqlite3.Connection, path: str, *, add: Sequence[str] = (), remove: Sequence[str] = (),
                   reviewer: str = "") -> list[str]:
    """Add and remove tags of one sample inside the caller's transaction; return its tags.

    Only real changes are appended (adding a tag already on, removing one not on, writes
    nothing).

    Raises
    ------
    SampleNotFound
        ``path`` is no scanned sample.
    DecisionError
        A tag :func:`clean_tag` refuses.
    """
    if conn.execute("SELECT 1 FROM samples WHERE path = ?", (path,)).fetchone() is None:
        raise SampleNotFound(f"no scanned sample with path {path!r}")
    add_, remove_ = clean_tags(add), clean_tags(remove)
    current = set(tags_of(conn, path))
    now = utc_now()
    events = [(path, t, "add", reviewer, now) for t in add_ if t not in current and t not in remove_]
    events += [(path, t, "remove", reviewer, now) for t in remove_ if t in current]
    conn.executemany("INSERT INTO tag_events (path, tag, op, reviewer, at) VALUES (?, ?, ?, ?, ?)", events)
    return tags_of(conn, path)
