"""The JSON API through the ASGI test client on a tiny generated scan."""

from __future__ import annotations

import json
import re
import sqlite3

import pandas as pd
import pytest
from webapp_support import make_client
from fakescan import SIGNALS, XSS_CLASS

from labelaudit.review import samples_with_decisions
from labelaudit.scandir import database as storage
from labelaudit.webapp import queries
from labelaudit.webapp.schemas import SampleFilters


def all_items(client, **params):
    """Walk every page (small pages, to exercise the cursors)."""
    items, after = [], None
    for _ in range(1000):
        r = client.get("/api/samples", params={**params, "limit": 7, **({"after": after} if after else {})})
        assert r.status_code == 200, r.text
        page = r.json()
        items += page["items"]
        after = page["next_after"]
        if after is None:
            return items
    raise AssertionError("paging does not end")


def decide(client, sample_id, action, label=None, note=""):
    r = client.post("/api/decisions", json={"sample_id": sample_id, "action": action, "label": label, "note": note})
    assert r.status_code == 200, r.text
    return r.json()["recorded"][0]


# ---------------------------------------------------------------------------- listing


def test_list_defaults_to_all_samples_by_score(client, scan):
    items = all_items(client)
    assert len(items) == len(scan.scores)
    ranks = [it["score_rank"] for it in items]
    assert ranks == sorted(ranks) == list(range(1, len(items) + 1))
    scores = [it["mislabel_score"] for it in items]
    assert scores == sorted(scores, reverse=True)
    first = items[0]
    assert set(first) >= {"sample_id", "path", "given_label", "suggested_label", "mislabel_score", "flagged",
                          "top_classes", "signals", "decision", "image_url", "thumb_url"}
    assert first["top_classes"][0].keys() == {"label", "prob"}
    assert first["decision"] is None


@pytest.mark.parametrize("sort", ["score", "score_asc", "path"])
@pytest.mark.parametrize("flagged", [None, "1", "0"])
def test_keyset_paging_visits_each_sample_once(client, scan, sort, flagged):
    params = {"sort": sort, **({"flagged": flagged} if flagged else {})}
    items = all_items(client, **params)
    df = scan.scores if flagged is None else scan.scores[scan.scores.flagged == (flagged == "1")]
    assert sorted(it["path"] for it in items) == sorted(df.path)
    key = {"score": lambda it: it["score_rank"], "score_asc": lambda it: -it["score_rank"],
           "path": lambda it: it["path"]}[sort]
    assert items == sorted(items, key=key)


def test_paging_backwards(client):
    first = client.get("/api/samples", params={"limit": 10}).json()
    assert first["prev_before"] is None
    second = client.get("/api/samples", params={"limit": 10, "after": first["next_after"]}).json()
    assert second["prev_before"] == str(second["items"][0]["score_rank"])
    back = client.get("/api/samples", params={"limit": 10, "before": second["prev_before"]}).json()
    assert [i["sample_id"] for i in back["items"]] == [i["sample_id"] for i in first["items"]]
    assert back["prev_before"] is None and back["next_after"] == first["next_after"]


def test_filters(client, scan):
    df = scan.scores
    n_flagged = int(df.flagged.sum())
    assert len(all_items(client, flagged="1")) == n_flagged
    assert len(all_items(client, flagged="0")) == len(df) - n_flagged
    assert len(all_items(client, flagged="all")) == len(df)
    got = all_items(client, given=XSS_CLASS)
    assert got and all(it["given_label"] == XSS_CLASS for it in got)
    assert len(got) == int((df.given_label == XSS_CLASS).sum())
    got = all_items(client, suggested="square", given="circle")
    assert len(got) == int(((df.suggested_label == "square") & (df.given_label == "circle")).sum())
    got = all_items(client, score_min=0.5, score_max=0.9)
    assert len(got) == int(df.mislabel_score.between(0.5, 0.9).sum())
    r = client.get("/api/samples", params={"score_min": 2})
    assert r.status_code == 422
    # empty strings (HTML forms) mean "no filter"
    assert len(all_items(client, given="", score_min="", q="")) == len(df)


def test_search_by_file_name_is_literal(client):
    assert [it["name"] for it in all_items(client, q="naïve 猫")] == ["naïve 猫.png"]
    assert [it["name"] for it in all_items(client, q="quote'\"s")] == ["quote'\"s.png"]
    assert [it["name"] for it in all_items(client, q="%20?")] == ["#hash%20?.png"]
    assert [it["name"] for it in all_items(client, q="NAÏVE")] == []  # LIKE folds ASCII case only
    assert len(all_items(client, q="CIRCLE_0")) == len(all_items(client, q="circle_0")) > 0
    assert all_items(client, q="_%") == []  # wildcards are literal


