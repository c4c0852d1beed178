"""The review domain in the library and the app's hardening: request ids, bounds, limits.

Each test here failed before the change it guards (or covers a contract that did not exist).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time

import httpx
import pytest
from PIL import Image
from webapp_support import REPO, make_client

from labelaudit.cli import _is_loopback
from labelaudit.review import ACTIONS, ReviewDatabase, in_force, samples_with_decisions
from labelaudit.review.schema import CURRENT_DECISIONS_VIEW, SAMPLES_WITH_DECISIONS
from labelaudit.scandir import ScanDir
from labelaudit.scandir import database as storage
from labelaudit.webapp.security import is_loopback

BIG = 2**63


def n_rows(scan) -> int:
    conn = storage.connect(scan.db_path)
    try:
        return conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
    finally:
        conn.close()


# ---------------------------------------------------------------------------- domain in the library


def test_actions_are_written_once(scan):
    """The CHECK constraint, the API schema and the page config all come from ACTIONS."""
    conn = storage.connect(scan.db_path)
    try:
        ddl = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'decisions'").fetchone()[0]
        view = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'current_decisions'").fetchone()[0]
    finally:
        conn.close()
    assert re.search(r"CHECK \(action IN \(([^)]*)\)\)", ddl).group(1) == ", ".join(f"'{a}'" for a in ACTIONS)
    # one definition of the decision in force, for the view and for the listing
    assert view == CURRENT_DECISIONS_VIEW and in_force("d", "d.path") in view
    assert in_force("d", "s.path") in SAMPLES_WITH_DECISIONS
    with make_client(scan.scan_dir) as c:
        schema = c.get("/openapi.json").json()["components"]["schemas"]
        assert tuple(schema["DecisionIn"]["properties"]["action"]["enum"]) == ACTIONS


def test_an_old_view_is_replaced_by_the_one_definition(scan):
    conn = storage.connect(scan.db_path)
    conn.executescript("DROP VIEW current_decisions; CREATE VIEW current_decisions AS SELECT * FROM decisions;")
    conn.close()
    conn = storage.connect(scan.db_path)
    try:
        view = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'current_decisions'").fetchone()[0]
    finally:
        conn.close()
    assert view == CURRENT_DECISIONS_VIEW


def test_review_database_is_the_one_writer(scan):
    db = ReviewDatabase(scan.db_path)
    try:
        sid = int(scan.flagged().iloc[0].sample_id)
        out = db.decide([sid], "relabel", label=scan.scores.given_label[sid], reviewer="ann", request_id="req-00001")
        assert out[0]["decision"]["action"] == "accept"  # a relabel to the given class is a keep
        with db.reader() as conn:
            frame = samples_with_decisions(conn)
        assert frame.action[sid] == "accept" and frame.reviewer[sid] == "ann"
        assert db.undo("ann")[0]["undoes"] == out[0]["decision"]["decision_id"]
    finally:
        db.close()


def test_stats_and_image_caches_belong_to_the_app(scan):
    """Two apps never share cached statistics or images (no process-wide state)."""
    with make_client(scan.scan_dir) as a, make_client(scan.scan_dir) as b:
        assert a.get("/api/stats").status_code == b.get("/api/stats").status_code == 200
        assert a.app.state.review.stats is not b.app.state.review.stats
        assert a.app.state.images is not b.app.state.images
    from labelaudit.webapp import queries
    from labelaudit.webapp.routers import images
    assert not hasattr(queries, "_stats_cache") and not hasattr(images, "_converted")


# ---------------------------------------------------------------------------- 5: idempotent writes


def test_a_retried_decision_is_stored_once(scan):
    sid = int(scan.flagged().iloc[0].sample_id)
    body = {"sample_id": sid, "action": "unusable", "request_id": "a1b2c3d4e5f60718"}
    with make_client(scan.scan_dir) as c:
        first = c.post("/api/decisions", json=body)
        again = c.post("/api/decisions", json=body)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert n_rows(scan) == 1
    with make_client(scan.scan_dir) as c:  # the request ids survive a restart
        assert c.post("/api/decisions", json=body).json() == first.json()
        batch = {"sample_ids": [sid, sid + 1], "action": "unusable", "request_id": "batch-0001"}
        assert c.post("/api/decisions/batch", json=batch).json() == c.post("/api/decisions/batch", json=batch).json()
    assert n_rows(scan) == 3


def test_a_retried_undo_undoes_once(scan):
    ids = [int(i) for i in scan.flagged().sample_id[:2]]
    with make_client(scan.scan_dir) as c:
        for sid in ids:
            c.post("/api/decisions", json={"sample_id": sid, "action": "unusable"})
        undo = c.post("/api/decisions/undo", json={"request_id": "undo-00001"})
        again = c.post("/api/decisions/undo", json={"request_id": "undo-00001"})
        assert undo.json() == again.json() and undo.json()["undone"][0]["sample_id"] == ids[1]
        assert c.get(f"/api/samples/{ids[0]}").json()["decision"]["action"] == "unusable"  # not undone too
        assert c.post("/api/decisions/undo").json()["undone"][0]["sample_id"] == ids[0]  # no id: a new undo
        # a request id is one kind of request
        r = c.post("/api/decisions", json={"sample_id": ids[0], "action": "clear", "request_id": "undo-00001"})
        assert r.status_code == 409
        r = c.post("/api/decisions/undo", json={"request_id": "undo-00001"}, headers={"X-Labelaudit-Reviewer": "bo"})
        assert r.status_code == 409  # another reviewer's undo


def test_a_retry_after_a_rescan_gets_its_first_answer(scan):
    """A page's retry reaching the server after a re-scan renumbered the ids: its decision was saved the first
    time, so it is answered with that result (not "request id used for other decisions")."""
    a = int(scan.flagged().sample_id.iloc[0])
    body = {"sample_id": a, "action": "unusable", "request_id": "req-bbbbbbbb"}
    conn = storage.connect(scan.db_path)
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('created_at', ?)", (json.dumps("2026-01-01T00:00:00+00:00"),))
    page_scan = {"X-Labelaudit-Scan": "2026-01-01T00:00:00+00:00"}
    with make_client(scan.scan_dir) as c:
        first = c.post("/api/decisions", json=body, headers=page_scan)
        assert first.status_code == 200, first.text
        b = int(scan.flagged().sample_id.iloc[1])  # the re-scan swaps two ids: id a names another image now
        (pa,), (pb,) = (conn.execute("SELECT path FROM samples WHERE sample_id = ?", (i,)).fetchone() for i in (a, b))
        conn.execute("UPDATE samples SET path = '~' WHERE sample_id = ?", (a,))
        conn.execute("UPDATE samples SET path = ? WHERE sample_id = ?", (pa, b))
        conn.execute("UPDATE samples SET path = ? WHERE sample_id = ?", (pb, a))
        conn.execute("UPDATE meta SET value = ? WHERE key = 'created_at'", (json.dumps("2030-01-01T00:00:00+00:00"),))
        again = c.post("/api/decisions", json=body, headers=page_scan)
        assert again.status_code == 200, again.text
        assert again.json()["recorded"][0]["sample_id"] == b and again.json()["recorded"][0]["path"] == pa
        conn.execute("UPDATE samples SET path = 'gone.png' WHERE sample_id = ?", (b,))  # and now it is gone
        assert c.post("/api/decisions", json=body, headers=page_scan).status_code == 409
        fresh = c.post("/api/decisions", json={**body, "request_id": "req-cccccccc"}, headers=page_scan)
        assert fresh.status_code == 409  # a new request from the old page: the stale scan
    conn.close()
    assert n_rows(scan) == 1


def test_a_request_id_reused_for_another_decision_is_refused_not_dropped(scan):
    """The second request was answered with the first one's result and silently not stored."""
    a, b = (int(i) for i in scan.flagged().sample_id[:2])
    first = {"sample_id": a, "action": "relabel", "label": scan.classes[0], "request_id": "req-aaaaaaaa"}
    with make_client(scan.scan_dir) as c:
        assert c.post("/api/decisions", json=first).status_code == 200
        for other in ({"sample_id": b, "action": "unusable"}, {"sample_id": a, "note": "other words"},
                      {"action": "unusable"}, {"label": scan.classes[1]}):
            r = c.post("/api/decisions", json={**first, **other})
            assert r.status_code == 409 and "already used" in r.json()["detail"], r.text
        r = c.post("/api/decisions", json=first, headers={"X-Labelaudit-Reviewer": "bo"})
        assert r.status_code == 409
        batch = {"sample_ids": [a, b], "action": "unusable", "request_id": "req-aaaaaaaa"}
        assert c.post("/api/decisions/batch", json=batch).status_code == 409
        assert c.post("/api/decisions", json=first).status_code == 200  # the true retry is still answered
    assert n_rows(scan) == 1


