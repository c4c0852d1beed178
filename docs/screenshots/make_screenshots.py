"""Regenerate the README screenshots of the review app from a generated scan.

    python docs/screenshots/make_screenshots.py [--dark] [--out docs/screenshots]

Needs Playwright's Python package and Chromium at /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "webapp")]

import uvicorn  # noqa: E402
from fakescan import make_scan  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from labelaudit import storage  # noqa: E402
from webapp import create_app  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SHAPES = (("circle", "circle", "circle"), ("square", "square", "square"), ("triangle", "triangle", "triangle"),
          ("cross", "cross", "cross"), ("ring", "ring", "ring"), ("diamond", "diamond", "diamond"),
          ("star", "star", "star"), ("bars", "bars", "bars"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--dark", action="store_true")
    ap.add_argument("--extra", action="store_true", help="also the dialogs and the full overview")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="la-shots-"))
    fs = make_scan(base, classes=SHAPES, n_per_class=80, noise=0.08, seed=3,
                   confusions={"ring": ("circle", 0.35), "diamond": ("square", 0.2), "star": ("cross", 0.15)})
    # a few decisions so that progress, badges and the decision bar show something
    conn = storage.connect(fs.db_path)
    flagged = fs.flagged()
    for k, row in enumerate(flagged.iloc[[0] + list(range(6, 19))].itertuples()):
        if k % 5 == 3:
            storage.record_decision(conn, row.path, "accept", label=row.given_label, reviewer="ada")
        elif k % 7 == 6:
            storage.record_decision(conn, row.path, "unusable", reviewer="ada", note="two objects")
        else:
            storage.record_decision(conn, row.path, "suggested", label=row.suggested_label, reviewer="ada")
    conn.close()

    port = free_port()
    app = create_app(fs.scan_dir, reviewer="ada")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    suffix = "-dark" if args.dark else ""
    top_pair = (flagged.groupby(["given_label", "suggested_label"]).size().sort_values().index[-1])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900}, device_scale_factor=1,
                                color_scheme="dark" if args.dark else "light")
        shots = [
            ("queue", f"{url}/queue", None),
            ("grid", f"{url}/grid?given={top_pair[0]}&suggested={top_pair[1]}", None),
            ("overview", f"{url}/", None),
            ("sample", f"{url}/samples/{int(flagged.iloc[1].sample_id)}", None),
        ]
        for name, target, _ in shots:
            page.goto(target)
            page.wait_for_load_state("networkidle")
            if name == "grid":
                page.keyboard.press("s")  # decide the first one, then select three
                page.wait_for_timeout(300)
                for key in (" ", "ArrowRight", " ", "ArrowRight", "ArrowRight", " "):
                    page.keyboard.press(key)
            if name == "queue":  # the focus starts at the first unreviewed sample (the 2nd)
                page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(250)
            out = args.out / f"{name}{suffix}.png"
            page.screenshot(path=str(out))
            print(out, out.stat().st_size // 1024, "KB")
            if args.extra and name == "queue":  # the class chooser and the help, for checking
                page.keyboard.press("c")
                page.keyboard.type("ri")
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


if __name__ == "__main__":
    main()