def test_reviewed_and_decision_filters(client, scan):
    ids = [it["sample_id"] for it in all_items(client, flagged="1")]
    decide(client, ids[0], "accept")
    decide(client, ids[1], "suggested")
    decide(client, ids[2], "unusable")
    decide(client, ids[3], "relabel", label=XSS_CLASS)
    decide(client, ids[4], "accept")
    decide(client, ids[4], "clear")  # cleared again: unreviewed
    reviewed = all_items(client, flagged="1", reviewed="yes")
    assert sorted(i["sample_id"] for i in reviewed) == sorted(ids[:4])
    unreviewed = all_items(client, flagged="1", reviewed="no")
    assert len(unreviewed) == len(ids) - 4 and ids[4] in [i["sample_id"] for i in unreviewed]
    assert [i["sample_id"] for i in all_items(client, decision="unusable")] == [ids[2]]
    changed = {i["sample_id"] for i in all_items(client, decision="changed")}
    expected = set()
    for i in ids[:4]:
        it = client.get(f"/api/samples/{i}").json()
        if it["decision"]["label"] is not None and it["decision"]["label"] != it["given_label"]:
            expected.add(i)
    assert changed == expected and ids[3] in changed
    r = client.get("/api/samples", params={"flagged": "1", "reviewed": "no", "with_total": "true"})
    assert r.json()["total"] == len(ids) - 4


def test_invalid_cursor_and_limit(client):
    r = client.get("/api/samples", params={"after": "<script>x"})
    assert r.status_code == 422 and "cursor" in r.text and "<script>" not in r.text  # a 422 never echoes input
    r = client.get("/api/samples", params={"before": "9" * 30})
    assert r.status_code == 422 and "out of range" in r.text and "9" * 30 not in r.text
    assert client.get("/api/samples", params={"limit": 0}).status_code == 422
    assert client.get("/api/samples", params={"limit": 501}).status_code == 422
    assert client.get("/api/samples", params={"sort": "nope"}).status_code == 422


# ---------------------------------------------------------------------------- one sample


def test_get_sample_with_signals_history_and_neighbours(client, scan):
    sid = int(scan.flagged().iloc[0].sample_id)
    decide(client, sid, "accept", note="looks right")
    decide(client, sid, "suggested")
    r = client.get(f"/api/samples/{sid}", params={"k": 5})
    assert r.status_code == 200
    body = r.json()
    assert body["path"] == scan.scores.path[sid]
    assert set(body["signals"]) == set(SIGNALS)
    assert [h["action"] for h in body["history"]] == ["accept", "suggested"]
    assert body["history"][0]["note"] == "looks right"
    assert body["decision"]["action"] == "suggested"
    assert len(body["neighbours"]) == 5
    sims = [n["similarity"] for n in body["neighbours"]]
    assert sims == sorted(sims, reverse=True) and sid not in [n["sample"]["sample_id"] for n in body["neighbours"]]
    # neighbours share the true class in the generated embeddings
    true = scan.true_labels[sid]
    assert sum(scan.true_labels[n["sample"]["sample_id"]] == true for n in body["neighbours"]) >= 4


def test_unknown_sample_is_404(client):
    assert client.get("/api/samples/999999").status_code == 404
    assert client.post("/api/decisions", json={"sample_id": 999999, "action": "accept"}).status_code == 404


def test_no_embeddings_means_no_neighbours(tmp_path):
    from fakescan import make_scan

    scan = make_scan(tmp_path, embeddings=False)
    with make_client(scan.scan_dir) as c:
        assert c.get("/api/samples/0").json()["neighbours"] is None


# ---------------------------------------------------------------------------- decisions


def test_decision_actions_resolve_labels(client, scan):
    row = scan.flagged().iloc[0]
    sid = int(row.sample_id)
    d = decide(client, sid, "accept", note="n1")["decision"]
    assert (d["action"], d["label"], d["note"], d["reviewer"]) == ("accept", row.given_label, "n1", "tester")
    assert d["decided_at"].endswith("+00:00")
    d = decide(client, sid, "suggested")["decision"]
    assert (d["action"], d["label"]) == ("suggested", row.suggested_label)
    other = next(c for c in scan.classes if c not in (row.given_label, row.suggested_label))
    d = decide(client, sid, "relabel", label=other)["decision"]
    assert (d["action"], d["label"]) == ("relabel", other)
    # a relabel to the given / suggested class is stored as accept / suggested
    assert decide(client, sid, "relabel", label=row.given_label)["decision"]["action"] == "accept"
    assert decide(client, sid, "relabel", label=row.suggested_label)["decision"]["action"] == "suggested"
    d = decide(client, sid, "unusable")["decision"]
    assert (d["action"], d["label"]) == ("unusable", None)
    assert decide(client, sid, "clear")["decision"] is None
    history = client.get(f"/api/samples/{sid}").json()["history"]
    assert [h["action"] for h in history] == ["accept", "suggested", "relabel", "accept", "suggested", "unusable",
                                              "clear"]


def test_bad_decisions_are_refused(client):
    assert client.post("/api/decisions", json={"sample_id": 0, "action": "relabel", "label": "nope"}).status_code == 422
    assert client.post("/api/decisions", json={"sample_id": 0, "action": "relabel"}).status_code == 422
    assert client.post("/api/decisions", json={"sample_id": 0, "action": "delete"}).status_code == 422
    assert client.post("/api/decisions", json={"sample_id": 0, "action": "accept", "note": "x" * 2001}).status_code == 422
    assert client.get("/api/decisions").json() == []