def test_request_ids_are_checked(client):
    r = client.post("/api/decisions", json={"sample_id": 0, "action": "accept", "request_id": "x" * 65})
    assert r.status_code == 422
    r = client.post("/api/decisions", json={"sample_id": 0, "action": "accept", "request_id": "no spaces ok?"})
    assert r.status_code == 422


def test_the_page_sends_one_request_id_per_action_and_retries_with_it():
    js = (REPO / "webapp" / "static" / "app.js").read_text()
    assert js.count("request_id: requestId") == 3  # decision, batch, undo
    assert "newRequestId()" in js and "getRandomValues" in js


# ---------------------------------------------------------------------------- 3, 4: bounds


@pytest.mark.parametrize("url", [
    f"/api/samples/{BIG}", f"/api/samples/{BIG}/image", f"/api/samples/{BIG}/thumbnail", f"/samples/{BIG}",
    f"/api/samples/{-BIG - 1}", f"/api/decisions?before_id={BIG}",
    f"/api/samples?after={BIG}", f"/api/samples?before={BIG}", f"/api/samples?after={-BIG - 1}&sort=score_asc",
    f"/queue?after={BIG}", f"/queue?before={BIG}", f"/grid?after={BIG}", f"/queue/rows?after={BIG}",
    f"/grid/cells?after={BIG}", f"/samples/0?after={BIG}",
])
def test_huge_integers_are_404_or_422(client, url):
    r = client.get(url)
    if url.startswith(("/queue", "/grid", "/samples/0")):
        assert r.status_code == 200, url  # pages start over at the top
    else:
        assert r.status_code in (404, 422), (url, r.status_code)


