"""The JSON API through the ASGI test client on a tiny generated scan."""

from __future__ import annotations

import sqlite3
import time

import pytest
from webapp_support import make_client
from fakescan import XSS_CLASS

from labelaudit import storage
from webapp import queries
from webapp.deps import Settings
from webapp.schemas import SampleFilters


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
    assert client.get("/api/samples", params={"after": "abc"}).status_code == 422
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
    assert set(body["signals"]) == {"self_confidence", "margin", "flip_agreement", "loss_auc", "knn_agreement"}
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
    assert p["by_action"] == {"accept": 1, "suggested": 1, "relabel": 0, "unusable": 1}
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


# ---------------------------------------------------------------------------- speed at 100k


def best_ms(fn, n=5):
    fn()
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best * 1000


def test_page_queries_stay_fast_at_100k(big_scan):
    settings = Settings(scan_dir=big_scan, reviewer="bench")
    conn = settings.pool.acquire()
    F = SampleFilters
    cases = {
        "flagged, first page": (F(flagged="1"), None),
        "flagged, deep": (F(flagged="1"), "79000"),
        "all samples, deep (merged halves)": (F(), "99000"),
        "one class, deep": (F(given="class_03", flagged="1"), "75000"),
        "pair": (F(given="class_03", suggested="class_05"), "50000"),
        "unreviewed, deep": (F(flagged="1", reviewed="no"), "60000"),
        "reviewed": (F(reviewed="yes"), "60000"),
        "by path, deep": (F(sort="path"), "class_07/img_090000.png"),
        "score ascending, deep": (F(sort="score_asc", flagged="1"), "1000"),
    }
    for name, (f, after) in cases.items():
        page = queries.list_samples(conn, f, after=after, limit=50)
        assert len(page.items) == 50, name
        ms = best_ms(lambda: queries.list_samples(conn, f, after=after, limit=50))
        assert ms < 25, f"{name}: {ms:.1f} ms"
    # counts shown above the list
    for f in (F(flagged="1"), F(flagged="1", reviewed="no"), F(decision="unusable")):
        assert best_ms(lambda: queries.count_samples(conn, f), n=2) < 250
    settings.pool.release(conn)


def test_api_page_is_fast_at_100k(big_scan):
    with make_client(big_scan) as c:
        r = c.get("/api/samples", params={"flagged": "1", "after": "70000", "limit": 50})
        assert r.status_code == 200 and len(r.json()["items"]) == 50
        ms = best_ms(lambda: c.get("/api/samples", params={"flagged": "1", "after": "70000", "limit": 50}))
        assert ms < 100, ms
        html_ms = best_ms(lambda: c.get("/queue/rows", params={"after": "70000"}), n=3)
        assert html_ms < 250, html_ms
