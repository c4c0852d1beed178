"""Regenerate the README screenshots of the review app.

    python docs/screenshots/make_screenshots.py --scan SCAN_DIR [--sample ID] [--dark] [--out docs/screenshots]
    python docs/screenshots/make_screenshots.py [--dark]     # a generated scan of coloured shapes

``--scan`` shoots an existing scan (the README's come from a `labelaudit demo` scan with a
dozen decisions made through the JSON API). The scan is copied to a temporary folder first
(the grid shot presses keys that record a decision), so the scan itself is never written.

Needs Playwright's Python package and Chromium at /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "webapp")]

import uvicorn  # noqa: E402
from fakescan import make_scan  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from labelaudit.review import record_decision  # noqa: E402
from labelaudit.review.database import StatsCache  # noqa: E402
from labelaudit.scandir import database as storage  # noqa: E402
from labelaudit.webapp import create_app, queries  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SHAPES = (("circle", "circle", "circle"), ("square", "square", "square"), ("triangle", "triangle", "triangle"),
          ("cross", "cross", "cross"), ("ring", "ring", "ring"), ("diamond", "diamond", "diamond"),
          ("star", "star", "star"), ("bars", "bars", "bars"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def generated_scan(base: Path) -> Path:
    """A scan of coloured shapes with a few decisions (progress, badges and the decision bar show)."""
    fs = make_scan(base, classes=SHAPES, n_per_class=80, noise=0.08, seed=3,
                   confusions={"ring": ("circle", 0.35), "diamond": ("square", 0.2), "star": ("cross", 0.15)})
    conn = storage.connect(fs.db_path)
    flagged = fs.flagged()
    for k, row in enumerate(flagged.iloc[[0] + list(range(6, 19))].itertuples()):
        if k % 5 == 3:
            record_decision(conn, row.path, "accept", label=row.given_label, reviewer="ada")
        elif k % 7 == 6:
            record_decision(conn, row.path, "unusable", reviewer="ada", note="two objects")
        else:
            record_decision(conn, row.path, "suggested", label=row.suggested_label, reviewer="ada")
    conn.close()
    return fs.scan_dir


def copied_scan(scan: Path, base: Path) -> Path:
    """The database (a consistent copy, WAL included) and small files of ``scan`` under ``base``.

    ``scan.json`` (and its ``dataset_root``) is kept, so the copy shows the scan's own images.
    """
    dest = base / "scan"
    dest.mkdir(parents=True)
    src = sqlite3.connect(f"file:{scan / storage.DB_NAME}?mode=ro", uri=True)
    dst = sqlite3.connect(dest / storage.DB_NAME)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    for name in ("embeddings.npy", "pred_probs.npy", "scan.json", "scores.csv", "skipped.csv", "noise_matrix.csv",
                 "map_2d.npz"):  # the map's projection, when the scan's app has computed it
        if (scan / name).is_file():
            shutil.copy2(scan / name, dest / name)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--scan", type=Path, help="shoot this existing scan directory (default: a generated one)")
    ap.add_argument("--sample", type=int, help="sample id of the sample page (default: the 2nd flagged)")
    ap.add_argument("--grid", help="query string of the grid shot, e.g. 'given=five&suggested=eight' "
                    "(default: the most frequent pair, or the most suggested class when that pair is small)")
    ap.add_argument("--reviewer", default="ada")
    ap.add_argument("--dark", action="store_true")
    ap.add_argument("--extra", action="store_true", help="also the dialogs and the full overview")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="la-shots-"))
    if args.scan is not None:
        if not (args.scan / storage.DB_NAME).is_file():
            ap.error(f"no {storage.DB_NAME} in {args.scan}")
        scan_dir = copied_scan(args.scan.resolve(), base)
    else:
        scan_dir = generated_scan(base)
    conn = storage.connect(scan_dir / storage.DB_NAME)
    try:
        flagged_ids = [r[0] for r in conn.execute(
            "SELECT sample_id FROM samples WHERE flagged = 1 ORDER BY score_rank LIMIT 2")]
        top_pair = queries.pair_counts(conn, StatsCache())[0]
        classes = storage.read_classes(conn)
        if args.grid is None:
            # grid mode opens on the most frequent pair; with many classes that pair is a handful
            # of images, so show the class most often suggested instead (any given label)
            if top_pair["n"] >= 24:
                grid_query = {"given": top_pair["given"], "suggested": top_pair["suggested"]}
            else:
                top_suggested = conn.execute(
                    "SELECT suggested_label FROM samples WHERE flagged = 1 AND suggested_label != given_label "
                    "GROUP BY 1 ORDER BY COUNT(*) DESC, 1 LIMIT 1").fetchone()[0]
                grid_query = {"suggested": top_suggested}
        else:
            grid_query = dict(parse_qsl(args.grid))
    finally:
        conn.close()
    sample_id = args.sample if args.sample is not None else flagged_ids[-1]

    port = free_port()
    app = create_app(scan_dir, reviewer=args.reviewer)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    suffix = "-dark" if args.dark else ""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900}, device_scale_factor=1,
                                color_scheme="dark" if args.dark else "light")
        shots = [
            ("queue", f"{url}/queue", None),
            ("queue-compact", f"{url}/queue", None),
            ("grid", f"{url}/grid?{urlencode(grid_query)}", None),
            ("overview", f"{url}/", None),
            ("sample", f"{url}/samples/{sample_id}", None),
            ("map", f"{url}/map", None),
        ]
        for name, target, _ in shots:
            page.context.add_cookies([{"name": "la_density", "value": "compact" if name == "queue-compact"
                                       else "comfortable", "url": url}])
            page.goto(target)
            page.wait_for_load_state("networkidle")
            if name == "map":  # computed on first use (about 10 s for 100,000 images), then cached
                page.wait_for_selector("#map[data-ready=true]", timeout=300_000)
                box = page.locator("#map").bounding_box()
                page.mouse.move(box["x"] + box["width"] * 0.42, box["y"] + box["height"] * 0.30)
                page.mouse.down()
                page.mouse.move(box["x"] + box["width"] * 0.58, box["y"] + box["height"] * 0.52, steps=4)
                page.mouse.up()
                page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.7)
            if name == "grid":
                page.keyboard.press("s")  # decide the first one, then select three
                page.wait_for_timeout(300)
                for key in (" ", "ArrowRight", " ", "ArrowRight", "ArrowRight", " "):
                    page.keyboard.press(key)
            if name.startswith("queue"):  # the focus starts at the first unreviewed sample
                page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(250)
            out = args.out / f"{name}{suffix}.png"
            if name == "overview":  # down to the end of the noise matrix (10+ classes do not fit in 900 px)
                bottom = page.evaluate(
                    "(() => { const s = document.querySelector('svg.heatmap')?.closest('section'); "
                    "return s ? s.getBoundingClientRect().bottom + window.scrollY : 0; })()")
                height = max(900, min(1700, int(bottom) + 16))
                page.set_viewport_size({"width": 1400, "height": height})
                page.wait_for_timeout(150)
            page.screenshot(path=str(out))
            page.set_viewport_size({"width": 1400, "height": 900})
            print(out, out.stat().st_size // 1024, "KB")
            if args.extra and name == "queue":  # the class chooser and the help, for checking
                page.keyboard.press("c")
                page.keyboard.type(classes[-1][:2])
                page.wait_for_timeout(150)
                page.screenshot(path=str(args.out / f"chooser{suffix}.png"))
                page.keyboard.press("Escape")
                page.keyboard.press("?")
                page.wait_for_timeout(150)
                page.screenshot(path=str(args.out / f"help{suffix}.png"))
                page.keyboard.press("Escape")
            if args.extra and name == "overview":
                page.screenshot(path=str(args.out / f"overview-full{suffix}.png"), full_page=True)
        browser.close()
    server.should_exit = True
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
