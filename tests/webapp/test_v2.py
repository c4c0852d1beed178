"""Review app v2 (issue 11): class order and keys, unsure and tags, reviewers, per-class view,
signal percentiles, the map's projection and selections -- without a browser."""

from __future__ import annotations

import re
import time

import numpy as np

from labelaudit.webapp import charts


def test_histogram_axis_tops_at_or_above_the_tallest_bar():
    bins = [{"lo": 0.0, "hi": 0.5, "n_flagged": 0, "n_unflagged": 79},
            {"lo": 0.5, "hi": 1.0, "n_flagged": 10, "n_unflagged": 50}]
    h = charts.histogram(bins)
    assert h["yticks"][-1]["text"] == "80"  # not 60: the 79-bar would be clipped
    tallest, other = h["bars"][0]["hu"], h["bars"][1]["hu"] + h["bars"][1]["hf"]
    assert tallest <= h["plot_h"] and tallest > other  # the tallest bin looks tallest
    assert [t["text"] for t in charts.histogram([{"lo": 0, "hi": 1, "n_flagged": 1, "n_unflagged": 0}])["yticks"]] == ["0", "1"]


# ---------------------------------------------------------------------------- review domain

import sqlite3  # noqa: E402

import pytest  # noqa: E402

from labelaudit.errors import DecisionError, ReviewSettingsError  # noqa: E402
from labelaudit.export import cleaned_labels, export_summary  # noqa: E402
from labelaudit.review import ReviewDatabase, default_order, parse_class_order, read_class_order  # noqa: E402
from labelaudit.review.tags import all_tags, tags_of  # noqa: E402
from labelaudit.scandir.database import connect  # noqa: E402

OLD_DECISIONS = """CREATE TABLE decisions (
    decision_id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('accept', 'suggested', 'relabel', 'unusable', 'clear')),
    label TEXT, note TEXT NOT NULL DEFAULT '', reviewer TEXT NOT NULL DEFAULT '', decided_at TEXT NOT NULL)"""


def test_older_database_is_migrated_keeping_every_decision(scan):
    path = scan.scores.path[0]
    raw = sqlite3.connect(scan.db_path)
    raw.executescript("DROP VIEW IF EXISTS current_decisions; DROP TABLE decisions;" + OLD_DECISIONS + ";"
                      "DROP TABLE IF EXISTS tag_events; DROP TABLE IF EXISTS review_settings;")
    raw.execute("INSERT INTO decisions VALUES (7, ?, 'accept', ?, 'n', 'old', '2024-01-01T00:00:00+00:00')",
                (path, scan.scores.given_label[0]))
    raw.commit()
    with pytest.raises(sqlite3.IntegrityError):  # the old CHECK refuses the new action
        raw.execute("INSERT INTO decisions VALUES (8, ?, 'unsure', NULL, '', '', 'x')", (path,))
    raw.close()
    review = ReviewDatabase(scan.db_path)
    try:
        review.decide([0], "unsure", reviewer="new")
        with review.reader() as conn:
            rows = [tuple(r) for r in conn.execute("SELECT decision_id, action, reviewer FROM decisions")]
            assert rows == [(7, "accept", "old"), (8, "unsure", "new")]  # ids kept and continued
            assert conn.execute("SELECT COUNT(*) FROM tag_events").fetchone()[0] == 0
        assert review.undo("new")[0]["decision"]["action"] == "accept"
    finally:
        review.close()


def test_unsure_keeps_the_given_label_in_the_export_until_resolved(scan):
    flagged = scan.flagged()
    sid = int(flagged.iloc[0].sample_id)
    given, sugg = flagged.iloc[0].given_label, flagged.iloc[0].suggested_label
    review = ReviewDatabase(scan.db_path)
    try:
        review.decide([sid], "unsure", note="ask Ada", reviewer="bo")
        with review.reader() as conn:
            df = cleaned_labels(conn, full=True, auto_accept_above=0.0).set_index("path")
            row = df.loc[scan.scores.path[sid]]
            assert (row.label, row.decision) == (given, "unsure")  # not even auto-accepted
            summary = export_summary(conn)
            assert summary["n_unsure"] == 1 and summary["n_reviewed"] == 0
        review.decide([sid], "suggested", reviewer="ada")  # the second opinion resolves it
        with review.reader() as conn:
            assert cleaned_labels(conn).set_index("path").label[scan.scores.path[sid]] == sugg
    finally:
        review.close()