def test_decisions_survive_a_restart(scan):
    with make_client(scan.scan_dir) as c:
        decide(c, 3, "unusable", note="blurry")
    with make_client(scan.scan_dir, reviewer="other") as c:
        d = c.get("/api/samples/3").json()["decision"]
    assert (d["action"], d["note"], d["reviewer"]) == ("unusable", "blurry", "tester")


def test_batch_is_one_transaction_and_one_undo(client, scan):
    ids = [int(i) for i in scan.flagged().sample_id[:5]]
    r = client.post("/api/decisions/batch", json={"sample_ids": ids, "action": "suggested"})
    assert r.status_code == 200
    recorded = r.json()["recorded"]
    assert [x["sample_id"] for x in recorded] == ids
    assert all(x["decision"]["label"] == scan.scores.suggested_label[x["sample_id"]] for x in recorded)
    # an unknown id makes the whole batch fail, nothing is written
    before = len(client.get("/api/decisions", params={"limit": 1000}).json())
    assert client.post("/api/decisions/batch", json={"sample_ids": [ids[0], 999999], "action": "accept"}).status_code == 404
    assert len(client.get("/api/decisions", params={"limit": 1000}).json()) == before
    undone = client.post("/api/decisions/undo").json()["undone"]
    assert sorted(x["sample_id"] for x in undone) == sorted(ids)
    assert all(x["decision"] is None for x in undone)
    assert client.get("/api/samples", params={"reviewed": "yes"}).json()["items"] == []


def test_undo_walks_back_and_keeps_history(client, scan):
    a, b = (int(i) for i in scan.flagged().sample_id[:2])
    decide(client, a, "accept")
    decide(client, b, "unusable")
    decide(client, a, "suggested")
    # undo 1: a back to accept
    undone = client.post("/api/decisions/undo").json()["undone"]
    assert [(x["sample_id"], x["decision"]["action"]) for x in undone] == [(a, "accept")]
    # undo 2: b back to unreviewed
    undone = client.post("/api/decisions/undo").json()["undone"]
    assert [(x["sample_id"], x["decision"]) for x in undone] == [(b, None)]
    # undo 3: a back to unreviewed
    undone = client.post("/api/decisions/undo").json()["undone"]
    assert [(x["sample_id"], x["decision"]) for x in undone] == [(a, None)]
    assert client.post("/api/decisions/undo").json()["undone"] == []
    # nothing was updated or deleted: 3 decisions + 3 undo rows
    log = client.get("/api/decisions").json()
    assert len(log) == 6
    assert [r["undoes"] is not None for r in reversed(log)] == [False] * 3 + [True] * 3


def test_undo_is_per_reviewer(scan):
    with make_client(scan.scan_dir, reviewer="ann") as ann, make_client(scan.scan_dir, reviewer="bob") as bob:
        decide(ann, 1, "accept")
        decide(bob, 2, "unusable")
        undone = ann.post("/api/decisions/undo").json()["undone"]
        assert [x["sample_id"] for x in undone] == [1]
        assert bob.get("/api/samples/2").json()["decision"]["action"] == "unusable"
        # a decision replaced by someone else is not undone over the newer one
        decide(ann, 5, "accept")
        decide(bob, 5, "unusable")
        assert ann.post("/api/decisions/undo").json()["undone"] == []
        assert bob.get("/api/samples/5").json()["decision"]["action"] == "unusable"


def test_decisions_are_append_only_rows(client, scan):
    decide(client, 0, "accept")
    decide(client, 0, "unusable")
    client.post("/api/decisions/undo")
    conn = sqlite3.connect(scan.db_path)
    rows = conn.execute("SELECT decision_id, action FROM decisions ORDER BY decision_id").fetchall()
    assert rows == [(1, "accept"), (2, "unusable"), (3, "accept")]
    assert conn.execute("SELECT action FROM current_decisions").fetchall() == [("accept",)]


# ---------------------------------------------------------------------------- stats


def test_stats(client, scan):
    ids = [int(i) for i in scan.flagged().sample_id[:3]]
    decide(client, ids[0], "suggested")
    decide(client, ids[1], "unusable")
    decide(client, ids[2], "accept")
    s = client.get("/api/stats").json()
    p = s["progress"]
    assert p["n_samples"] == len(scan.scores) and p["n_flagged"] == int(scan.scores.flagged.sum())
    assert p["n_reviewed"] == p["n_reviewed_flagged"] == 3
    assert p["by_action"] == {"accept": 1, "suggested": 1, "relabel": 0, "unusable": 1, "unsure": 0}
    assert sum(b["n_flagged"] + b["n_unflagged"] for b in s["histogram"]) == len(scan.scores)
    assert sum(b["n_flagged"] for b in s["histogram"]) == p["n_flagged"]
    assert [c["name"] for c in s["classes"]] == scan.classes
    assert sum(c["n_samples"] for c in s["classes"]) == len(scan.scores)
    assert sum(c["n_unusable"] for c in s["classes"]) == 1
    assert s["estimated_noise_rate"] == pytest.approx(s["summary"]["estimated_noise_rate"]) and 0 < s["estimated_noise_rate"] < 1
    pairs = s["pairs"]
    assert sum(pr["n"] for pr in pairs) == int(
        (scan.scores.flagged & (scan.scores.given_label != scan.scores.suggested_label)).sum())
    assert sum(pr["n_reviewed"] for pr in pairs) == 3
    assert client.get("/api/stats/progress").json() == p
    nm = client.get("/api/noise-matrix").json()
    assert nm["classes"] == scan.classes and len(nm["matrix"]) == len(scan.classes)
    assert client.get("/api/classes").json() == scan.classes