@pytest.mark.parametrize("body", [
    {"sample_id": BIG, "action": "accept"},
    {"sample_id": -BIG - 1, "action": "accept"},
])
def test_huge_sample_ids_in_decisions_are_refused(client, scan, body):
    assert client.post("/api/decisions", json=body).status_code in (404, 422)
    batch = {"sample_ids": [0, body["sample_id"]], "action": "accept"}
    assert client.post("/api/decisions/batch", json=batch).status_code in (404, 422)
    assert client.post(f"/samples/{body['sample_id']}/decision", data={"action": "accept"}).status_code in (404, 422)
    assert n_rows(scan) == 0


@pytest.mark.parametrize("sample_id", [True, "0", 0.0, [0]])
def test_a_sample_id_is_a_json_integer(client, scan, sample_id):
    """`"sample_id": true` was taken for sample 1."""
    assert client.post("/api/decisions", json={"sample_id": sample_id, "action": "unusable"}).status_code == 422
    batch = {"sample_ids": [sample_id], "action": "unusable"}
    assert client.post("/api/decisions/batch", json=batch).status_code == 422
    assert n_rows(scan) == 0


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_a_422(client, value):
    raw = '{"sample_id": %s, "action": "accept"}' % value
    r = client.post("/api/decisions", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "sample_id"]


# ---------------------------------------------------------------------------- 6: sizes