def test_undo_is_kept_apart_per_reviewer(scan):
    review = ReviewDatabase(scan.db_path)
    try:
        review.decide([0], "unusable", reviewer="ada")
        review.decide([1], "unsure", reviewer="bo")
        assert [r["sample_id"] for r in review.undo("ada")] == [0]
        assert review.undo("ada") == []  # bo's decision is not ada's to undo
        assert [r["sample_id"] for r in review.undo("bo")] == [1]
    finally:
        review.close()


def test_tags_are_appended_and_cleaned(scan):
    review = ReviewDatabase(scan.db_path)
    try:
        path, tags = review.change_tags(3, add=["Blurry", " two   objects ", "blurry"], reviewer="ada")
        assert tags == ["blurry", "two objects"]
        assert review.change_tags(3, remove=["blurry"], add=["crop"])[1] == ["crop", "two objects"]
        with pytest.raises(DecisionError):
            review.change_tags(3, add=["a,b"])
        with review.reader() as conn:
            assert tags_of(conn, path) == ["crop", "two objects"]
            assert dict(all_tags(conn)) == {"crop": 1, "two objects": 1}
            ops = [r[0] for r in conn.execute("SELECT op FROM tag_events ORDER BY event_id")]
            assert ops == ["add", "add", "add", "remove"]  # nothing updated or deleted
    finally:
        review.close()


DIGITS = ["eight", "five", "four", "nine", "one", "seven", "six", "three", "two", "zero"]  # alphabetical


def test_natural_class_order_and_keys():
    order = default_order(DIGITS)
    assert order.order == ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    assert order.keys["four"] == "4" and order.keys["zero"] == "0" and order.keys["one"] == "1"
    tens = default_order(["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"])
    assert tens.keys["ten"] == "0" and tens.keys["one"] == "1"
    assert default_order(["class_10", "class_2", "class_1"]).order == ("class_1", "class_2", "class_10")
    assert default_order(["dog", "cat"]).order == ("dog", "cat")  # the dataset's own order
    custom = parse_class_order(["cat", "7=dog"], ["dog", "cat", "eel"])
    assert custom.order == ("cat", "dog", "eel") and custom.keys == {"cat": "1", "dog": "7", "eel": "2"}
    for bad in (["cow"], ["cat", "cat"], ["x=cat"], ["1=cat", "1=dog"]):
        with pytest.raises(ReviewSettingsError):
            parse_class_order(bad, ["dog", "cat"])


def test_class_order_is_stored_in_the_scan_database(scan):
    review = ReviewDatabase(scan.db_path)
    try:
        wanted = parse_class_order(["triangle", "5=square"], scan.classes)
        review.set_class_order(wanted, reviewer="ada")
        conn = connect(scan.db_path)
        assert read_class_order(conn, scan.classes) == wanted
        conn.close()
        review.set_class_order(None)
        with review.reader() as conn:
            assert read_class_order(conn, scan.classes) == default_order(scan.classes)
    finally:
        review.close()


def test_selection_is_stored_and_checked(scan):
    review = ReviewDatabase(scan.db_path)
    try:
        sel, n = review.create_selection([5, 3, 3, 9])
        assert n == 3 and len(sel) >= 8
        with pytest.raises(Exception):
            review.create_selection([10_000])
    finally:
        review.close()


# ---------------------------------------------------------------------------- the app's API and pages

from webapp_support import make_client  # noqa: E402

from labelaudit.review.projection import compute_map, load_map  # noqa: E402
from labelaudit.scandir import ScanDir  # noqa: E402


