"""Several annotators per image (issue 10) in a real headless Chromium: the votes on the queue and the
sample page, the "annotators disagree" filter, and the way from an annotator's page to their disputed images.

Skipped when Playwright's Python package or Debian's /usr/bin/chromium is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fakescan import ANNOTATORS, add_annotations, make_scan
from webapp_support import CHROMIUM, chromium, running_server

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)


def test_votes_are_shown_and_lead_to_the_disputed_images(tmp_path):
    scan = make_scan(tmp_path, n_per_class=8, seed=2)
    votes = add_annotations(scan)
    problems: list[str] = []
    with running_server(scan.scan_dir, "--reviewer", "votes") as server, chromium(sync_api) as browser:
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on("response", lambda r: problems.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)

        # the sample page: one chip per annotator, the dissenting vote marked
        page.goto(f"{server.url}/samples/1")
        chips = page.locator(".sample-side .votes .vote")
        assert chips.count() == 3
        assert chips.evaluate_all("els => els.map(e => e.dataset.annotator)") == list(ANNOTATORS)
        dissent = page.locator(".sample-side .vote.disagree")
        assert dissent.count() == 1 and dissent.get_attribute("data-annotator") == "cy"
        colours = dissent.evaluate("e => getComputedStyle(e).backgroundColor"), \
            page.locator(".sample-side .vote.agree").first.evaluate("e => getComputedStyle(e).backgroundColor")
        assert colours[0] != colours[1]  # a dissenting vote looks different
        assert dissent.is_visible()

        # the queue filtered on "annotators disagree": every row shows a dissenting vote
        page.goto(f"{server.url}/queue?flagged=all")
        page.select_option("select[name=disagree]", "1")
        page.click(".filters button[type=submit]")
        page.wait_for_url("**disagree=1**")
        rows = page.locator("#rows .row")
        assert rows.count() > 0
        for i in range(rows.count()):
            assert rows.nth(i).locator(".vote.disagree").count() >= 1

        # annotators' page -> cy -> their disputed images
        page.goto(f"{server.url}/annotators")
        page.click("a[href='/annotators/cy']")
        assert page.locator("svg.heatmap rect.hm-cell").count() == len(scan.classes) ** 2
        page.click("a.disputed-link")
        page.wait_for_url("**outvoted=1**")
        shown = page.locator("#rows .row .vote.disagree[data-annotator=cy]")
        expected = votes.merge(scan.scores[["path", "given_label"]], on="path")
        n_disputed = int(((expected.annotator == "cy") & (expected.label != expected.given_label)).sum())
        assert shown.count() == min(n_disputed, 40)  # first page of the queue
    assert problems == []