def test_bodies_over_the_limit_are_413(client):
    big = {"sample_id": 0, "action": "accept", "note": "x" * (2 << 20)}
    assert client.post("/api/decisions", json=big).status_code == 413

    def chunks():  # no Content-Length: sent chunked
        for _ in range(40):
            yield b"x" * 65536

    r = client.post("/api/decisions", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = client.post("/samples/0/decision", content=chunks(),
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413


def test_validation_errors_are_short_and_do_not_echo_the_input(client):
    note = "N" * 500_000
    r = client.post("/api/decisions", json={"sample_id": 0, "action": "accept", "note": note})
    assert r.status_code == 422
    assert len(r.content) < 2000 and "NNNNNNNNNN" not in r.text
    r = client.get("/api/samples", params={"after": "9" * 5000})
    assert r.status_code == 422 and len(r.content) < 2000


# ---------------------------------------------------------------------------- 7: thumbnails


def test_thumbnails_of_long_images_keep_a_usable_short_side(scan):
    path = scan.dataset_root / scan.scores.path[0]
    Image.new("RGB", (10000, 50), (200, 30, 30)).save(path)
    with make_client(scan.scan_dir) as c:
        r = c.get("/api/samples/0/thumbnail")
    assert r.status_code == 200
    import io
    w, h = Image.open(io.BytesIO(r.content)).size
    assert max(w, h) <= 256 and min(w, h) >= 32 and max(w, h) <= 4 * min(w, h)


# ---------------------------------------------------------------------------- B: scan contract


def test_the_app_reads_the_manifest_not_meta_keys(scan):
    conn = storage.connect(scan.db_path)
    conn.execute("DELETE FROM meta")
    conn.close()
    manifest = ScanDir(scan.scan_dir).read_manifest()
    with make_client(scan.scan_dir) as c:
        stats = c.get("/api/stats").json()
        assert stats["summary"]["n_samples"] == manifest.summary.n_samples
        assert stats["estimated_noise_rate"] == pytest.approx(manifest.summary.estimated_noise_rate)
        assert c.get("/api/noise-matrix").json()["classes"] == manifest.classes
        assert c.get("/api/samples/0/image").status_code == 200  # dataset_root from the manifest


def test_unscored_images_are_listed_when_recorded(scan):
    with make_client(scan.scan_dir) as c:  # a database from before the table: nothing to show
        conn = storage.connect(scan.db_path)
        conn.execute("DROP TABLE IF EXISTS unscored")
        conn.close()
        assert c.get("/api/unscored").json() == []
        assert "Not scored" not in c.get("/").text
    conn = storage.connect(scan.db_path)
    conn.executemany("INSERT INTO unscored VALUES (?, ?, ?, ?)", [
        ("tiny/a.png", "tiny", "class too small for the folds", 1),
        ("tiny/b.png", "tiny", "class too small for the folds", 1),
        ("circle/bad.png", "circle", "cannot decode image", 0),
    ])
    conn.close()
    with make_client(scan.scan_dir) as c:
        items = c.get("/api/unscored").json()
        assert [(i["path"], i["given_label"], i["reason"]) for i in items] == [
            ("circle/bad.png", "circle", "cannot decode image"),
            ("tiny/a.png", "tiny", "class too small for the folds"),
            ("tiny/b.png", "tiny", "class too small for the folds")]
        html = c.get("/").text
        assert "Not scored" in html and "class too small for the folds <b>2</b>" in html


def test_unscored_images_show_the_decision_the_export_applies(scan, tmp_path):
    """An image decided in an earlier scan that a re-scan no longer scores: the export applies the
    decision (review.unscored_with_decisions), while /api/unscored and the overview showed only its
    given label ("kept in the export with their given label")."""
    import pandas as pd
    from fakescan import SIGNALS

    from labelaudit import review
    from labelaudit.export import cleaned_labels

    s = scan.scores
    relabeled, dropped, untouched = s.path[:3]
    new = next(c for c in scan.classes if c != s.given_label[0])
    conn = storage.connect(scan.db_path)
    review.record_decision(conn, relabeled, "relabel", label=new, reviewer="ann")
    review.record_decision(conn, dropped, "unusable", reviewer="bob")
    rest = s.iloc[3:].reset_index(drop=True)  # the re-scan: the first three are in a class too small now
    storage.write_scan(
        conn, rest, classes=scan.classes, class_counts=[int((rest.given_label == c).sum()) for c in scan.classes],
        top_classes=[[] for _ in range(len(rest))], signal_columns=list(SIGNALS), meta={},
        unscored=pd.DataFrame({"path": s.path[:3], "given_label": s.given_label[:3],
                               "reason": "class too small", "readable": 1}))
    exported = cleaned_labels(conn).set_index("path").label
    conn.close()
    with make_client(scan.scan_dir) as c:
        items = {i["path"]: i for i in c.get("/api/unscored").json()}
        html = c.get("/").text
    assert (items[relabeled]["decision"], items[relabeled]["decision_label"], items[relabeled]["reviewer"]) == (
        "relabel", new, "ann")
    assert items[relabeled]["decision_label"] == exported[relabeled]
    assert (items[dropped]["decision"], items[dropped]["reviewer"]) == ("unusable", "bob")
    assert dropped not in exported.index
    assert items[untouched]["decision"] is None and items[untouched]["decision_label"] is None
    assert "2 of them decided in an earlier review" in html
    assert "1 relabeled" in html and "1 unusable" in html


def test_a_decision_on_an_undecodable_unscored_image_is_not_said_to_be_applied(scan):
    """An image relabeled in an earlier scan whose file no longer decodes is left out of the export: the
    overview counted its decision among those "applied by the export"; /api/unscored still shows it."""
    import pandas as pd
    from fakescan import SIGNALS

    from labelaudit import review
    from labelaudit.export import cleaned_labels

    s = scan.scores
    broken = s.path[0]
    new = next(c for c in scan.classes if c != s.given_label[0])
    conn = storage.connect(scan.db_path)
    review.record_decision(conn, broken, "relabel", label=new, reviewer="ann")
    rest = s.iloc[1:].reset_index(drop=True)
    storage.write_scan(
        conn, rest, classes=scan.classes, class_counts=[int((rest.given_label == c).sum()) for c in scan.classes],
        top_classes=[[] for _ in range(len(rest))], signal_columns=list(SIGNALS), meta={},
        unscored=pd.DataFrame({"path": [broken], "given_label": [s.given_label[0]],
                               "reason": ["cannot identify image file"], "readable": [0]}))
    assert broken not in set(cleaned_labels(conn).path)
    conn.close()
    with make_client(scan.scan_dir) as c:
        items = c.get("/api/unscored").json()
        html = c.get("/").text
    assert items[0]["decision"] == "relabel"
    assert "applied by the export" not in html and "or their decision" not in html


# ---------------------------------------------------------------------------- 1: loopback addresses


def test_cli_and_app_agree_on_loopback():
    for host in ("127.0.0.1", "127.0.0.2", "127.1.2.3", "localhost", "::1", "[::1]", "LOCALHOST"):
        assert _is_loopback(host) and is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.2", "example.com", "127.0.0.1.example.com", "localhost.evil"):
        assert not _is_loopback(host) and not is_loopback(host), host


def test_every_loopback_address_served_without_token_answers(scan):
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.2", 0))
            port = s.getsockname()[1]
    except OSError:
        pytest.skip("127.0.0.2 is not a loopback address here")
    proc = subprocess.Popen([sys.executable, "-m", "labelaudit", "review", str(scan.scan_dir), "--host", "127.0.0.2",
                             "--port", str(port)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                r = httpx.get(f"http://127.0.0.2:{port}/api/stats/progress", timeout=1.0)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert r.status_code == 200
        assert httpx.get(f"http://127.0.0.2:{port}/", timeout=5).status_code == 200
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_the_label_in_force_is_one_rule_for_a_row_and_for_a_column():
    """The pages read label_in_force per sample, the export labels_in_force per column: they must agree."""
    import pandas as pd

    from labelaudit.review.actions import ACTIONS, label_in_force, labels_in_force

    rows = [(a, lab, "cat") for a in (*ACTIONS, None) for lab in (None, "cat", "dog")]
    actions, labels, given = (pd.Series(col, dtype=object) for col in zip(*rows))
    column = labels_in_force(actions, labels, given)
    assert list(column) == [label_in_force(*row) for row in rows]
    assert label_in_force("relabel", "dog", "cat") == "dog" and label_in_force("unsure", None, "cat") == "cat"
    assert label_in_force(None, None, "cat") == "cat" and label_in_force("unusable", None, "cat") == "cat"