def test_unsure_tags_and_filters_through_the_api(client, scan):
    sid = int(scan.flagged().iloc[0].sample_id)
    r = client.post("/api/decisions", json={"sample_id": sid, "action": "unsure", "note": "ask ada"})
    assert r.json()["recorded"][0]["decision"]["action"] == "unsure"
    r = client.post(f"/api/samples/{sid}/tags", json={"add": ["Blurry", "two objects"]})
    assert r.status_code == 200 and r.json()["tags"] == ["blurry", "two objects"]
    assert client.post(f"/api/samples/{sid}/tags", json={"add": ["a,b"]}).status_code == 422
    assert client.post("/api/samples/999999/tags", json={"add": ["x"]}).status_code == 404
    listed = client.get("/api/samples", params={"tag": "blurry", "with_total": 1}).json()
    assert listed["total"] == 1 and listed["items"][0]["tags"] == ["blurry", "two objects"]
    assert client.get("/api/samples", params={"decision": "unsure", "with_total": 1}).json()["total"] == 1
    assert client.get("/api/stats/progress").json()["n_unsure"] == 1
    html = client.get("/queue", params={"decision": "unsure"}).text
    assert 'data-tags="blurry, two objects"' in html and "b-unsure" in html
    assert '<option value="blurry"' in client.get("/queue").text  # the tag filter lists it


