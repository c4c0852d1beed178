"""Review-app benchmark: page queries, counts, API, overview and export on a 100,000-sample scan.

Builds a synthetic scan once (the generator of the web tests, ``tests/webapp/fakescan.py``:
100,000 samples over 10 classes, 80 % flagged, 20,000 decisions of which 3,000 ``unusable``;
no images) under ``--work`` and reuses it on later runs. Then times, best of ``--repeat``:

* ``queries_ms``: one 50-row page of ``labelaudit.webapp.queries.list_samples`` per filter/cursor case
  (the cases of ``tests/webapp/test_api.py``), and ``count:*`` the counts shown above lists;
* ``api_page_ms``: ``GET /api/samples?flagged=1&after=<70 %>&limit=50`` through the ASGI
  test client (routing, validation, JSON);
* ``overview_first_ms``: ``GET /`` of a freshly created app (statistics computed), and
  ``overview_cached_ms``: the same page again (statistics cached until the next decision);
* ``export_ms``: ``labelaudit export -o cleaned.csv``'s work (cleaned labels of every
  sample, written as CSV), ``export_full_ms`` with ``--full``;
* the map (synthetic 128-d embeddings, clustered by class): ``map_compute_s``, the one-off
  projection (:func:`labelaudit.review.projection.compute_map`, cached in the scan folder);
  ``map_points_ms``, ``GET /api/map/points`` (1.3 MB for 100,000 points); and, when Playwright
  and /usr/bin/chromium are there, ``map_browser``: ``load_ms`` from navigating to ``/map`` until
  every point is drawn (best of ``--repeat``), and ``redraw_ms`` (median and max of a
  zoom/pan redraw of all points).

Prints one JSON line. Example (the figures in the README)::

    python benchmarks/review.py
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import shlex
import shutil
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's labelaudit and webapp, whatever the working directory

from labelaudit.errors import LabelauditError  # noqa: E402
from labelaudit.scandir import database as storage  # noqa: E402


def load_fakescan():
    """``tests/webapp/fakescan.py`` imported by path (the tests' generator, not a package)."""
    path = REPO / "tests" / "webapp" / "fakescan.py"
    spec = importlib.util.spec_from_file_location("labelaudit_bench_fakescan", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("bench-out") / "review",
                   help="where the synthetic scan is built and reused (default: ./bench-out/review)")
    p.add_argument("--n", type=int, default=100_000, help="number of samples (at least 20,000)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per figure (the best is reported)")
    p.add_argument("--rebuild", action="store_true", help="build the scan again even if one exists")
    return p.parse_args(argv)


def n_samples(db: Path) -> int | None:
    if not db.is_file():
        return None
    try:
        conn = storage.connect(db, read_only=True)
        try:
            return conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        finally:
            conn.close()
    except (sqlite3.Error, LabelauditError):  # damaged, locked: built again
        return None


def build_scan(work: Path, n: int, rebuild: bool) -> tuple[Path, float | None]:
    """The scan directory (built unless a matching one exists) and the build time in s."""
    from labelaudit.scandir import ScanDir
    from labelaudit.scandir import database as storage

    scan_dir = work / "bigscan"
    db = scan_dir / storage.DB_NAME
    if not rebuild and n_samples(db) == n:
        return scan_dir, None
    if scan_dir.exists():
        shutil.rmtree(scan_dir)
    started = time.perf_counter()
    scan_dir = load_fakescan().make_big_scan(work, n=n)
    # a noise matrix and a full summary in scan.json, as a real scan writes them, so the overview
    # draws everything
    layout = ScanDir(scan_dir)
    manifest = layout.read_manifest()
    rng = np.random.default_rng(0)
    k = len(manifest.classes)
    matrix = np.eye(k) * 8 + rng.random((k, k))
    manifest.noise_matrix = (matrix / matrix.sum(axis=0, keepdims=True)).tolist()
    manifest.summary.estimated_noise_rate = 0.2
    layout.write_manifest(manifest)
    conn = storage.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return scan_dir, time.perf_counter() - started


def ensure_map(scan_dir: Path, rebuild: bool) -> float:
    """Embeddings (clustered by given class) and the cached map of the scan; the projection's seconds."""
    from labelaudit.review.projection import compute_map, load_map, write_map
    from labelaudit.scandir import ScanDir

    layout = ScanDir(scan_dir)
    cached = None if rebuild or not layout.embeddings.is_file() else load_map(layout)
    if cached is not None:
        return cached.seconds
    conn = storage.connect(layout.database, read_only=True)
    try:
        given = [r[0] for r in conn.execute("SELECT given_label FROM samples ORDER BY sample_id")]
    finally:
        conn.close()
    names = sorted(set(given))
    codes = np.array([names.index(g) for g in given])
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (len(names), 128))
    emb = np.abs(centres[codes] + rng.normal(0, 0.9, (len(codes), 128))).astype(np.float16)  # ReLU-like
    np.save(layout.embeddings, emb)
    t = time.perf_counter()
    xy, method = compute_map(emb)
    seconds = time.perf_counter() - t
    write_map(layout, xy, method, seconds)
    return seconds