def test_openapi_documents_the_api(client):
    spec = client.get("/openapi.json").json()
    for path in ("/api/samples", "/api/samples/{sample_id}", "/api/decisions", "/api/decisions/batch",
                 "/api/decisions/undo", "/api/stats", "/api/noise-matrix", "/api/export.csv",
                 "/api/samples/{sample_id}/image"):
        assert path in spec["paths"], path
    assert "post" in spec["paths"]["/api/decisions"]
    assert not any(p in spec["paths"] for p in ("/queue", "/grid", "/"))  # pages are not API
    assert client.get("/docs").status_code == 200


def test_images(client, scan):
    r = client.get("/api/samples/0/image")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == (scan.dataset_root / scan.scores.path[0]).read_bytes()
    assert client.get("/api/samples/0/thumbnail").content == r.content  # small: served as is
    assert client.get("/api/samples/999999/image").status_code == 404


def test_large_and_odd_images_are_converted(tmp_path):
    from fakescan import make_scan
    from PIL import Image

    scan = make_scan(tmp_path)
    path = scan.dataset_root / scan.scores.path[0]
    Image.new("RGB", (900, 600), (200, 30, 30)).save(path, format="PNG")
    with make_client(scan.scan_dir) as c:
        thumb = c.get("/api/samples/0/thumbnail")
        assert thumb.headers["content-type"] == "image/jpeg"
        from io import BytesIO
        assert max(Image.open(BytesIO(thumb.content)).size) == 256
    # a format browsers do not show (TIFF) is converted to PNG
    conn = storage.connect(scan.db_path)
    tif = scan.dataset_root / "circle" / "x.tif"
    Image.new("RGB", (20, 20)).save(tif)
    conn.execute("UPDATE samples SET path = 'circle/x.tif' WHERE sample_id = 1")
    conn.close()
    with make_client(scan.scan_dir) as c:
        r = c.get("/api/samples/1/image")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"


# ---------------------------------------------------------------------------- 100k: plans and results
#
# Speed itself is measured by benchmarks/review.py, not asserted here. What keeps a page
# cheap at any depth is the design: every paged query is an index probe that starts at the
# cursor and reads ``limit`` rows in index order (no full scan, no sort of the matches, no
# OFFSET), and the decision in force comes from one index probe per row. These tests check
# exactly that, through SQLite's query plans, and that the pages are right.

F = SampleFilters

#: name -> (filters, cursor, index (a regex) the samples table must be searched with)
PAGE_CASES = {
    "flagged, first page": (F(flagged="1"), None, "samples_by_rank"),
    "flagged, deep": (F(flagged="1"), "79000", "samples_by_rank"),
    "all samples, deep (merged halves)": (F(), "99000", "samples_by_rank"),
    "one class, deep": (F(given="class_03", flagged="1"), "75000", "samples_by_given"),
    "pair": (F(given="class_03", suggested="class_05"), "50000", r"samples_by_(given|suggested)"),
    "unreviewed, deep": (F(flagged="1", reviewed="no"), "60000", "samples_by_rank"),
    "reviewed": (F(reviewed="yes"), "60000", "samples_by_rank"),
    "by path, deep": (F(sort="path"), "class_07/img_090000.png", "sqlite_autoindex_samples_1"),
    "score ascending, deep": (F(sort="score_asc", flagged="1"), "1000", "samples_by_rank"),
}


