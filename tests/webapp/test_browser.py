"""The review app in a real headless Chromium, driven with the keyboard only.

Skipped when Playwright's Python package or Debian's /usr/bin/chromium is missing.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import httpx
import pandas as pd
import pytest
from click.testing import CliRunner
from webapp_support import CHROMIUM, chromium, free_port, running_server, start_server
from fakescan import XSS_CLASS, make_scan

from labelaudit.cli import main

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)



@pytest.fixture(scope="module")
def browser():
    with chromium(sync_api) as b:
        yield b


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1300, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(10_000)
    problems: list[str] = []
    pg.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    # A download is an aborted navigation, and leaving a page cancels its pending image loads
    # (net::ERR_ABORTED, frequent on a loaded machine): neither is a failure of the app.
    pg.on("requestfailed", lambda r: None if "/api/export.csv" in r.url or "ERR_ABORTED" in (r.failure or "")
          else problems.append(f"request failed: {r.url} {r.failure}"))
    pg.on("dialog", lambda d: (problems.append(f"unexpected dialog: {d.message}"), d.dismiss()))
    pg.problems = problems
    yield pg
    ctx.close()
    assert problems == []


def row_ids(page) -> list[int]:
    return [int(i) for i in page.eval_on_selector_all("#rows .row", "els => els.map(e => e.dataset.id)")]


def row_state(page) -> dict[int, tuple[str, str]]:
    return {int(i): (a, lab) for i, a, lab in page.eval_on_selector_all(
        "#rows .row", "els => els.map(e => [e.dataset.id, e.dataset.action, e.dataset.label])")}


def wait_saved(page, n: int) -> None:
    page.wait_for_function(
        "n => document.querySelectorAll('#rows .row.decided').length >= n"
        " && !document.querySelector('#rows .row.saving')", arg=n)


def test_twenty_keyboard_decisions_survive_reload_kill_and_export(page, big_queue_scan, tmp_path):
    scan = big_queue_scan
    classes = scan.classes
    port = free_port()
    server = start_server(scan.scan_dir, "--reviewer", "kbd", port=port)
    try:
        page.goto(f"{server.url}/queue")
        ids = row_ids(page)
        assert len(ids) >= 21
        assert page.is_visible("text=keep given") and page.is_visible(".keysbar")
        # 20 decisions, keyboard only: (keys, expected action, expected label or None)
        s = scan.scores
        plan = []
        for k in range(20):
            sid = ids[k]
            given, sugg = s.given_label[sid], s.suggested_label[sid]
            kind = k % 6
            if kind == 0:
                plan.append((["a"], "accept", given))
            elif kind == 1:
                plan.append((["s"], "suggested", sugg))
            elif kind == 2:
                plan.append((["x"], "unusable", None))
            elif kind == 3:  # class by number: 4 is the class called <script>alert(1)</script>
                target = classes[3]
                plan.append((["4"], "accept" if target == given else "suggested" if target == sugg else "relabel",
                             target))
            elif kind == 4:  # the class chooser: type to filter, Enter
                target = "square"
                plan.append((["c", "type:squ", "Enter"],
                             "accept" if target == given else "suggested" if target == sugg else "relabel", target))
            else:  # a note, then a decision
                plan.append((["e", "type:two objects", "Enter", "u"], "unusable", None))
        # one extra move: j moves on without deciding, k comes back
        page.keyboard.press("j")
        page.keyboard.press("k")
        for keys, _, _ in plan:
            for key in keys:
                if key.startswith("type:"):
                    page.keyboard.type(key[5:])
                else:
                    page.keyboard.press(key)
        wait_saved(page, 20)
        expected = {ids[k]: (action, label) for k, (_, action, label) in enumerate(plan)}

        def check(state):
            for sid, (action, label) in expected.items():
                assert state[sid] == (action, label or ""), (sid, state[sid], action, label)
            assert all(state[sid][0] == "" for sid in ids[20:])

        check(row_state(page))
        assert page.text_content("#prog-reviewed").strip() == "20"
        # reload: the decisions come back from the database
        page.reload()
        check(row_state(page))
        assert page.text_content("#prog-reviewed").strip() == "20"
        notes = page.eval_on_selector_all("#rows .row", "els => els.map(e => e.dataset.note)")
        assert notes[5] == "two objects"
        # the focus resumes at the first unreviewed sample
        assert page.get_attribute("#rows .row.focused", "data-id") == str(ids[20])
        # z withdraws the last decision; deciding again restores it
        page.keyboard.press("z")
        page.wait_for_function("id => document.getElementById('s-' + id).dataset.action === ''", arg=ids[19])
        assert page.get_attribute("#rows .row.focused", "data-id") == str(ids[19])
        for key in plan[19][0]:
            page.keyboard.press(key)
        wait_saved(page, 20)
        check(row_state(page))

        # SIGKILL the server: a decision made now is shown as not saved, never as saved
        server.kill()
        assert page.get_attribute("#rows .row.focused", "data-id") == str(ids[20])
        page.keyboard.press("a")
        page.wait_for_selector(f"#s-{ids[20]}.unsaved")
        assert page.get_attribute(f"#s-{ids[20]}", "data-action") == ""
        page.wait_for_timeout(150)
        page.problems.clear()  # the refused connection was expected
        # start it again: everything acknowledged is still there
        server = start_server(scan.scan_dir, "--reviewer", "kbd", port=port)
        page.reload()
        check(row_state(page))

        # the web download and `labelaudit export` reflect the decisions
        page.goto(f"{server.url}/export")
        with page.expect_download() as dl:
            page.click("text=Download cleaned_labels.csv")
        web_csv = Path(dl.value.path()).read_text()
        out = tmp_path / "cleaned_labels.csv"
        r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(out)])
        assert r.exit_code == 0, r.output
        assert out.read_text() == web_csv
        df = pd.read_csv(io.StringIO(web_csv), keep_default_na=False).set_index("path")
        for sid, (action, label) in expected.items():
            path = s.path[sid]
            if action == "unusable":
                assert path not in df.index
            else:
                assert df.label[path] == label
        assert len(df) == len(s) - sum(a == "unusable" for a, _ in expected.values())
        assert XSS_CLASS in set(df.label)
        page.goto("about:blank")
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def test_grid_selection_batch_and_undo(page, big_queue_scan):
    scan = big_queue_scan
    with running_server(scan.scan_dir) as server:
        pairs = httpx.get(f"{server.url}/api/stats").json()["pairs"]
        pair = next(p for p in pairs if p["n"] >= 3)
        page.goto(f"{server.url}/grid?" + httpx.QueryParams({"given": pair["given"], "suggested": pair["suggested"]}).__str__())
        cells = page.eval_on_selector_all("#cells .cell", "els => els.map(e => e.dataset.id)")
        assert len(cells) == pair["n"]
        for key in (" ", "ArrowRight", " ", "ArrowRight", " "):
            page.keyboard.press(key)
        assert page.text_content("#selcount") == "3"
        page.keyboard.press("s")
        page.wait_for_function("() => document.querySelectorAll('#cells .cell.decided').length === 3")
        assert page.text_content("#selcount") == "0"
        badges = page.eval_on_selector_all("#cells .cell.decided .cell-badge", "els => els.map(e => e.textContent)")
        assert badges == [pair["suggested"]] * 3
        for sid in cells[:3]:
            d = httpx.get(f"{server.url}/api/samples/{sid}").json()["decision"]
            assert (d["action"], d["label"]) == ("suggested", pair["suggested"])
        # * selects the unreviewed tiles only, * again all of them; x marks them unusable, one z undoes the batch
        page.keyboard.press("*")
        assert page.text_content("#selcount") == str(len(cells) - 3)
        assert page.eval_on_selector_all("#cells .cell.selected.decided", "els => els.length") == 0
        page.keyboard.press("*")
        assert page.text_content("#selcount") == str(len(cells))
        page.keyboard.press("x")
        page.wait_for_function("n => document.querySelectorAll('#cells .cell.d-unusable').length === n", arg=len(cells))
        page.keyboard.press("z")
        page.wait_for_function("() => document.querySelectorAll('#cells .cell.d-unusable').length === 0")
        page.reload()
        states = page.eval_on_selector_all("#cells .cell", "els => els.map(e => e.dataset.action)")
        assert states[:3] == ["suggested"] * 3 and set(states[3:]) <= {""}
        page.goto("about:blank")  # no image still loading when the server stops


def test_sample_page_keys_and_escaping(page, scan):
    sid = int(scan.flagged().iloc[0].sample_id)
    with running_server(scan.scan_dir) as server:
        page.goto(f"{server.url}/samples/{sid}")
        # the class called <script>alert(1)</script> is shown as text (no dialog opens: see fixture)
        assert page.locator(f"text={XSS_CLASS}").count() >= 1
        page.keyboard.press("c")
        page.keyboard.type("script")
        assert page.text_content("#chooser-list li[aria-selected=true] .num") == "4"  # its number key
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.querySelector('article.sample').dataset.action !== ''")
        assert page.get_attribute("article.sample", "data-label") == XSS_CLASS
        assert page.locator(".history li").count() == 1
        # pixel images are scaled up crisp
        rendering = page.eval_on_selector(".sample-image img", "e => getComputedStyle(e).imageRendering")
        assert rendering == "pixelated"
        page.keyboard.press("j")
        page.wait_for_url(lambda u: f"/samples/{sid}" not in u)
        page.keyboard.press("?")
        assert page.is_visible("#help")
        assert os.path.exists(scan.db_path)
        page.goto("about:blank")


def test_key_0_relabels_to_the_tenth_class(page, tmp_path):
    names = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
    shapes = ("circle", "square", "triangle", "cross", "ring", "diamond", "star", "bars", "circle", "square")
    scan = make_scan(tmp_path, classes=tuple(zip(names, names, shapes)), n_per_class=2, noise=0.5)
    sid = next(i for i in scan.scores.index if scan.scores.given_label[i] != "ten" != scan.scores.suggested_label[i])
    with running_server(scan.scan_dir) as server:
        page.goto(f"{server.url}/samples/{sid}")
        assert page.is_visible(".keysbar .classkeys >> text=ten")
        page.keyboard.press("c")  # the chooser numbers the 10th class 0, and typing 0 finds it
        assert page.eval_on_selector_all("#chooser-list .num", "els => els.map(e => e.textContent)") == [
            "1", "2", "3", "4", "5", "6", "7", "8", "9", "0"]
        page.keyboard.press("Escape")
        page.keyboard.press("0")
        page.wait_for_function("() => document.querySelector('article.sample').dataset.label === 'ten'")
        d = httpx.get(f"{server.url}/api/samples/{sid}").json()["decision"]
        assert (d["action"], d["label"]) == ("relabel", "ten")
        page.goto("about:blank")


@pytest.fixture(scope="module")
def demo_scan(tmp_path_factory) -> Path:
    """A real `labelaudit demo` scan (the README's first command), with small training settings."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("demo") / "demo"
    run = subprocess.run([sys.executable, "-m", "labelaudit", "demo", "--out", str(out), "-q",
                          "--folds=3", "--epochs=6", "--width=8", "--batch-size=64"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    return out


def test_bar_fix_twenty_demo_samples_by_keyboard_kill_restart_export(page, demo_scan, tmp_path):
    """The issue's bar on the real demo: 20 flagged samples fixed to their true class with
    number keys alone, the server SIGKILLed and restarted, every fix kept, and exported."""
    scan_dir = demo_scan / "scan"
    truth = pd.read_csv(demo_scan / "truth.csv").set_index("path")
    scores = pd.read_csv(scan_dir / "scores.csv")
    port = free_port()
    server = start_server(scan_dir, "--reviewer", "bar", port=port)
    try:
        key_of = httpx.get(f"{server.url}/api/class-order").json()["keys"]
        assert key_of["four"] == "4" and key_of["zero"] == "0"  # the digits' own numbers (issue 11)
        page.goto(f"{server.url}/queue")
        ids = row_ids(page)[:20]
        assert len(ids) == 20 and all(scores.flagged[i] for i in ids)
        fixes = {sid: truth.true_label[scores.path[sid]] for sid in ids}
        for sid in ids:  # the queue moves on after each decision
            assert page.get_attribute("#rows .row.focused", "data-id") == str(sid)
            page.keyboard.press(key_of[fixes[sid]])
        wait_saved(page, 20)
        server.kill()
        server = start_server(scan_dir, "--reviewer", "bar", port=port)
        page.reload()
        state = row_state(page)
        assert all(state[sid][1] == fixes[sid] for sid in ids), {sid: state[sid] for sid in ids}
        assert page.text_content("#prog-reviewed").strip() == "20"
        out = tmp_path / "cleaned.csv"
        r = CliRunner().invoke(main, ["export", str(scan_dir), "-o", str(out)])
        assert r.exit_code == 0, r.output
        cleaned = pd.read_csv(out, dtype=str).set_index("path")
        for sid, label in fixes.items():
            assert cleaned.label[scores.path[sid]] == label
        untouched = scores.drop(index=ids)
        assert (cleaned.label[untouched.path].to_numpy() == untouched.given_label.to_numpy()).all()
        page.goto("about:blank")
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
