"""The read queries the pages and the JSON API share (listing, one sample, statistics).

Listings page with a keyset on ``score_rank`` (or ``path``), so that page 2,000 of a
100,000-sample scan costs the same index probe as page 1. The decision in force comes from
:mod:`labelaudit.review.schema`; decisions are written by :class:`labelaudit.review.ReviewDatabase`.
"""

from __future__ import annotations

import heapq
import json
import sqlite3
import zlib
from dataclasses import dataclass
from typing import Any

from labelaudit.errors import InvalidCursor, SampleNotFound
import numpy as np
import pandas as pd

from labelaudit.review.actions import IN_FORCE_ACTIONS, UNRESOLVED_ACTIONS
from labelaudit.review.database import MAX_SQLITE_INT, StatsCache, valid_id
from labelaudit.review.decisions import (DECISION_FIELDS, accepted_labels_since_changed, decision_history,
                                        orphaned_decisions, unscored_with_decisions)
from labelaudit.review.schema import SAMPLES_WITH_DECISIONS, tag_in_force
from labelaudit.review.tags import tags_by_path

from .deps import Settings
from .schemas import SampleFilters

__all__ = [
    "Page", "list_samples", "count_samples", "get_sample", "get_samples", "neighbours", "history",
    "progress", "class_counts", "pair_counts", "score_histogram", "cursor_of", "unscored", "with_tags",
    "reviewers", "per_class", "with_votes", "annotators", "annotator", "annotator_confusion",
]

MAX_LIMIT = 500


@dataclass
class Page:
    items: list[dict[str, Any]]
    next_after: str | None
    prev_before: str | None
    total: int | None = None


# ---------------------------------------------------------------------------- rows


def image_url(sample_id: int, path: str, *, thumb: bool = False) -> str:
    """The URL of a sample's image (or thumbnail), versioned by its path so a browser never shows a cached
    image of another file after a re-scan renumbers the samples."""
    version = f"{zlib.crc32(path.encode()):08x}"  # a re-scan that moves ids changes the URL
    return f"/api/samples/{sample_id}/{'thumbnail' if thumb else 'image'}?v={version}"


def _decision(row: sqlite3.Row) -> dict[str, Any] | None:
    if row["d_id"] is None:
        return None
    return {"decision_id": row["d_id"], "action": row["d_action"], "label": row["d_label"],
            "note": row["d_note"], "reviewer": row["d_reviewer"], "decided_at": row["d_decided_at"]}


def _item(row: sqlite3.Row) -> dict[str, Any]:
    path = row["path"]
    top = json.loads(row["top_classes"])
    return {
        "sample_id": row["sample_id"],
        "path": path,
        "name": path.rsplit("/", 1)[-1],
        "given_label": row["given_label"],
        "suggested_label": row["suggested_label"],
        "mislabel_score": row["mislabel_score"],
        "flagged": bool(row["flagged"]),
        "score_rank": row["score_rank"],
        "top_classes": [{"label": c, "prob": p} for c, p in top],
        "signals": json.loads(row["signals"]),
        "decision": _decision(row),
        "tags": [],
        "votes": [],
        "image_url": image_url(row["sample_id"], path),
        "thumb_url": image_url(row["sample_id"], path, thumb=True),
    }