def test_reviewers_each_have_their_name_and_undo(scan):
    a, b = (int(i) for i in scan.flagged().sample_id[:2])
    with make_client(scan.scan_dir) as c:
        c.post("/api/decisions", json={"sample_id": a, "action": "accept"}, headers={"X-Labelaudit-Reviewer": "ada"})
        r = c.post("/reviewer", data={"name": "bo", "back": "/queue"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/queue"
        c.post("/api/decisions", json={"sample_id": b, "action": "unusable"})  # the cookie: bo
        assert 'value="bo"' in c.get("/queue").text
        assert c.post("/api/decisions/undo").json()["undone"][0]["sample_id"] == b  # bo's, not ada's
        assert c.post("/api/decisions/undo").json()["undone"] == []
        who = {r["reviewer"]: r for r in c.get("/api/reviewers").json()}
        assert who["ada"]["n_in_force"] == 1 and who["bo"]["n_in_force"] == 0 and who["bo"]["n_rows"] == 2
        assert "Reviewers" in c.get("/").text
        assert c.post("/reviewer", data={"name": "<x>"}).status_code == 422
        assert c.get("/api/samples", params={"reviewer": "ada", "with_total": 1}).json()["total"] == 1


def test_a_script_header_that_is_no_name_is_refused_not_replaced(scan):
    """An invalid X-Labelaudit-Reviewer stored the decision under the server's reviewer, whose undo then
    withdrew it (and the script's undo the human's): refused with 422, nothing written. UTF-8 names work."""
    a, b = (int(i) for i in scan.flagged().sample_id[:2])
    with make_client(scan.scan_dir) as c:
        for bad in ("<x>", "", "a" * 65):
            r = c.post("/api/decisions", json={"sample_id": a, "action": "accept"}, headers={"X-Labelaudit-Reviewer": bad})
            assert r.status_code == 422 and "reviewer name" in r.json()["detail"], (bad, r.text)
            assert c.post("/api/decisions/undo", headers={"X-Labelaudit-Reviewer": bad}).status_code == 422
        assert c.get("/api/reviewers").json() == []
        for name in ("O'Brien", "José Núñez"):
            r = c.post("/api/decisions", json={"sample_id": b, "action": "unusable"},
                       headers={"X-Labelaudit-Reviewer": name.encode()})  # UTF-8 bytes on the wire
            assert r.status_code == 200, r.text
        assert sorted(r["reviewer"] for r in c.get("/api/reviewers").json()) == ["José Núñez", "O'Brien"]


def test_per_class_quality(client, scan):
    rows = {r["name"]: r for r in client.get("/api/per-class").json()}
    assert set(rows) == set(scan.classes)
    for r in rows.values():
        assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 and r["worst"] in scan.classes
        assert r["worst"] != r["name"] and r["n_reviewed"] == 0
    html = client.get("/").text
    assert "Per class" in html and "worst confused with" in html


def test_class_order_api_and_settings_form(client, scan):
    assert client.get("/api/class-order").json()["order"] == scan.classes  # no numbers: the dataset's order
    r = client.put("/api/class-order", json={"order": ["triangle", "5=circle"]})
    assert r.status_code == 200 and r.json()["keys"]["circle"] == "5"
    assert client.put("/api/class-order", json={"order": ["nope"]}).status_code == 422
    cfg = client.get("/queue").text
    assert '"triangle"' in cfg and '["5", "circle"]' in cfg
    form = {f"pos:{i}": str(len(scan.classes) - i) for i in range(len(scan.classes))}  # reversed
    r = client.post("/settings/classes", data=form, follow_redirects=False)
    assert r.status_code == 303 and "saved" in r.headers["location"]
    assert client.get("/api/class-order").json()["order"] == scan.classes[::-1]
    page = client.get("/settings").text
    assert "position of" in page
    # the form numbers the classes of the scan it was made from: after a re-scan its indexes may name
    # other classes, so a form from before is refused (409, nothing saved) instead of keying the wrong ones
    import json

    sent = re.search(r'name="scan" value="([^"]*)"', page).group(1)
    conn = connect(scan.db_path)
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('created_at', ?)", (json.dumps("2027-01-01T00:00:00+00:00"),))
    conn.close()
    r = client.post("/settings/classes", data={**form, "pos:0": "1", "scan": sent or "an earlier scan"},
                    follow_redirects=False)
    assert r.status_code == 409 and "earlier scan" in r.text
    assert client.get("/api/class-order").json()["order"] == scan.classes[::-1]


def test_signals_read_as_percentiles_and_neighbours_as_ranks(client, scan):
    sid = int(scan.flagged().iloc[0].sample_id)
    html = client.get(f"/samples/{sid}").text
    assert "suspicious than" in html and "% of the scanned images" in html
    assert "#1 · sim" in html and "Labels of the 12 nearest samples" in html


def test_map_is_computed_once_and_cached(client, scan):
    r = client.get("/api/map").json()
    for _ in range(300):
        if r["status"] == "ready":
            break
        time.sleep(0.1)
        r = client.get("/api/map").json()
    assert r["status"] == "ready" and r["n"] == len(scan.scores)
    body = client.get("/api/map/points").content
    n = r["n"]
    assert len(body) == 8 * n + 2 * n + n
    xy = np.frombuffer(body[:8 * n], dtype="<f4").reshape(n, 2)
    assert xy.min() >= 0 and xy.max() <= 1
    flags = np.frombuffer(body[10 * n:], dtype=np.uint8)
    assert (flags & 1).sum() == scan.scores.flagged.sum()
    cached = load_map(ScanDir(scan.scan_dir))
    assert cached is not None and np.allclose(cached.xy, xy)
    sel = client.post("/api/selections", json={"sample_ids": [3, 1, 2]}).json()
    assert sel["n"] == 3 and sel["grid_url"] == f"/grid?selection={sel['selection']}"
    grid = client.get(sel["grid_url"]).text
    assert "Map selection" in grid and len(re.findall(r'<li class="cell', grid)) == 3
    assert client.get("/grid?selection=unknownsel1").status_code == 404
    assert client.post("/api/selections", json={"sample_ids": [10 ** 6]}).status_code == 404


def test_map_of_many_points_fits_a_subset_and_places_the_rest():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (3, 8))
    labels = rng.integers(3, size=900)
    emb = centres[labels] + rng.normal(0, 0.1, (900, 8))
    xy, method = compute_map(emb, fit_max=300)
    assert xy.shape == (900, 2) and "300 samples" in method
    # placed points land with their own cluster: nearest centroid in the map is their class's
    cent = np.stack([xy[labels == k].mean(axis=0) for k in range(3)])
    nearest = np.argmin(((xy[:, None, :] - cent[None]) ** 2).sum(-1), axis=1)
    assert (nearest == labels).mean() > 0.95
