"""Several annotators per image in the review app (issue 10): votes, filters, annotator pages, export."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from fakescan import ANNOTATORS, add_annotations
from webapp_support import make_client

from labelaudit.export import cleaned_labels
from labelaudit.scandir import ScanDir
from labelaudit.scandir import database as storage


@pytest.fixture
def crowd(scan):
    votes = add_annotations(scan)
    with make_client(scan.scan_dir) as client:
        yield scan, votes, client


def _all(client, **params):
    return client.get("/api/samples", params={"limit": 500, **params}).json()["items"]


def test_every_sample_carries_its_votes_in_order(crowd):
    scan, votes, client = crowd
    first = client.get("/api/samples/0").json()
    assert [(v["annotator"], v["label"], v["agrees"]) for v in first["votes"]] == [
        (name, scan.scores.given_label[0], True) for name in ANNOTATORS]
    second = client.get("/api/samples/1").json()
    assert [v["agrees"] for v in second["votes"]] == [True, True, False]
    listed = {it["path"]: it["votes"] for it in _all(client)}
    counts = votes.groupby("path").size()
    assert all(len(listed[p]) == counts[p] for p in listed)


def test_disagree_filter_splits_disputed_from_unanimous(crowd):
    scan, votes, client = crowd
    disputed, unanimous = _all(client, disagree="1"), _all(client, disagree="0")
    assert len(disputed) + len(unanimous) == len(scan.scores)
    assert all(not all(v["agrees"] for v in it["votes"]) for it in disputed)
    assert all(all(v["agrees"] for v in it["votes"]) for it in unanimous)
    assert 1 in {it["sample_id"] for it in disputed} and 0 in {it["sample_id"] for it in unanimous}
    total = client.get("/api/samples", params={"disagree": "yes", "with_total": "true"}).json()["total"]
    assert total == len(disputed)


def test_annotator_filters(crowd):
    scan, votes, client = crowd
    by_cy = _all(client, annotator="cy")
    assert {it["path"] for it in by_cy} == set(votes.path[votes.annotator == "cy"])
    outvoted = _all(client, annotator="cy", outvoted="1")
    assert outvoted and all(not next(v for v in it["votes"] if v["annotator"] == "cy")["agrees"] for it in outvoted)
    label = scan.classes[0]
    said = _all(client, annotator="cy", vote=label)
    assert all(next(v for v in it["votes"] if v["annotator"] == "cy")["label"] == label for it in said)


def test_queue_and_sample_pages_show_the_votes_and_the_filters(crowd):
    scan, votes, client = crowd
    page = client.get("/samples/1")
    assert page.status_code == 200
    assert page.text.count('class="vote agree"') == 2 and page.text.count('class="vote disagree"') == 1
    assert "votes 2/3" in page.text
    queue = client.get("/queue", params={"flagged": "all", "disagree": "1"})
    assert queue.status_code == 200 and 'class="vote disagree"' in queue.text
    assert 'name="disagree"' in queue.text and 'name="annotator"' in queue.text
    assert '<option value="cy"' in queue.text
    assert 'href="/annotators"' in queue.text  # the navigation links the annotators' page


def test_annotators_page_lists_quality_and_links_disputed_images(crowd):
    scan, votes, client = crowd
    page = client.get("/annotators")
    assert page.status_code == 200
    order = [name for name in ("ana", "ben", "cy") if f'data-annotator="{name}"' in page.text]
    assert order == ["ana", "ben", "cy"]
    assert page.text.index('data-annotator="cy"') < page.text.index('data-annotator="ana"')  # worst first
    assert "/queue?annotator=cy&amp;outvoted=1&amp;flagged=all" in page.text


def test_annotator_page_draws_the_confusion_heatmap_with_links(crowd):
    scan, votes, client = crowd
    page = client.get("/annotators/cy")
    assert page.status_code == 200
    assert 'aria-label="confusion matrix of cy"' in page.text
    assert page.text.count('class="hm-cell') == len(scan.classes) ** 2
    assert "outvoted=1" in page.text and "vote=" in page.text  # cells link to those images
    assert client.get("/annotators/nobody").status_code == 404


def test_single_label_scan_has_no_annotator_ui(client):
    queue = client.get("/queue")
    assert 'name="disagree"' not in queue.text and 'href="/annotators"' not in queue.text
    assert "one label per image" in client.get("/annotators").text
    assert client.get("/api/samples/0").json()["votes"] == []


def test_decision_overrides_the_consensus_and_full_export_has_the_votes(crowd):
    scan, votes, client = crowd
    given = scan.scores.given_label[1]
    other = next(c for c in scan.classes if c != given)
    r = client.post("/api/decisions", json={"sample_id": 1, "action": "relabel", "label": other})
    assert r.status_code in (200, 201)
    csv = client.get("/api/export.csv", params={"full": "true"}).text
    table = pd.read_csv(io.StringIO(csv), dtype=str, keep_default_na=False).set_index("path")
    row = table.loc[scan.scores.path[1]]
    assert row.label == other and row.consensus_label == given and row.decision == "relabel"
    assert row.n_annotations == "3" and abs(float(row.agreement) - 2 / 3) < 1e-9
    assert json.loads(row.votes) == {"ana": given, "ben": given, "cy": other}
    plain = client.get("/api/export.csv").text.splitlines()[0]
    assert plain == "path,label"


def test_full_export_without_votes_has_no_vote_columns(scan):
    conn = storage.connect(ScanDir(scan.scan_dir).database)
    try:
        assert "votes" not in cleaned_labels(conn, full=True).columns
    finally:
        conn.close()


def test_overview_counts_the_disputed_images(crowd):
    scan, votes, client = crowd
    page = client.get("/")
    assert page.status_code == 200 and "Annotators disagree" in page.text
    assert 'href="/queue?disagree=1&amp;flagged=all"' in page.text
