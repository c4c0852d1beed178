"""Review app v2 (issue 11) in a real headless Chromium: class keys in natural order, the
chooser's default, compact rows, the grid's pair keys and the map (selection, 100,000 points).

Skipped when Playwright's Python package or Debian's /usr/bin/chromium is missing.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fakescan import make_big_scan, make_scan
from webapp_support import CHROMIUM, chromium, running_server

from labelaudit.review.projection import write_map
from labelaudit.scandir import ScanDir

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond", "star", "bars", "circle", "square")


@pytest.fixture(scope="module")
def browser():
    with chromium(sync_api) as b:
        yield b


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1300, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(15_000)
    problems: list[str] = []
    pg.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    pg.on("requestfailed", lambda r: None if "ERR_ABORTED" in (r.failure or "")
          else problems.append(f"request failed: {r.url} {r.failure}"))
    pg.on("response", lambda r: problems.append(f"HTTP {r.status} {r.request.method} {r.url}") if r.status >= 400 else None)
    pg.problems = problems
    yield pg
    ctx.close()
    assert problems == []


@pytest.fixture(scope="module")
def digits_scan(tmp_path_factory):
    """Ten classes named zero ... nine, stored in alphabetical order like a folder scan."""
    names = sorted(DIGITS)  # eight, five, four, nine, one, seven, six, three, two, zero
    return make_scan(tmp_path_factory.mktemp("digits"), classes=tuple(zip(names, names, SHAPES)),
                     n_per_class=6, noise=0.5, seed=3)


def test_number_keys_follow_the_numbers_and_the_buttons_show_them(page, digits_scan, tmp_path):
    scan = digits_scan
    with running_server(scan.scan_dir, "--reviewer", "keys") as server:
        page.goto(f"{server.url}/queue")
        assert page.evaluate("scrollY") == 0  # the filters and the count stay in view
        bar = page.eval_on_selector_all(".keysbar .ck", "els => els.map(e => e.textContent.trim())")
        assert bar == [f"{i}{name}" for i, name in enumerate(DIGITS)]  # 0 zero, 1 one, ..., 9 nine
        row = page.locator("#rows .row.focused")
        given, sugg = row.get_attribute("data-given"), row.get_attribute("data-suggested")
        # the number of the given and the suggested class is on the decision buttons
        assert row.locator("[data-cmd=accept] .ckey").text_content() == str(DIGITS.index(given))
        assert row.locator("[data-cmd=suggested] .ckey").text_content() == str(DIGITS.index(sugg))
        # pressing 4 relabels to "four" (not to the 4th class in alphabetical order, "nine")
        sid = int(row.get_attribute("data-id"))
        page.keyboard.press("4")
        page.wait_for_function("id => document.getElementById('s-' + id).dataset.label === 'four'", arg=sid)
        assert httpx.get(f"{server.url}/api/samples/{sid}").json()["decision"]["label"] == "four"
        # the chooser opens on the suggested class of the focused row, not on the first class
        row = page.locator("#rows .row.focused")
        sugg, sid2 = row.get_attribute("data-suggested"), int(row.get_attribute("data-id"))
        page.keyboard.press("c")
        chosen = page.locator("#chooser-list li[aria-selected=true]")
        assert chosen.locator(".name").text_content() == sugg
        assert chosen.locator(".num").text_content() == str(DIGITS.index(sugg))
        page.keyboard.press("Enter")  # Enter takes it
        page.wait_for_function("id => document.getElementById('s-' + id).dataset.action === 'suggested'", arg=sid2)
        # a reviewer's own order and keys (settings panel / API): stored, and the keys follow
        r = httpx.put(f"{server.url}/api/class-order", json={"order": ["7=nine", "eight"]})
        assert r.status_code == 200 and r.json()["keys"]["nine"] == "7"
        page.goto(f"{server.url}/settings")
        assert page.input_value("select[aria-label='key of nine']") == "7"
        page.click("button[value=natural]")
        page.wait_for_url("**/settings?saved=1")
        assert httpx.get(f"{server.url}/api/class-order").json()["keys"]["nine"] == "9"
        page.goto("about:blank")


def test_compact_rows_are_remembered(page, digits_scan):
    with running_server(digits_scan.scan_dir) as server:
        page.goto(f"{server.url}/queue")
        tall = page.eval_on_selector("#rows .row", "e => e.getBoundingClientRect().height")
        page.click("[data-density=compact]")
        short = page.eval_on_selector("#rows .row", "e => e.getBoundingClientRect().height")
        assert short <= 90 < 200 <= tall, (short, tall)
        # image, labels, score, top-3 and buttons on one line
        tops = page.eval_on_selector("#rows .row", """r => ['.row-img', '.labels', '.score', '.topk', '[data-cmd=accept]']
            .map(s => r.querySelector(s).getBoundingClientRect()).map(b => b.top + b.height / 2)""")
        assert max(tops) - min(tops) < 12, tops
        visible = page.evaluate("""() => [...document.querySelectorAll('#rows .row')]
            .filter(r => r.getBoundingClientRect().bottom <= innerHeight).length""")
        assert visible >= 8  # ~3.5 in the comfortable mode
        page.reload()  # remembered (cookie), rendered so by the server: no jump after load
        assert "compact" in page.get_attribute("#rows", "class")
        before = page.eval_on_selector_all("#rows .row.decided", "els => els.length")
        page.keyboard.press("j")
        page.keyboard.press("a")
        page.wait_for_function("n => document.querySelectorAll('#rows .row.decided').length === n + 1", arg=before)
        page.click("[data-density=comfortable]")
        page.reload()
        assert "compact" not in page.get_attribute("#rows", "class")
        page.goto("about:blank")


def test_grid_pair_keys_and_counts(page, digits_scan):
    with running_server(digits_scan.scan_dir) as server:
        pairs = httpx.get(f"{server.url}/api/pairs").json()
        assert len(pairs) >= 2
        page.goto(f"{server.url}/grid")
        assert page.input_value("#pair-select") == httpx.QueryParams(
            {"given": pairs[0]["given"], "suggested": pairs[0]["suggested"]}).__str__()
        # nothing covers the thumbnails: labels and score sit below the image
        img = page.eval_on_selector("#cells .cell img", "e => e.getBoundingClientRect().bottom")
        cap = page.eval_on_selector("#cells .cell .cell-cap", "e => e.getBoundingClientRect().top")
        assert cap >= img - 1
        # a small pair fills the screen
        side = page.eval_on_selector("#cells .cell .cell-img", "e => e.getBoundingClientRect().width")
        assert side >= 200 if pairs[0]["n"] <= 6 else side >= 110
        # S decides the focused tile; the pair menu's count follows without a reload
        page.keyboard.press("s")
        page.wait_for_function("() => document.querySelectorAll('#cells .cell.decided').length === 1")
        page.wait_for_function(
            "t => document.querySelector('#pair-select').selectedOptions[0].textContent.includes(t)",
            arg=f"(1/{pairs[0]['n']})")
        # N: the next pair, P: back
        page.keyboard.press("n")
        page.wait_for_function(
            "v => document.querySelector('#pair-select') && document.querySelector('#pair-select').value === v",
            arg=str(httpx.QueryParams({"given": pairs[1]["given"], "suggested": pairs[1]["suggested"]})))
        page.keyboard.press("p")
        page.wait_for_function(
            "v => document.querySelector('#pair-select') && document.querySelector('#pair-select').value === v",
            arg=str(httpx.QueryParams({"given": pairs[0]["given"], "suggested": pairs[0]["suggested"]})))
        page.goto("about:blank")


def _drag_box(page, x0, y0, x1, y1) -> None:
    box = page.locator("#map").bounding_box()
    page.mouse.move(box["x"] + x0, box["y"] + y0)
    page.mouse.down()
    page.mouse.move(box["x"] + (x0 + x1) / 2, box["y"] + (y0 + y1) / 2, steps=3)
    page.mouse.move(box["x"] + x1, box["y"] + y1, steps=3)
    page.mouse.up()


def test_map_box_selection_opens_the_grid(page, digits_scan):
    with running_server(digits_scan.scan_dir) as server:
        page.goto(f"{server.url}/map")  # computed on first use (t-SNE of 60 points), then cached
        page.wait_for_selector("#map[data-ready=true]", timeout=60_000)
        assert ScanDir(digits_scan.scan_dir).map.is_file()
        w, h = page.eval_on_selector("#map", "e => [e.clientWidth, e.clientHeight]")
        _drag_box(page, 5, 5, w - 5, h / 2)
        n = int(page.text_content("#map-selcount"))
        expected = page.evaluate("""() => { const s = window.__labelauditMap; let k = 0;
            for (let i = 0; i < s.n; i += 1) k += s.selected ? s.selected[i] : 0; return k; }""")
        assert 0 < n == expected < len(digits_scan.scores)
        ids = page.evaluate("""() => { const s = window.__labelauditMap; const out = [];
            for (let i = 0; i < s.n; i += 1) if (s.selected[i]) out.push(i); return out; }""")
        # the thumbnail of the point under the cursor
        i = ids[0]
        x, y = page.evaluate("i => { const s = window.__labelauditMap; return [s.xy[2*i], s.xy[2*i+1]]; }", i)
        canvas = page.locator("#map").bounding_box()
        side = min(w, h) - 28
        page.mouse.move(canvas["x"] + (w - side) / 2 + x * side, canvas["y"] + (h - side) / 2 + y * side)
        page.wait_for_selector("#map-tip:not([hidden])")
        assert "/thumbnail" in page.get_attribute("#map-tip-img", "src")
        page.keyboard.press("Enter")
        page.wait_for_url("**/grid?selection=*")
        cells = page.eval_on_selector_all("#cells .cell", "els => els.map(e => Number(e.dataset.id))")
        assert sorted(cells) == sorted(ids)  # flagged or not: the selection, all of it
        assert "Map selection" in page.text_content("h1.pairtitle")
        page.goto("about:blank")


@pytest.fixture(scope="module")
def map_100k(tmp_path_factory) -> Path:
    """100,000 samples (no images) with a cached map of ten clusters: built in seconds."""
    scan_dir = make_big_scan(tmp_path_factory.mktemp("map100k"))
    layout = ScanDir(scan_dir)
    rng = np.random.default_rng(0)
    n = 100_000
    centres = rng.random((10, 2))
    xy = centres[rng.integers(10, size=n)] + rng.normal(0, 0.04, (n, 2))
    np.save(layout.embeddings, xy.astype(np.float16))
    write_map(layout, ((xy - xy.min(0)) / np.ptp(xy, 0)).astype(np.float32), "test clusters", 0.0)
    return scan_dir


def test_map_stays_responsive_at_100k_points(page, map_100k):
    with running_server(map_100k) as server:
        t0 = time.perf_counter()
        page.goto(f"{server.url}/map")
        page.wait_for_selector("#map[data-ready=true]", timeout=30_000)
        load_s = time.perf_counter() - t0
        assert page.evaluate("window.__labelauditMap.n") == 100_000
        # zoom in and out, pan: every redraw of 100,000 points is one frame's work
        box = page.locator("#map").bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        for dy in (-300, -300, 300, 300, -200):
            page.mouse.wheel(0, dy)
            page.wait_for_timeout(30)
        page.keyboard.down("Shift")
        _drag_box(page, 100, 100, 300, 250)
        page.keyboard.up("Shift")
        page.keyboard.press("r")
        page.wait_for_timeout(100)
        draws = page.evaluate("window.__labelauditMap.drawMs")
        assert len(draws) >= 5
        # a box: selection of tens of thousands of points, stored as one short selection id
        w, h = page.eval_on_selector("#map", "e => [e.clientWidth, e.clientHeight]")
        _drag_box(page, 2, 2, w - 2, h - 2)
        n = int(page.text_content("#map-selcount").replace(",", ""))
        assert n == 100_000
        opened: list[str] = []  # the grid's URL (not loaded: this scan has no images)
        page.route("**/grid?*", lambda route: (opened.append(route.request.url),
                                               route.fulfill(body="grid", content_type="text/plain")))
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.body.textContent === 'grid'")
        selection = httpx.URL(opened[0]).params["selection"]
        assert len(selection) < 40  # the ids went in the POST body, the URL carries a short id
        total = httpx.get(f"{server.url}/api/samples", params={"selection": selection, "with_total": 1,
                                                               "limit": 1}).json()["total"]
        assert total == 100_000
        page.goto("about:blank")
        # hovering a point asks for its thumbnail, which this image-less scan answers with 404
        page.problems[:] = [p for p in page.problems if "/thumbnail" not in p and "404" not in p]
    median = sorted(draws)[len(draws) // 2]
    print(f"map at 100,000 points: load {load_s:.2f} s, redraw median {median:.1f} ms, max {max(draws):.1f} ms")
    assert load_s < 10 and median < 100, (load_s, draws)