def with_tags(conn: sqlite3.Connection, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``items`` with each one's ``tags`` filled in (one query for all)."""
    tags = tags_by_path(conn, [it["path"] for it in items])
    for it in items:
        it["tags"] = tags.get(it["path"], [])
    return items


def with_votes(conn: sqlite3.Connection, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``items`` with each one's annotator ``votes`` filled in (one query; empty without annotations).

    Each vote is ``{"annotator", "label", "agrees"}``, ``agrees`` meaning the label is the consensus
    (the scan's given label); in annotator order of the CSV.
    """
    paths = [it["path"] for it in items]
    found: dict[str, list[tuple[int, str, str]]] = {}
    for start in range(0, len(paths), 500):
        chunk = paths[start:start + 500]
        marks = ",".join("?" * len(chunk))
        # one probe of the primary key per path; CSV order (rowid) restored here, not by an SQL sort
        for path, order, name, label in conn.execute(
                f"SELECT path, rowid, annotator, label FROM votes WHERE path IN ({marks})", chunk):
            found.setdefault(path, []).append((order, name, label))
    found = {p: [{"annotator": n, "label": lab} for _, n, lab in sorted(rows)] for p, rows in found.items()}
    for it in items:
        it["votes"] = [{**v, "agrees": v["label"] == it["given_label"]} for v in found.get(it["path"], [])]
    return items


def cursor_of(item: dict[str, Any], sort: str | None) -> str:
    return item["path"] if sort == "path" else str(item["score_rank"])


# ---------------------------------------------------------------------------- listing


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True)
class _Where:
    """The SQL of a :class:`SampleFilters`, declared by the table each clause reads.

    ``sample`` clauses read the sample row (alias ``s``) and what hangs off it (votes, tags,
    selections); ``decision`` clauses read its decision in force (alias ``d``) and are false
    for an undecided sample; ``reviewed`` is the filter on having a decision at all.
    """

    sample: list[str]
    decision: list[str]
    reviewed: str | None
    params: dict[str, Any]

    def clauses(self) -> list[str]:
        """Every clause, for a query over ``samples`` LEFT JOIN its decisions."""
        having = {"yes": ["d.decision_id IS NOT NULL"], "no": ["d.decision_id IS NULL"]}.get(self.reviewed or "", [])
        return self.sample + self.decision + having


def _where(f: SampleFilters) -> _Where:
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if f.given is not None:
        clauses.append("s.given_label = :given")
        params["given"] = f.given
    if f.suggested is not None:
        clauses.append("s.suggested_label = :suggested")
        params["suggested"] = f.suggested
    if f.flagged in ("0", "1"):
        clauses.append("s.flagged = :flagged")
        params["flagged"] = int(f.flagged)
    if f.score_min is not None:
        clauses.append("s.mislabel_score >= :score_min")
        params["score_min"] = f.score_min
    if f.score_max is not None:
        clauses.append("s.mislabel_score <= :score_max")
        params["score_max"] = f.score_max
    if f.q:
        clauses.append("s.path LIKE :q ESCAPE '\\'")
        params["q"] = _like(f.q)
    if f.tag:
        clauses.append(_TAGGED)
        params["tag"] = f.tag.strip().lower()
    if f.selection:
        clauses.append("s.sample_id IN (SELECT sel.sample_id FROM selections AS sel WHERE sel.selection_id = :selection)")
        params["selection"] = f.selection
    clauses += _vote_clauses(f, params)
    on_decision: list[str] = []
    if f.reviewer:
        on_decision.append("d.reviewer = :reviewer")
        params["reviewer"] = f.reviewer
    if f.decision == "changed":
        on_decision.append("d.label IS NOT NULL AND d.label != s.given_label")
    elif f.decision is not None:
        on_decision.append("d.action = :decision")
        params["decision"] = f.decision
    return _Where(sample=clauses, decision=on_decision, reviewed=f.reviewed, params=params)


#: Some annotator's vote is not the consensus (the given label): the annotators disagree.
_DISPUTED = "EXISTS (SELECT 1 FROM votes AS v WHERE v.path = s.path AND v.label != s.given_label)"


def _vote_clauses(f: SampleFilters, params: dict[str, Any]) -> list[str]:
    """Filters on the annotators' votes: disputed or not, labelled by an annotator, their vote."""
    clauses = []
    if f.disagree in ("1", "0"):
        clauses.append(_DISPUTED if f.disagree == "1" else f"NOT {_DISPUTED}")
    if f.annotator:
        vote = "v.path = s.path AND v.annotator = :annotator"
        if f.outvoted in ("1", "0"):
            vote += " AND v.label != s.given_label" if f.outvoted == "1" else " AND v.label = s.given_label"
        if f.vote:
            vote += " AND v.label = :vote"
            params["vote"] = f.vote
        clauses.append(f"EXISTS (SELECT 1 FROM votes AS v WHERE {vote})")
        params["annotator"] = f.annotator
    return clauses


#: The sample carries tag ``:tag`` (its latest event for that tag is an 'add').
_TAGGED = f"EXISTS (SELECT 1 FROM tag_events AS t WHERE t.path = s.path AND t.tag = :tag AND {tag_in_force('t', ':tag')})"

_KEYS = {  # sort -> (key column, ascending)
    "score": ("s.score_rank", True),
    "score_asc": ("s.score_rank", False),
    "path": ("s.path", True),
}


def _run(conn, clauses, params, sort, *, after, before, limit) -> list[sqlite3.Row]:
    column, ascending = _KEYS[sort]
    clauses = list(clauses)
    params = dict(params)
    reverse = before is not None
    if after is not None:
        clauses.append(f"{column} {'>' if ascending else '<'} :cursor")
        params["cursor"] = after
    elif before is not None:
        clauses.append(f"{column} {'<' if ascending else '>'} :cursor")
        params["cursor"] = before
    direction = "ASC" if ascending != reverse else "DESC"
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = f"{SAMPLES_WITH_DECISIONS} {where} ORDER BY {column} {direction} LIMIT :limit"
    params["limit"] = limit
    return conn.execute(sql, params).fetchall()


def _fetch(conn, f: SampleFilters, *, after, before, limit) -> list[sqlite3.Row]:
    """Up to ``limit`` rows in display order, after/before a cursor."""
    sort = f.sort or "score"
    where = _where(f)
    clauses, params = where.clauses(), where.params
    if sort != "path" and f.flagged not in ("0", "1"):
        # No index orders all samples by rank, but (flagged, score_rank) orders each half:
        # read both halves along it and merge.
        parts = [
            _run(conn, clauses + ["s.flagged = :fl"], {**params, "fl": fl}, sort,
                 after=after, before=before, limit=limit)
            for fl in (1, 0)
        ]
        descending = (sort == "score_asc") != (before is not None)
        key = (lambda r: -r["score_rank"]) if descending else (lambda r: r["score_rank"])
        rows = list(heapq.merge(*parts, key=key))[:limit]
    else:
        rows = _run(conn, clauses, params, sort, after=after, before=before, limit=limit)
    if before is not None:
        rows.reverse()
    return rows


def _parse_cursor(value: str | None, sort: str) -> Any:
    """The key a cursor stands for; :class:`InvalidCursor` when it cannot be one."""
    if value is None or value == "":
        return None
    if sort == "path":
        return value
    try:
        rank = int(value)
    except ValueError:
        raise InvalidCursor(f"invalid cursor: expected a score rank (an integer) with sort={sort}") from None
    if abs(rank) > MAX_SQLITE_INT:
        raise InvalidCursor("invalid cursor: out of range")
    return rank


def list_samples(
    conn: sqlite3.Connection,
    f: SampleFilters,
    *,
    after: str | None = None,
    before: str | None = None,
    limit: int = 50,
    with_total: bool = False,
) -> Page:
    """One page of samples matching ``f`` in its order, after (or before) a cursor.

    Raises
    ------
    InvalidCursor
        ``after`` / ``before`` is no key of the order ``f.sort``.
    """
    sort = f.sort or "score"
    limit = max(1, min(int(limit), MAX_LIMIT))
    after_v, before_v = _parse_cursor(after, sort), _parse_cursor(before, sort)
    if after_v is not None:
        before_v = None
    rows = _fetch(conn, f, after=after_v, before=before_v, limit=limit + 1)
    if before_v is not None:
        has_before, rows = len(rows) > limit, rows[-limit:]
        has_after = True
    else:
        has_after, rows = len(rows) > limit, rows[:limit]
        has_before = after_v is not None and bool(rows) and bool(
            _fetch(conn, f, after=None, before=_parse_cursor(cursor_of(_item(rows[0]), sort), sort), limit=1))
    items = with_votes(conn, with_tags(conn, [_item(r) for r in rows]))
    return Page(
        items=items,
        next_after=cursor_of(items[-1], sort) if items and has_after else None,
        prev_before=cursor_of(items[0], sort) if items and has_before else None,
        total=count_samples(conn, f) if with_total else None,
    )


def count_samples(conn: sqlite3.Connection, f: SampleFilters) -> int:
    """Number of samples matching ``f``: the rows :func:`list_samples` pages through.

    Decision filters count through ``current_decisions`` (one pass over the decisions)
    rather than probing the history of every sample.
    """
    where = _where(f)
    if where.reviewed == "no" and where.decision:
        return 0  # a filter on the decision in force, and no decision
    n_all = _count(conn, "samples AS s", where.sample, where.params)
    if where.reviewed is None and not where.decision:
        return n_all
    decided = where.sample + ([] if where.reviewed == "no" else where.decision)
    n_decided = _count(conn, "current_decisions AS d CROSS JOIN samples AS s ON s.path = d.path", decided, where.params)
    return n_all - n_decided if where.reviewed == "no" else n_decided


def _count(conn: sqlite3.Connection, source: str, clauses: list[str], params: dict[str, Any]) -> int:
    """``COUNT(*)`` of ``source`` under ``clauses``; a CROSS JOIN source is one pass over its first table."""
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return conn.execute(f"SELECT COUNT(*) FROM {source} {where}", params).fetchone()[0]


def get_sample(conn: sqlite3.Connection, sample_id: int) -> dict[str, Any]:
    """One sample with its decision in force; :class:`SampleNotFound` for an unknown id."""
    row = None
    if valid_id(sample_id):
        row = conn.execute(f"{SAMPLES_WITH_DECISIONS} WHERE s.sample_id = ?", (sample_id,)).fetchone()
    if row is None:
        raise SampleNotFound(f"no sample {sample_id}")
    return with_votes(conn, with_tags(conn, [_item(row)]))[0]


def get_samples(conn: sqlite3.Connection, sample_ids: list[int]) -> dict[int, dict[str, Any]]:
    """``{sample_id: item}`` (as :func:`get_sample`) of the ids that are samples; unknown ids are left out."""
    out: dict[int, dict[str, Any]] = {}
    ids = list(dict.fromkeys(int(i) for i in sample_ids if valid_id(int(i))))
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(f"{SAMPLES_WITH_DECISIONS} WHERE s.sample_id IN ({marks})", chunk):
            out[row["sample_id"]] = _item(row)
    return out


def neighbours(conn: sqlite3.Connection, settings: Settings, sample_id: int, k: int = 12):
    """``[(sample, cosine similarity)]`` nearest in feature space, or None without embeddings."""
    if not settings.embeddings.available:
        return None
    pairs = settings.embeddings.nearest(sample_id, k)
    found = get_samples(conn, [i for i, _ in pairs])
    return [(found[i], sim) for i, sim in pairs if i in found]


def history(conn: sqlite3.Connection, path: str) -> list[dict[str, Any]]:
    """Every decision row of ``path``, oldest first, with the API's decision fields."""
    return [{k: r[k] for k in DECISION_FIELDS} for r in decision_history(conn, path)]


# ---------------------------------------------------------------------------- statistics

def progress(conn: sqlite3.Connection, cache: StatsCache) -> dict[str, Any]:
    """Review progress: samples, flagged, reviewed, changed, decisions in force by action."""
    def compute():
        n, n_flagged = conn.execute("SELECT COUNT(*), COALESCE(SUM(flagged), 0) FROM samples").fetchone()
        rows = conn.execute(
            "SELECT cd.action, s.flagged, (cd.label IS NOT NULL AND cd.label != s.given_label) AS changed, "
            "COUNT(*) AS n FROM current_decisions AS cd CROSS JOIN samples AS s ON s.path = cd.path GROUP BY 1, 2, 3"
        ).fetchall()
        by_action = {a: 0 for a in IN_FORCE_ACTIONS}
        n_reviewed = n_reviewed_flagged = n_changed = n_unsure = 0
        for r in rows:
            by_action[r["action"]] = by_action.get(r["action"], 0) + r["n"]
            n_reviewed += r["n"]
            n_reviewed_flagged += r["n"] if r["flagged"] else 0
            n_changed += r["n"] if r["changed"] else 0
            n_unsure += r["n"] if r["action"] in UNRESOLVED_ACTIONS else 0
        return {"n_samples": n, "n_flagged": n_flagged, "n_reviewed": n_reviewed,
                "n_reviewed_flagged": n_reviewed_flagged, "n_changed": n_changed, "n_unsure": n_unsure,
                "by_action": by_action}

    return cache.get("progress", conn, compute)


def class_counts(conn: sqlite3.Connection, cache: StatsCache) -> list[dict[str, Any]]:
    """Per class: samples, flagged, suggested, relabeled from / to, unusable."""
    def compute():
        out = {r["name"]: {"name": r["name"], "n_samples": r["n_samples"], "n_flagged": 0, "n_suggested": 0,
                           "n_relabeled_from": 0, "n_relabeled_to": 0, "n_unusable": 0, "n_reviewed": 0}
               for r in conn.execute("SELECT name, n_samples FROM classes ORDER BY class_id")}
        for r in conn.execute("SELECT given_label, suggested_label, COUNT(*) AS n FROM samples "
                              "WHERE flagged = 1 GROUP BY 1, 2"):
            if r["given_label"] in out:
                out[r["given_label"]]["n_flagged"] += r["n"]
            if r["suggested_label"] in out and r["suggested_label"] != r["given_label"]:
                out[r["suggested_label"]]["n_suggested"] += r["n"]
        for r in conn.execute(
            "SELECT s.given_label, cd.action, cd.label, s.flagged, COUNT(*) AS n FROM current_decisions AS cd "
            "CROSS JOIN samples AS s ON s.path = cd.path GROUP BY 1, 2, 3, 4"
        ):
            given = out.get(r["given_label"])
            if given and r["flagged"]:
                given["n_reviewed"] += r["n"]
            if r["action"] == "unusable":
                if given:
                    given["n_unusable"] += r["n"]
            elif r["label"] is not None and r["label"] != r["given_label"]:
                if given:
                    given["n_relabeled_from"] += r["n"]
                if r["label"] in out:
                    out[r["label"]]["n_relabeled_to"] += r["n"]
        return list(out.values())

    return cache.get("classes", conn, compute)


def pair_counts(conn: sqlite3.Connection, cache: StatsCache, limit: int | None = None) -> list[dict[str, Any]]:
    """Flagged (given -> suggested) pairs with a different suggestion, most frequent first."""
    def compute():
        reviewed: dict[tuple[str, str], int] = {}
        for r in conn.execute(
            "SELECT s.given_label, s.suggested_label, COUNT(*) AS n FROM current_decisions AS cd "
            "CROSS JOIN samples AS s ON s.path = cd.path WHERE s.flagged = 1 GROUP BY 1, 2"
        ):
            reviewed[(r[0], r[1])] = r[2]
        rows = conn.execute(
            "SELECT given_label, suggested_label, COUNT(*) AS n FROM samples WHERE flagged = 1 "
            "AND given_label != suggested_label GROUP BY 1, 2 ORDER BY n DESC, 1, 2"
        ).fetchall()
        return [{"given": r[0], "suggested": r[1], "n": r[2], "n_reviewed": reviewed.get((r[0], r[1]), 0)}
                for r in rows]

    pairs = cache.get("pairs", conn, compute)
    return pairs[:limit] if limit else pairs


def score_histogram(conn: sqlite3.Connection, cache: StatsCache, bins: int = 40) -> list[dict[str, Any]]:
    """``bins`` equal bins of ``mislabel_score`` in [0, 1], flagged and unflagged counts."""
    def compute():
        out = [{"lo": i / bins, "hi": (i + 1) / bins, "n_flagged": 0, "n_unflagged": 0} for i in range(bins)]
        for b, flagged, n in conn.execute(
            "SELECT MIN(MAX(CAST(mislabel_score * :bins AS INTEGER), 0), :bins - 1), flagged, COUNT(*) "
            "FROM samples GROUP BY 1, 2", {"bins": bins}
        ):
            out[b]["n_flagged" if flagged else "n_unflagged"] += n
        return out

    return cache.get(f"hist{bins}", conn, compute)


# ---------------------------------------------------------------------------- unscored


def unscored(conn: sqlite3.Connection, cache: StatsCache) -> dict[str, Any]:
    """Images of the input the scan did not score: ``{"n", "by_reason", "n_decided", "by_decision", "items"}``.

    Each item carries the decision in force for it (``decision``, ``decision_label``, ``reviewer``,
    ``decided_at``; None when undecided), made in an earlier scan that scored it: the one the export
    applies to a readable image (:func:`labelaudit.review.unscored_with_decisions`); ``n_decided`` and
    ``by_decision`` count the readable ones. Empty for databases written before the
    scanner recorded them (no ``unscored`` table).
    """
    def compute():
        df = unscored_with_decisions(conn)
        df = _with_none(df)
        items = [{"path": r.path, "given_label": r.given_label, "reason": r.reason, "readable": bool(r.readable),
                  "decision": r.action, "decision_label": r.label, "reviewer": r.reviewer,
                  "decided_at": r.decided_at} for r in df.itertuples(index=False)]
        counts = df["reason"].value_counts()
        by_reason = sorted(({"reason": str(r), "n": int(n)} for r, n in counts.items()),
                           key=lambda d: (-d["n"], d["reason"]))
        # the export applies a decision to a readable image only (an undecodable one is left out anyway)
        decided = df.loc[df["readable"].astype(bool), "action"].dropna().value_counts()
        by_decision = [{"action": a, "n": int(decided[a])} for a in IN_FORCE_ACTIONS if a in decided.index]
        return {"n": len(items), "by_reason": by_reason, "n_decided": int(decided.sum()),
                "by_decision": by_decision, "items": items}

    return cache.get("unscored", conn, compute)


def _with_none(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with NaN/NA as None, for JSON."""
    return df.astype(object).where(df.notna(), None)


def accepted_changed(conn: sqlite3.Connection, cache: StatsCache) -> list[dict[str, Any]]:
    """Accepted labels that are no longer the given label (:func:`labelaudit.review.accepted_labels_since_changed`)."""
    return cache.get("accepted_changed", conn, lambda: _with_none(accepted_labels_since_changed(conn)).to_dict("records"))


def orphaned(conn: sqlite3.Connection, cache: StatsCache) -> list[dict[str, Any]]:
    """Decisions in force on images this scan does not have (:func:`labelaudit.review.orphaned_decisions`)."""
    def compute():
        df = orphaned_decisions(conn)
        return _with_none(df).to_dict("records")

    return cache.get("orphaned", conn, compute)


# ---------------------------------------------------------------------------- reviewers, per class


def reviewers(conn: sqlite3.Connection, cache: StatsCache) -> list[dict[str, Any]]:
    """Per reviewer name: decisions in force (and how many of them unsure), rows written, last time."""
    def compute():
        out: dict[str, dict[str, Any]] = {}
        for name, n_rows, last in conn.execute(
                "SELECT reviewer, COUNT(*), MAX(decided_at) FROM decisions GROUP BY reviewer"):
            out[name] = {"reviewer": name, "n_rows": n_rows, "last": last, "n_in_force": 0, "n_unsure": 0,
                         "n_changed": 0}
        for name, action, changed, n in conn.execute(
                "SELECT cd.reviewer, cd.action, (cd.label IS NOT NULL AND cd.label != s.given_label), COUNT(*) "
                "FROM current_decisions AS cd CROSS JOIN samples AS s ON s.path = cd.path GROUP BY 1, 2, 3"):
            r = out[name]
            r["n_in_force"] += n
            r["n_unsure"] += n if action in UNRESOLVED_ACTIONS else 0
            r["n_changed"] += n if changed else 0
        return sorted(out.values(), key=lambda r: (-r["n_in_force"], r["reviewer"]))

    return cache.get("reviewers", conn, compute)


def _true_prior(matrix: np.ndarray, given_share: np.ndarray) -> np.ndarray:
    """P(true = j) such that ``matrix @ prior`` is closest to the given shares (non-negative, sums to 1)."""
    prior, *_ = np.linalg.lstsq(matrix, given_share, rcond=None)
    prior = np.clip(prior, 0, None)
    return prior / prior.sum() if prior.sum() > 0 else given_share


def per_class(order: list[str], counts: list[dict[str, Any]], pairs: list[dict[str, Any]],
              noise: dict | None) -> list[dict[str, Any]]:
    """Per class: estimated precision and recall of its labels, flagged, reviewed, worst confusion.

    With the noise matrix ``M[i][j] = P(given i | true j)``: recall of class ``i``'s labels
    is ``M[i][i]`` (the share of true ``i`` labelled ``i``), precision is
    ``M[i][i] P(true i) / P(given i)`` (the share of ``i`` labels that are right), with the
    true class shares solved from the given ones. The worst-confused class is the one whose
    label swaps with ``i`` carry the most estimated mass (without a matrix: the most flagged
    pairs either way).
    """
    by_name = {c["name"]: c for c in counts}
    flagged_pairs: dict[tuple[str, str], int] = {(p["given"], p["suggested"]): p["n"] for p in pairs}
    stats = _matrix_stats(noise, by_name)
    rows = []
    for name in order:
        c = by_name.get(name)
        if c is None:
            continue
        prec, rec, worst = stats.get(name, (None, None, None))
        if worst is None:
            worst = max((o for o in by_name if o != name), default=None,
                        key=lambda o: flagged_pairs.get((name, o), 0) + flagged_pairs.get((o, name), 0))
        rows.append({"name": name, "n_samples": c["n_samples"], "n_flagged": c["n_flagged"],
                     "n_reviewed": c["n_reviewed"], "precision": prec, "recall": rec, "worst": worst,
                     "n_worst": flagged_pairs.get((name, worst), 0) + flagged_pairs.get((worst, name), 0)
                     if worst else 0, "n_worst_from": flagged_pairs.get((name, worst), 0) if worst else 0})
    return rows


def _matrix_stats(noise: dict | None, by_name: dict[str, dict]) -> dict[str, tuple]:
    """``{class: (precision, recall, worst-confused class)}`` from the noise matrix."""
    if not noise:
        return {}
    names = noise["classes"]
    m = np.asarray(noise["matrix"], dtype=float)
    given = np.asarray([by_name.get(c, {}).get("n_samples", 0) for c in names], dtype=float)
    if given.sum() <= 0 or m.shape != (len(names), len(names)):
        return {}
    share = given / given.sum()
    prior = _true_prior(m, share)
    swaps = m * prior[None, :]  # P(given i, true j)
    out = {}
    for i, name in enumerate(names):
        prec = float(np.clip(m[i, i] * prior[i] / share[i], 0, 1)) if share[i] > 0 else None
        mass = swaps[i, :] + swaps[:, i]
        mass[i] = -1
        worst = names[int(np.argmax(mass))] if len(names) > 1 and mass.max() > 0 else None
        out[name] = (prec, float(m[i, i]), worst)
    return out


# ---------------------------------------------------------------------------- annotators


def annotators(conn: sqlite3.Connection, cache: StatsCache) -> list[dict[str, Any]]:
    """Per annotator (``annotators`` table, lowest estimated quality first): labels, agreement, quality,
    worst confusions, and images where their vote is not the consensus. Empty without annotations."""
    def compute():
        disputed = dict(conn.execute(
            "SELECT v.annotator, COUNT(*) FROM votes AS v CROSS JOIN samples AS s ON s.path = v.path "
            "WHERE v.label != s.given_label GROUP BY 1").fetchall())
        rows = conn.execute("SELECT annotator, n_labels, agreement, quality, most_confused FROM annotators "
                            "ORDER BY quality IS NULL, quality, annotator").fetchall()
        return [{"annotator": r[0], "n_labels": r[1], "agreement": r[2], "quality": r[3], "most_confused": r[4],
                 "n_disputed": disputed.get(r[0], 0)} for r in rows]

    return cache.get("annotators", conn, compute)


def annotator(conn: sqlite3.Connection, cache: StatsCache, name: str) -> dict[str, Any]:
    """One annotator's row of :func:`annotators`; :class:`SampleNotFound` for an unknown name."""
    for row in annotators(conn, cache):
        if row["annotator"] == name:
            return row
    raise SampleNotFound(f"no annotator {name[:64]!r}")


def annotator_confusion(conn: sqlite3.Connection, name: str) -> dict[tuple[str, str], int]:
    """``{(consensus label, their label): images}`` over the scanned images ``name`` labelled."""
    return {(c, v): n for c, v, n in conn.execute(
        "SELECT s.given_label, v.label, COUNT(*) FROM votes AS v CROSS JOIN samples AS s ON s.path = v.path "
        "WHERE v.annotator = ? GROUP BY 1, 2", (name,))}