class Recorder:
    """A connection that records every statement run through it."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.statements: list[tuple[str, dict | tuple]] = []

    def execute(self, sql, params=()):
        self.statements.append((sql, params))
        return self.conn.execute(sql, params)

    def __getattr__(self, name):
        return getattr(self.conn, name)


def query_plan(conn: sqlite3.Connection, sql: str, params) -> list[str]:
    return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]


@pytest.fixture(scope="module")
def big_conn(big_scan):
    conn = storage.connect(big_scan / storage.DB_NAME)
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def big_frame(big_conn):
    """Every sample with its decision in force: the reference the pages are checked against."""
    return samples_with_decisions(big_conn).set_index("sample_id", drop=False)


def expected_order(df, f: SampleFilters) -> list:
    """Sample ids matching ``f`` in display order, computed without SQL."""
    keep = df
    if f.flagged in ("0", "1"):
        keep = keep[keep.flagged == int(f.flagged)]
    if f.given is not None:
        keep = keep[keep.given_label == f.given]
    if f.suggested is not None:
        keep = keep[keep.suggested_label == f.suggested]
    if f.reviewed is not None:
        keep = keep[keep.action.notna() == (f.reviewed == "yes")]
    sort = f.sort or "score"
    key, ascending = {"score": ("score_rank", True), "score_asc": ("score_rank", False),
                      "path": ("path", True)}[sort]
    return keep.sort_values(key, ascending=ascending).sample_id.tolist()


def position_after(df, order: list, cursor: str | None, sort: str | None) -> int:
    """Index in ``order`` of the first sample after ``cursor``."""
    if cursor is None:
        return 0
    if sort == "path":
        return sum(1 for i in order if df.path[i] <= cursor)
    rank = int(cursor)
    return sum(1 for i in order if (df.score_rank[i] <= rank if sort != "score_asc" else df.score_rank[i] >= rank))


def test_big_scan_has_the_expected_shape(big_frame):
    assert len(big_frame) == 100_000
    assert big_frame.flagged.sum() > 70_000  # 80 % flagged: the worst case for the queue
    assert big_frame.action.notna().sum() == 20_000 and (big_frame.action == "unusable").sum() == 3000


@pytest.mark.parametrize("name", PAGE_CASES)
def test_page_queries_are_index_probes_at_100k(big_conn, name):
    f, after, index = PAGE_CASES[name]
    rec = Recorder(big_conn)
    page = queries.list_samples(rec, f, after=after, limit=50)
    assert len(page.items) == 50
    tag_lookups = [(sql, p) for sql, p in rec.statements if "FROM tag_events" in sql.split("WHERE")[0]]
    vote_lookups = [(sql, p) for sql, p in rec.statements if "FROM votes" in sql.split("WHERE")[0]]
    listing = [(sql, p) for sql, p in rec.statements if (sql, p) not in tag_lookups + vote_lookups]
    assert 1 <= len(listing) <= 4  # one probe (two for merged halves) + the "is there a page before" probe
    assert len(tag_lookups) == 1  # the page's tags: one query for all its rows, along an index
    plan = query_plan(big_conn, *tag_lookups[0])
    assert not [step for step in plan if step.startswith("SCAN")] and "SEARCH t USING" in "\n".join(plan), plan
    assert len(vote_lookups) == 1  # the annotators' votes (several annotators per image): one probe per row's path
    plan = query_plan(big_conn, *vote_lookups[0])
    assert "SEARCH votes USING INDEX" in "\n".join(plan) and "TEMP B-TREE" not in "\n".join(plan), plan
    sort_key = "path" if f.sort == "path" else "score_rank"
    for sql, params in listing:
        assert not re.search(r"\bOFFSET\b", sql, re.IGNORECASE), sql
        plan = query_plan(big_conn, sql, params)
        text = "\n".join(plan)
        assert not [step for step in plan if step.startswith("SCAN")], f"{name}: full scan\n{text}"
        assert "TEMP B-TREE" not in text, f"{name}: matches sorted instead of read in index order\n{text}"
        samples_step = next(step for step in plan if step.startswith("SEARCH s "))
        assert re.search(rf"USING INDEX {index}\b", samples_step), f"{name}: {samples_step}"
        if after is not None:  # the cursor is part of the index probe, not a filter on all rows
            assert re.search(rf"\b{sort_key}[<>]\?", samples_step), f"{name}: {samples_step}"
        # the decision in force: one probe of decisions_by_path per row
        assert "SEARCH x USING COVERING INDEX decisions_by_path (path=?)" in plan, f"{name}\n{text}"
    # the statements do not depend on the page size (no query per row)
    rec_small = Recorder(big_conn)
    assert len(queries.list_samples(rec_small, f, after=after, limit=10).items) == 10
    shape = lambda sql: re.sub(r"IN \(\?(,\?)*\)", "IN (?...)", sql)  # noqa: E731 -- one list of ids per page
    assert [shape(sql) for sql, _ in rec_small.statements] == [shape(sql) for sql, _ in rec.statements]


@pytest.mark.parametrize("name", PAGE_CASES)
def test_pages_are_right_at_100k(big_conn, big_frame, name):
    f, after, _ = PAGE_CASES[name]
    order = expected_order(big_frame, f)
    start = position_after(big_frame, order, after, f.sort)
    page = queries.list_samples(big_conn, f, after=after, limit=50)
    ids = [it["sample_id"] for it in page.items]
    assert ids == order[start:start + 50]
    # the decision in force is the latest one
    for it in page.items:
        action = big_frame.action[it["sample_id"]]
        assert (it["decision"] or {}).get("action") == (None if pd.isna(action) else action)
    # cursors: the next page continues where this one ends, the previous page ends where it starts
    assert page.next_after == queries.cursor_of(page.items[-1], f.sort)
    nxt = queries.list_samples(big_conn, f, after=page.next_after, limit=50)
    assert [it["sample_id"] for it in nxt.items] == order[start + 50:start + 100]
    if after is None:
        assert page.prev_before is None
    else:
        assert page.prev_before == queries.cursor_of(page.items[0], f.sort)
        prev = queries.list_samples(big_conn, f, before=page.prev_before, limit=50)
        assert [it["sample_id"] for it in prev.items] == order[max(0, start - 50):start]


COUNT_CASES = {
    "flagged": F(flagged="1"),
    "flagged, unreviewed": F(flagged="1", reviewed="no"),
    "unusable": F(decision="unusable"),
    "one class": F(given="class_03"),
}


@pytest.mark.parametrize("name", COUNT_CASES)
def test_counts_read_only_indexes_at_100k(big_conn, big_frame, name):
    f = COUNT_CASES[name]
    rec = Recorder(big_conn)
    n = queries.count_samples(rec, f)
    df = big_frame
    expected = {
        "flagged": int(df.flagged.sum()),
        "flagged, unreviewed": int(((df.flagged == 1) & df.action.isna()).sum()),
        "unusable": int((df.action == "unusable").sum()),
        "one class": int((df.given_label == "class_03").sum()),
    }[name]
    assert n == expected
    for sql, params in rec.statements:
        plan = query_plan(big_conn, sql, params)
        text = "\n".join(plan)
        # a count may walk an index, but never the table rows, and never sorts
        scans = [step for step in plan if step.startswith("SCAN") and step != "SCAN latest"]
        assert all("USING COVERING INDEX" in step for step in scans), f"{name}\n{text}"
        assert "TEMP B-TREE" not in text, f"{name}\n{text}"


def test_api_page_at_100k(big_scan, big_conn):
    with make_client(big_scan) as c:
        # record the statements of every pooled connection
        pool = c.app.state.review.pool
        statements: list[str] = []
        conns = [pool.acquire() for _ in range(pool.size)]
        for conn in conns:
            conn.set_trace_callback(statements.append)
        for conn in conns:
            pool.release(conn)

        def api_page(limit):
            statements.clear()
            r = c.get("/api/samples", params={"flagged": "1", "after": "70000", "limit": limit})
            assert r.status_code == 200
            return r.json(), len(statements)

        body, n_small = api_page(50)
        expected = queries.list_samples(big_conn, F(flagged="1"), after="70000", limit=50)
        assert [it["sample_id"] for it in body["items"]] == [it["sample_id"] for it in expected.items]
        assert [it["decision"] and it["decision"]["decision_id"] for it in body["items"]] == [
            it["decision"] and it["decision"]["decision_id"] for it in expected.items]
        assert (body["next_after"], body["prev_before"]) == (expected.next_after, expected.prev_before)
        body, n_large = api_page(400)
        assert len(body["items"]) == 400 and n_large == n_small  # no statement per row

        r = c.get("/queue/rows", params={"after": "70000"})
        assert r.status_code == 200
        assert r.text.count('<li class="row') == 40 and 'class="sentinel"' in r.text


# ---------------------------------------------------------------------------- API rough edges


def test_yes_no_filters_accept_every_spelling(client, scan):
    df = scan.scores
    n_flagged = int(df.flagged.sum())
    counts = lambda **p: client.get("/api/samples", params={**p, "with_total": 1, "limit": 1}).json()["total"]
    for v in ("1", "true", "yes", "True", "YES"):
        assert counts(flagged=v) == n_flagged, v
    for v in ("0", "false", "no", "False"):
        assert counts(flagged=v) == len(df) - n_flagged, v
    assert counts(flagged="all") == len(df)
    sid = int(scan.flagged().iloc[0].sample_id)
    decide(client, sid, "accept")
    for v in ("yes", "1", "true", "TRUE"):
        assert counts(reviewed=v) == 1, v
    for v in ("no", "0", "false"):
        assert counts(reviewed=v) == len(df) - 1, v
    assert counts(reviewed="all") == counts() == len(df)
    r = client.get("/api/samples", params={"reviewed": "maybe"})
    assert r.status_code == 422 and "all" in r.text
    # the pages keep their own spelling in links and selects
    page = client.get("/queue", params={"flagged": "true", "reviewed": "false"}).text
    assert 'value="1" selected' in page and 'value="no" selected' in page
    # the allowed values are in the OpenAPI description
    params = {p["name"]: p for p in client.get("/openapi.json").json()["paths"]["/api/samples"]["get"]["parameters"]}
    for name in ("flagged", "reviewed"):
        text = json.dumps(params[name])
        assert all(f'"{v}"' in text for v in ("1", "0", "true", "false", "yes", "no", "all")), text
        assert params[name]["description"]


def test_total_is_the_number_of_listed_rows_for_every_decision_filter(client, scan):
    """``with_total`` counts what the pages list, also for a reviewer or decision with reviewed=no."""
    ids = [int(i) for i in scan.flagged().sample_id[:3]]
    for sid, action, who in zip(ids, ("accept", "unusable", "accept"), ("ada", "ada", "bo")):
        r = client.post("/api/decisions", json={"sample_id": sid, "action": action},
                        headers={"X-Labelaudit-Reviewer": who})
        assert r.status_code == 200, r.text
    combos = [{}, {"reviewed": "no"}, {"reviewed": "yes"}, {"reviewer": "ada"}, {"reviewer": "ada", "reviewed": "no"},
              {"reviewer": "ada", "reviewed": "yes"}, {"decision": "accept", "reviewed": "no"},
              {"decision": "changed"}, {"decision": "accept", "reviewer": "bo"}, {"flagged": "1", "reviewed": "no"},
              {"flagged": "0", "reviewer": "ada"}]
    for params in combos:
        total = client.get("/api/samples", params={**params, "with_total": 1, "limit": 1}).json()["total"]
        assert total == len(all_items(client, **params)), params
    assert client.get("/api/samples", params={"reviewer": "ada", "with_total": 1}).json()["total"] == 2


def test_undo_skips_a_decision_on_an_image_a_rescan_left_out(scan):
    """Undo answered 500 after withdrawing, unseen, the decision on an image the scan no longer has."""
    from labelaudit.review import orphaned_decisions
    from labelaudit.scandir import database as storage
    from webapp_support import make_client

    a, b = (int(i) for i in scan.flagged().sample_id[:2])
    gone = scan.scores.path[b]
    with make_client(scan.scan_dir) as c:
        assert c.post("/api/decisions", json={"sample_id": a, "action": "accept"}).status_code == 200
        assert c.post("/api/decisions", json={"sample_id": b, "action": "unusable"}).status_code == 200
        conn = storage.connect(scan.db_path)
        conn.execute("UPDATE samples SET path = 'moved/' || path WHERE path = ?", (gone,))  # as a re-scan would
        conn.close()
        r = c.post("/api/decisions/undo")
        assert r.status_code == 200, r.text
        assert [x["sample_id"] for x in r.json()["undone"]] == [a]  # the visible one, not the orphaned one
        assert [d["path"] for d in c.get("/api/orphaned-decisions").json()] == [gone]  # still in force
    conn = storage.connect(scan.db_path)
    assert orphaned_decisions(conn).action.tolist() == ["unusable"]
    conn.close()


def test_undo_reports_what_it_undid(client, scan):
    a, b = (int(i) for i in scan.flagged().sample_id[:2])
    assert decide(client, a, "accept")["undoes"] is None
    second = decide(client, a, "unusable")
    assert second["undoes"] is None and second["decision"]["undoes"] is None
    undone = client.post("/api/decisions/undo").json()["undone"]
    wid = second["decision"]["decision_id"]
    assert [(x["sample_id"], x["undoes"], x["decision"]["action"], x["decision"]["undoes"]) for x in undone] == \
        [(a, wid, "accept", wid)]
    log = {r["decision_id"]: r for r in client.get("/api/decisions").json()}
    assert log[undone[0]["decision"]["decision_id"]]["undoes"] == wid  # the same as the log says
    # back to unreviewed: decision is null, undoes still names the withdrawn decision
    d = decide(client, b, "relabel", label=XSS_CLASS)["decision"]["decision_id"]
    undone = client.post("/api/decisions/undo").json()["undone"]
    assert [(x["sample_id"], x["decision"], x["undoes"]) for x in undone] == [(b, None, d)]


def test_decision_label_errors_explain(client, scan):
    row = scan.flagged().iloc[0]
    sid, given, sugg = int(row.sample_id), row.given_label, row.suggested_label
    other = next(c for c in scan.classes if c not in (given, sugg))
    post = lambda **body: client.post("/api/decisions", json={"sample_id": sid, **body})
    r = post(action="relabel")
    assert r.status_code == 422 and "needs a label" in r.json()["detail"]
    assert "None" not in r.json()["detail"]
    assert "unknown class" in post(action="relabel", label="nope").json()["detail"]
    r = post(action="accept", label=other)
    assert r.status_code == 422 and "relabel" in r.json()["detail"] and given in r.json()["detail"]
    r = post(action="suggested", label=other)
    assert r.status_code == 422 and "relabel" in r.json()["detail"]
    r = client.post("/api/decisions/batch", json={"sample_ids": [sid], "action": "accept", "label": other})
    assert r.status_code == 422
    assert client.get(f"/api/samples/{sid}").json()["decision"] is None  # nothing written
    # a label equal to the one kept, or none at all, is fine
    assert post(action="accept", label=given).json()["recorded"][0]["decision"]["label"] == given
    assert post(action="suggested").json()["recorded"][0]["decision"]["label"] == sugg
    # the no-JavaScript form sends its class select with every button: only relabel reads it
    r = client.post(f"/samples/{sid}/decision", data={"action": "accept", "label": other}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get(f"/api/samples/{sid}").json()["decision"]["label"] == given


def test_a_running_app_serves_the_new_scan_after_a_rescan(scan):
    """A re-scan into the folder while the app runs: it went on serving the first scan's class list,
    summary, noise matrix and embeddings (so neighbours named the wrong images). The app reads the
    scan again when scan.json is replaced; while it is missing (a re-scan writing) the last one stays."""
    import numpy as np

    from labelaudit.scandir import ScanDir

    files = ScanDir(scan.scan_dir)
    with make_client(scan.scan_dir) as client:
        assert client.get("/api/classes").json() == scan.classes
        before = client.get("/api/samples/0", params={"k": 3}).json()["neighbours"]
        manifest = files.read_manifest()
        files.manifest_path.unlink()  # a re-scan has started writing
        assert client.get("/api/classes").json() == scan.classes
        manifest.classes = scan.classes[:-1]
        manifest.summary.estimated_noise_rate = 0.5
        embeddings = np.load(files.embeddings)
        np.save(files.embeddings, embeddings[::-1].copy())  # other rows: other neighbours
        old_view = client.app.state.settings.view
        files.write_manifest(manifest)
        assert client.get("/api/classes").json() == scan.classes[:-1]
        assert client.get("/api/stats").json()["estimated_noise_rate"] == 0.5
        after = client.get("/api/samples/0", params={"k": 3}).json()["neighbours"]
        assert after != before
        view = client.app.state.settings.view  # swapped whole: the map is the new scan's too
        assert view is not old_view and view.map is not old_view.map and view.classes == scan.classes[:-1]
        # a request holds one view from start to end: its copy of the settings is pinned to it
        from labelaudit.webapp.deps import get_settings

        class Request:  # what get_settings reads of a request
            app = client.app

        pinned = get_settings(Request())
        manifest.classes = scan.classes[:-2]
        files.write_manifest(manifest)
        assert get_settings(Request()).classes == scan.classes[:-2]  # a new request sees the new scan
        assert pinned.classes == scan.classes[:-1] and pinned.manifest.classes == scan.classes[:-1]
        view = client.app.state.settings.view
        files.manifest_path.write_text("{broken", encoding="utf-8")  # unreadable: the last view stays
        assert client.get("/api/classes").json() == scan.classes[:-2]
        assert client.app.state.settings.view is view


def test_a_map_made_from_replaced_embeddings_is_not_saved_as_theirs(scan):
    """A map thread of the old scan still computing when a re-scan replaced embeddings.npy saved the old
    positions stamped as the new file's: the new scan's app then showed them, also after a restart."""
    import os

    import numpy as np

    from labelaudit.review.projection import _source, load_map, write_map
    from labelaudit.scandir import ScanDir

    files = ScanDir(scan.scan_dir)
    files.map.unlink(missing_ok=True)
    before = _source(files.embeddings)
    embeddings = np.load(files.embeddings)
    xy = np.zeros((len(embeddings), 2), np.float32)
    np.save(files.embeddings, embeddings[::-1].copy())  # a re-scan replaced them while the map was made
    os.utime(files.embeddings, ns=(before["mtime_ns"] + 10**9,) * 2)
    assert write_map(files, xy, "old", 0.0, before) is None and not files.map.exists()
    assert write_map(files, xy, "current", 0.0, _source(files.embeddings)) == files.map
    assert load_map(files) is not None


def test_cached_stats_are_keyed_by_the_scan_too(scan):
    """A re-scan of as many images rewrites the samples with the same last row id: the stats cache
    (keyed by the last decision and row) served the first scan's counts; the scan's created_at is in
    the key now."""
    from labelaudit.review.database import StatsCache

    conn = storage.connect(scan.db_path)
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('created_at', ?)", (json.dumps("2026-01-01T00:00:00+00:00"),))
    before = StatsCache.version(conn)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'created_at'", (json.dumps("2027-01-01T00:00:00+00:00"),))
    assert StatsCache.version(conn) != before and StatsCache.version(conn)[:2] == before[:2]
    conn.close()


def test_a_cached_value_is_each_callers_own(scan):
    """The annotators' page wrote `url` keys into the rows the cache held for every later request."""
    from labelaudit.review.database import StatsCache

    cache, conn = StatsCache(), storage.connect(scan.db_path)
    first = cache.get("rows", conn, lambda: [{"a": 1}])
    first[0]["url"] = "/x"
    first.append({"b": 2})
    assert cache.get("rows", conn, lambda: None) == [{"a": 1}]
    again = cache.get("rows", conn, lambda: None)
    again[0]["a"] = 5
    assert cache.get("rows", conn, lambda: None) == [{"a": 1}]
    conn.close()