def browser_map(scan_dir: Path, repeat: int) -> dict | None:
    """Load time of ``/map`` in headless Chromium and its redraw times (None without a browser)."""
    chromium = Path("/usr/bin/chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not chromium.exists():
        return None
    import socket
    import threading

    import uvicorn

    from labelaudit.webapp import create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(scan_dir, reviewer="bench"), host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"]
    loads, draws = [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(chromium), args=args)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            for _ in range(max(1, repeat)):
                t = time.perf_counter()
                page.goto(f"http://127.0.0.1:{port}/map")
                page.wait_for_selector("#map[data-ready=true]", timeout=120_000)
                loads.append(time.perf_counter() - t)
            box = page.locator("#map").bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            for dy in (-300, -300, 300, 300, -200, 200) * 2:
                page.mouse.wheel(0, dy)
                page.wait_for_timeout(40)
            draws = page.evaluate("window.__labelauditMap.drawMs")
            browser.close()
    finally:
        server.should_exit = True
    draws = sorted(draws)
    return {"load_ms": round(min(loads) * 1000, 1), "redraw_ms_median": round(draws[len(draws) // 2], 1),
            "redraw_ms_max": round(draws[-1], 1), "n_redraws": len(draws)}


def best_ms(fn, repeat: int) -> float:
    fn()  # warm-up (page cache, imports, compiled statements)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return round(best * 1000, 2)


def page_cases(n: int) -> dict:
    from labelaudit.webapp.schemas import SampleFilters as F

    def at(share: float) -> str:
        return str(int(n * share))

    return {
        "flagged, first page": (F(flagged="1"), None),
        "flagged, deep": (F(flagged="1"), at(0.79)),
        "all samples, deep (merged halves)": (F(), at(0.99)),
        "one class, deep": (F(given="class_03", flagged="1"), at(0.75)),
        "pair": (F(given="class_03", suggested="class_05"), at(0.5)),
        "unreviewed, deep": (F(flagged="1", reviewed="no"), at(0.6)),
        "reviewed": (F(reviewed="yes"), at(0.6)),
        "by path, deep": (F(sort="path"), f"class_07/img_{int(n * 0.9):06d}.png"),
        "score ascending, deep": (F(sort="score_asc", flagged="1"), at(0.01)),
    }


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"platform": platform.platform(), "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "cpu": cpu, "cpu_count": os.cpu_count()}
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return info


def main(argv=None) -> dict:
    args = parse_args(argv)
    command = " ".join(["python", "benchmarks/review.py", *(shlex.quote(a) for a in (argv or sys.argv[1:]))])
    if args.n < 20_000:
        raise SystemExit("--n must be at least 20,000 (the generator records 20,000 decisions)")
    from fastapi.testclient import TestClient

    from labelaudit.scandir import database as storage
    from labelaudit.export import cleaned_labels, write_cleaned_labels
    from labelaudit.review import ReviewDatabase
    from labelaudit.webapp import create_app, queries
    from labelaudit.webapp.schemas import SampleFilters as F

    scan_dir, build_s = build_scan(args.work.resolve(), args.n, args.rebuild)
    db = scan_dir / storage.DB_NAME
    r = args.repeat

    # the queries, on a pooled connection configured as the app configures it
    review = ReviewDatabase(db)
    conn = review.pool.acquire()
    n_flagged = queries.count_samples(conn, F(flagged="1"))
    n_decided = queries.count_samples(conn, F(reviewed="yes"))
    queries_ms = {}
    for name, (f, after) in page_cases(args.n).items():
        assert len(queries.list_samples(conn, f, after=after, limit=50).items) == 50, name
        queries_ms[name] = best_ms(lambda f=f, after=after: queries.list_samples(conn, f, after=after, limit=50), r)
    for name, f in {"flagged": F(flagged="1"), "flagged, unreviewed": F(flagged="1", reviewed="no"),
                    "unusable": F(decision="unusable")}.items():
        queries_ms[f"count: {name}"] = best_ms(lambda f=f: queries.count_samples(conn, f), r)
    review.pool.release(conn)
    review.close()

    # the JSON API page
    after = str(int(args.n * 0.7))
    with TestClient(create_app(scan_dir, reviewer="bench"), base_url="http://127.0.0.1:8000") as c:
        def api_page():
            resp = c.get("/api/samples", params={"flagged": "1", "after": after, "limit": 50})
            assert resp.status_code == 200 and len(resp.json()["items"]) == 50
        api_page_ms = best_ms(api_page, r)

    # the overview: first load of a fresh app (statistics computed), then cached
    first, cached = [], []
    for _ in range(max(2, r // 2)):
        # a new app: a new, empty statistics cache
        with TestClient(create_app(scan_dir, reviewer="bench"), base_url="http://127.0.0.1:8000") as c:
            t = time.perf_counter()
            assert c.get("/").status_code == 200
            first.append(time.perf_counter() - t)
            for _ in range(r):
                t = time.perf_counter()
                assert c.get("/").status_code == 200
                cached.append(time.perf_counter() - t)

    # the export (what `labelaudit export -o cleaned.csv [--full]` does)
    out_dir = args.work.resolve() / "export"
    out_dir.mkdir(parents=True, exist_ok=True)
    conn = storage.connect(db, read_only=True)

    def export(full=False):
        df = cleaned_labels(conn, full=full)
        write_cleaned_labels(df, out_dir / ("cleaned_full.csv" if full else "cleaned.csv"), force=True)

    export_ms = best_ms(export, r)
    export_full_ms = best_ms(lambda: export(full=True), r)
    n_rows = len(cleaned_labels(conn))
    conn.close()

    # the map: the one-off projection (cached), the points endpoint, the page in a browser
    map_compute_s = ensure_map(scan_dir, args.rebuild)
    with TestClient(create_app(scan_dir, reviewer="bench"), base_url="http://127.0.0.1:8000") as c:
        assert c.get("/api/map").json()["status"] == "ready"
        map_points_ms = best_ms(lambda: c.get("/api/map/points").raise_for_status(), r)
    map_browser = browser_map(scan_dir, r)

    result = {
        "benchmark": "review",
        "command": command,
        "n_samples": args.n,
        "n_flagged": n_flagged,
        "n_decided": n_decided,
        "machine": machine(),
        "build_s": None if build_s is None else round(build_s, 2),
        "repeat": r,
        "queries_ms": queries_ms,
        "api_page_ms": api_page_ms,
        "overview_first_ms": round(min(first) * 1000, 2),
        "overview_cached_ms": round(min(cached) * 1000, 2),
        "export_ms": export_ms,
        "export_full_ms": export_full_ms,
        "export_rows": n_rows,
        "map_compute_s": round(map_compute_s, 2),
        "map_points_ms": map_points_ms,
        "map_browser": map_browser,
        "db_mb": round(os.path.getsize(db) / 2**20, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
