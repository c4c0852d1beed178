"""Server-rendered pages: they render, link up, show the shortcuts and work without JavaScript."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

from webapp_support import make_client
from fakescan import SIGNALS, XSS_CLASS, make_scan

from labelaudit.webapp import shortcuts

#: 11 classes in a made-up order: the 10th ("ten") is key 0, the 11th has no number key.
ELEVEN = tuple((name, name, shape) for name, shape in zip(
    ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven"),
    ("circle", "square", "triangle", "cross", "ring", "diamond", "star", "bars", "circle", "square", "triangle")))


class Collect(HTMLParser):
    """Tags with their attributes, and the text of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> Collect:
    c = Collect()
    c.feed(html)
    return c


def config_of(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="la-config">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


def test_overview_has_pictures_and_links(client, scan):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert html.count("<svg class=\"heatmap\"") == 1 and "<svg class=\"hist\"" in html
    assert "<svg class=\"classbars\"" in html and "<svg class=\"decbar\"" in html
    doc = parse(html)
    hrefs = [a.get("href", "") for t, a in doc.tags if t == "a"]
    # every off-diagonal cell of the noise matrix opens the grid of that pair
    grid_links = [h for h in hrefs if h.startswith("/grid?")]
    k = len(scan.classes)
    assert len([h for h in grid_links if "given=" in h and "suggested=" in h]) >= k * (k - 1)
    pair = parse_qs(urlsplit(grid_links[0]).query)
    assert pair["given"][0] in scan.classes and pair["suggested"][0] in scan.classes
    assert any(h.startswith("/queue?") and "score_min=" in h for h in hrefs)  # histogram bars
    text = " ".join(doc.text)
    assert "Estimated noise rate" in text and "Review progress" in text


def test_overview_counts_the_skipped_files_by_kind(scan):
    """The Flagged card called every skipped row "unreadable": files whose labels-CSV row names no file
    (or a broken link), images in classes too small and other rows were lumped with undecodable ones."""
    from labelaudit.scandir import ScanDir

    files = ScanDir(scan.scan_dir)
    manifest = files.read_manifest()
    s = manifest.summary
    s.n_skipped, s.n_unscored, s.n_dropped_small_classes, s.n_missing_files = 7, 3, 1, 2
    files.write_manifest(manifest)
    with make_client(scan.scan_dir) as c:
        text = " ".join(" ".join(parse(c.get("/").text).text).split())
    assert "7 skipped: 2 unreadable, 2 missing files, 1 in a class too small, 2 other" in text, text


def test_queue_lists_flagged_with_shortcuts(client, scan):
    r = client.get("/queue")
    assert r.status_code == 200
    html = r.text
    flagged = scan.flagged()
    doc = parse(html)
    rows = [a for t, a in doc.tags if t == "li" and "row" in a.get("class", "").split()]
    assert [int(a["data-id"]) for a in rows] == [int(i) for i in flagged.sample_id[:40]]
    # the image is served enlarged, crisp
    imgs = [a for t, a in doc.tags if t == "img" and a.get("src", "").startswith("/api/samples/")]
    assert len(imgs) >= len(rows)
    # the shortcuts are on the page, and the script gets the same key map
    text = " ".join(doc.text)
    for words in ("keep given", "take suggestion", "other class", "unusable", "next / prev", "undo"):
        assert words in text
    cfg = config_of(html)
    assert cfg["keys"]["a"] == "accept" and cfg["keys"]["s"] == "suggested" and cfg["keys"]["z"] == "undo"
    assert cfg["keys"]["x"] == "unusable" and cfg["keys"]["1"] == "class" and cfg["keys"]["j"] == "next"
    assert cfg["keys"]["0"] == "class" and cfg["keys"]["9"] == "class"
    assert cfg["class_keys"] == [[str(k + 1), c] for k, c in enumerate(scan.classes)]  # 4 classes: keys 1-4
    assert cfg["classes"] == scan.classes
    assert 'id="help"' in html and "Keyboard shortcuts" in html


def test_queue_filters_and_infinite_scroll(scan):
    big = make_scan(scan.scan_dir.parent / "more", n_per_class=40, noise=0.6)
    with make_client(big.scan_dir) as c:
        html = c.get("/queue", params={"flagged": "all"}).text
        m = re.search(r'class="sentinel" data-next="([^"]+)"', html)
        assert m, "a full page ends with a sentinel for the next rows"
        nxt = m.group(1).replace("&amp;", "&")
        assert nxt.startswith("/queue/rows?") and "flagged=all" in nxt and "after=40" in nxt
        more = c.get(nxt)
        assert more.status_code == 200 and more.text.count('<li class="row') >= 40
        assert "<html" not in more.text  # a fragment
        # a filter narrows the list and is kept in the links
        html = c.get("/queue", params={"given": "circle", "reviewed": "no"}).text
        ids = re.findall(r'<li class="row[^"]*" id="s-(\d+)"', html)
        assert ids and all(big.scores.given_label[int(i)] == "circle" for i in ids)
        assert 'value="circle" selected' in html
        empty = c.get("/queue", params={"q": "no-such-file"}).text
        assert "Nothing to review here" in empty


def test_grid_defaults_to_the_most_frequent_pair(client, scan):
    pairs = client.get("/api/stats").json()["pairs"]
    html = client.get("/grid").text
    cells = re.findall(r'<li class="cell[^"]*" id="s-(\d+)"', html)
    top = pairs[0]
    df = scan.scores
    expected = df[df.flagged & (df.given_label == top["given"]) & (df.suggested_label == top["suggested"])]
    assert sorted(int(i) for i in cells) == sorted(expected.index)
    assert "Apply to selection" in html
    assert client.get("/grid", params={"all": "1"}).text.count('<li class="cell') == int(df.flagged.sum())
    r = client.get("/grid", params={"pair": "given=circle&suggested=square"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/grid?given=circle&suggested=square"


def test_sample_page(client, scan):
    sid = int(scan.flagged().iloc[1].sample_id)
    html = client.get(f"/samples/{sid}").text
    assert scan.scores.path[sid].split("/")[-1] in html
    for name in SIGNALS:
        assert name in html
    assert "Nearest neighbours" in html and html.count('class="nb-') >= 10
    assert 'rel="next"' in html and 'rel="prev"' in html
    assert '<form class="decide" method="post"' in html
    assert client.get("/samples/999999").status_code == 404


def test_sample_page_without_embeddings(tmp_path):
    scan = make_scan(tmp_path, embeddings=False)
    with make_client(scan.scan_dir) as c:
        assert "stored no embeddings" in c.get("/samples/0").text


def test_form_decision_without_javascript(client, scan):
    sid = int(scan.flagged().iloc[0].sample_id)
    r = client.post(f"/samples/{sid}/decision", data={"action": "relabel", "label": XSS_CLASS, "note": "form",
                                                      "back": "flagged=1"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/samples/{sid}?flagged=1"
    d = client.get(f"/api/samples/{sid}").json()["decision"]
    assert (d["label"], d["note"]) == (XSS_CLASS, "form")
    page = client.get(r.headers["location"]).text
    assert "History" in page and "form" in page
    r = client.post(f"/samples/{sid}/decision", data={"action": "relabel", "label": "nope"})
    assert r.status_code == 422


def test_export_page(client):
    html = client.get("/export").text
    assert 'action="/api/export.csv"' in html and "samples kept" in html


def test_pages_show_decisions(client, scan):
    sid = int(scan.flagged().iloc[0].sample_id)
    client.post("/api/decisions", json={"sample_id": sid, "action": "unusable", "note": "two cats"})
    html = client.get("/queue").text
    row = re.search(rf'<li class="row decided d-unusable" id="s-{sid}".*?(?=<li class="row|</ol>)', html, re.S)
    assert row and "two cats" in row.group(0) and "tester" in row.group(0)
    assert 'data-action="unusable"' in row.group(0)
    cell = re.search(rf'<li class="cell decided d-unusable" id="s-{sid}"', client.get("/grid?all=1").text)
    assert cell
    assert '<b id="prog-reviewed">1</b>' in html


def test_static_files(client):
    assert client.get("/static/app.js").status_code == 200
    css = client.get("/static/app.css").text
    assert "image-rendering: pixelated" in css


def test_number_keys_reach_the_tenth_class_and_are_shown(tmp_path):
    scan = make_scan(tmp_path, classes=ELEVEN, n_per_class=3, noise=0.6)
    classes = scan.classes
    assert shortcuts.keymap("queue")["0"] == "class" and shortcuts.keymap("grid")["0"] == "class"
    assert [r["keys"] for r in shortcuts.help_rows("sample") if r["command"] == "class"] == [["1–9", "0"]]
    with make_client(scan.scan_dir) as c:
        sid = int(scan.flagged().iloc[0].sample_id)
        for url in ("/queue", "/grid?all=1", f"/samples/{sid}"):
            html = c.get(url).text
            cfg = config_of(html)
            keys = dict(cfg["class_keys"])
            assert keys["0"] == "ten" and keys["3"] == "three" and len(keys) == 10 and "eleven" not in keys.values()
            assert cfg["keys"]["0"] == "class"
            # the help lists every class number, 0 included, and says how to reach the 11th
            help_ = re.search(r'<dialog id="help".*?</dialog>', html, re.S).group(0)
            assert "<kbd>0</kbd> ten</li>" in help_ and "<kbd>3</kbd> three</li>" in help_
            assert "1 more classes: press <kbd>C</kbd>" in help_
            assert "<kbd>1–9</kbd><kbd>0</kbd>" in help_
            # the always-visible key bar has the legend "3 = three ... 0 = ten"
            bar = re.search(r'<footer class="keysbar with-classes".*?</footer>', html, re.S).group(0)
            legend = re.findall(r'<kbd>(\w)</kbd><span class="ck-name">(\w+)</span>', bar)
            assert legend == [(str((k + 1) % 10), name) for k, name in enumerate(classes[:10])]
            assert 'title="3 = three"' in bar and "1 more" in bar
        # the sample page's class picker numbers its options the same way
        html = c.get(f"/samples/{sid}").text
        assert ">3 · three</option>" in html and ">0 · ten</option>" in html and ">eleven</option>" in html
        # pages without number keys show no legend
        for url in ("/", "/export"):
            html = c.get(url).text
            assert "classkeys" not in html and "Class numbers" not in html and config_of(html)["keys"].get("0") is None


def test_grid_cells_show_the_labels_the_filters_leave_open(client, scan):
    def labels(html):
        return {int(sid): (re.findall(r'class="cl-given"[^>]*>(.*?)</span>', body),
                           re.findall(r'class="cl-sugg"[^>]*>(.*?)</span>', body))
                for sid, body in re.findall(r'<li class="cell[^"]*" id="s-(\d+)"(.*?)</li>', html, re.S)}

    esc = lambda s: s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # noqa: E731
    df = scan.scores
    # any given, any suggested: both, escaped
    got = labels(client.get("/grid", params={"all": "1"}).text)
    assert got and all(v == ([esc(df.given_label[i])], [esc(df.suggested_label[i])]) for i, v in got.items())
    assert any(XSS_CLASS in (df.given_label[i], df.suggested_label[i]) for i in got)
    # the infinite-scroll fragment too
    frag = labels(client.get("/grid/cells", params={"flagged": "all"}).text)
    assert frag and all(v == ([esc(df.given_label[i])], [esc(df.suggested_label[i])]) for i, v in frag.items())
    pair = client.get("/api/stats").json()["pairs"][0]
    # a pair: every cell has the same labels, shown once in the title instead
    got = labels(client.get("/grid", params={"given": pair["given"], "suggested": pair["suggested"]}).text)
    assert got and all(v == ([], []) for v in got.values())
    # one suggested class, any given: the given label only
    got = labels(client.get("/grid", params={"suggested": pair["suggested"]}).text)
    assert got and all(v == ([esc(df.given_label[i])], []) for i, v in got.items())
    # one given class, any suggested: the suggested label only
    got = labels(client.get("/grid", params={"given": pair["given"]}).text)
    assert got and all(v == ([], [esc(df.suggested_label[i])]) for i, v in got.items())


def test_header_names_the_dataset_folder(client, scan):
    html = client.get("/queue").text
    m = re.search(r'<span class="scan-name" title="([^"]*)"><small>dataset</small> ([^<]*)</span>', html)
    assert m.group(2) == scan.dataset_root.name == "dataset" and scan.scan_dir.name == "scan"
    assert "<a" not in m.group(0)  # a label, not a link
    assert str(scan.scan_dir.resolve()) in m.group(1) and str(scan.dataset_root.resolve()) in m.group(1)
    assert "<title>Queue · labelaudit · dataset</title>" in html


def test_head_on_pages(client, scan):
    sid = int(scan.flagged().iloc[0].sample_id)
    for url in ("/", "/queue", "/queue/rows", "/grid", "/grid/cells", f"/samples/{sid}", "/export"):
        r = client.head(url)
        assert r.status_code == 200, url
        assert r.headers["content-type"].startswith("text/html"), url
        assert r.content == b"", url
    assert client.head("/samples/999999").status_code == 404
    assert client.head("/no-such-page").status_code == 404