def test_a_page_from_before_a_rescan_cannot_decide_on_another_image(scan):
    """Sample ids are rows of the scan: a re-scan renumbers them. A page loaded before it sends the scan
    it was made from (header / hidden field) and is refused (409, nothing written) instead of recording
    its decision on whatever image has that id now; scripts without the header are unaffected."""
    conn = storage.connect(scan.db_path)
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('created_at', ?)", (json.dumps("2026-01-01T00:00:00+00:00"),))
    with make_client(scan.scan_dir) as client:
        page = client.get("/samples/0").text
        old = re.search(r'data-scan="([^"]*)"', page).group(1)
        assert old == "2026-01-01T00:00:00+00:00" and f'name="scan" value="{old}"' in page
        header = {"X-Labelaudit-Scan": old}
        ok = client.post("/api/decisions", json={"sample_id": 0, "action": "accept"}, headers=header)
        assert ok.status_code == 200, ok.text
        conn.execute("UPDATE meta SET value = ? WHERE key = 'created_at'", (json.dumps("2026-02-02T00:00:00+00:00"),))
        refused = [
            client.post("/api/decisions", json={"sample_id": 1, "action": "unusable"}, headers=header),
            client.post("/api/decisions/batch", json={"sample_ids": [1, 2], "action": "unusable"}, headers=header),
            client.post("/api/samples/1/tags", json={"add": ["x"]}, headers=header),
            client.post("/samples/1/decision", data={"action": "unusable", "scan": old}, follow_redirects=False),
            client.post("/api/selections", json={"sample_ids": [1, 2]}, headers=header),  # a box on the old map
        ]
        assert [r.status_code for r in refused] == [409] * 5
        assert "reload" in refused[0].json()["detail"]
        assert set(samples_with_decisions(conn).dropna(subset=["action"]).sample_id) == {0}
        assert client.post("/api/samples/1/tags", json={"add": ["x"]}).status_code == 200  # a script
        new = {"X-Labelaudit-Scan": "2026-02-02T00:00:00+00:00"}
        assert client.post("/api/decisions", json={"sample_id": 1, "action": "unusable"}, headers=new).status_code == 200
