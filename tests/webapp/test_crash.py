"""A real `labelaudit review` server killed with SIGKILL loses no acknowledged decision."""

from __future__ import annotations

import sqlite3
import threading
import time

import httpx
from webapp_support import running_server, start_server

ACTIONS = [("accept", None), ("suggested", None), ("unusable", None), ("relabel", "square"), ("clear", None)]


def post(url: str, sample_id: int, action: str, label: str | None) -> dict:
    r = httpx.post(f"{url}/api/decisions", json={"sample_id": sample_id, "action": action, "label": label,
                                                  "note": f"#{sample_id}"}, timeout=10)
    r.raise_for_status()
    return r.json()["recorded"][0]


def check_db(db_path, acked: list[tuple[int, str, str | None, dict]]) -> None:
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = {r[0]: r[1:] for r in conn.execute("SELECT decision_id, path, action FROM decisions")}
    for sample_id, action, _, rec in acked:
        if action == "clear":
            continue
        d = rec["decision"]
        assert d["decision_id"] in rows, f"acknowledged decision {d} of sample {sample_id} is lost"
        assert rows[d["decision_id"]] == (rec["path"], d["action"])
    conn.close()


def test_sigkill_between_decisions_loses_nothing(big_queue_scan):
    scan = big_queue_scan
    ids = [int(i) for i in scan.flagged().sample_id[:15]]
    acked = []
    server = start_server(scan.scan_dir, "--reviewer", "crash")
    try:
        for k, sid in enumerate(ids):
            action, label = ACTIONS[k % 4]
            acked.append((sid, action, label, post(server.url, sid, action, label)))
            if k in (4, 9):  # kill right after an acknowledged decision, then start again
                server.kill()
                check_db(scan.db_path, acked)
                server = start_server(scan.scan_dir, "--reviewer", "crash")
        server.kill()
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
    check_db(scan.db_path, acked)
    # and a fresh server shows every one of them as the decision in force
    with running_server(scan.scan_dir) as s:
        for sid, action, label, rec in acked:
            d = httpx.get(f"{s.url}/api/samples/{sid}").json()["decision"]
            assert d is not None and d["decision_id"] == rec["decision"]["decision_id"]
            assert d["reviewer"] == "crash" and d["note"] == f"#{sid}"


def test_sigkill_during_a_stream_of_decisions(big_queue_scan):
    scan = big_queue_scan
    ids = [int(i) for i in scan.scores.index]
    acked: list = []
    server = start_server(scan.scan_dir)
    stop = threading.Event()

    def writer():
        k = 0
        while not stop.is_set() and k < len(ids):
            action, label = ACTIONS[k % 4]
            try:
                acked.append((ids[k], action, label, post(server.url, ids[k], action, label)))
            except (httpx.HTTPError, OSError):
                return  # the server died mid-request: that decision was never acknowledged
            k += 1

    t = threading.Thread(target=writer)
    t.start()
    deadline = time.monotonic() + 10
    while len(acked) < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()  # while requests are in flight
    stop.set()
    t.join(timeout=15)
    assert len(acked) >= 8
    check_db(scan.db_path, acked)
    conn = sqlite3.connect(scan.db_path)
    n_rows = conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
    assert len(acked) <= n_rows <= len(acked) + 1  # at most the one in flight got in too


def test_a_lock_held_by_another_process_is_503_with_the_reason_and_nothing_lost(scan, tmp_path):
    """A decision posted while another process held the database locked was a bare 500 (plain text)."""
    import sqlite3

    from click.testing import CliRunner
    from webapp_support import make_client

    from labelaudit.cli import main

    sid = int(scan.flagged().sample_id.iloc[0])
    with make_client(scan.scan_dir) as c:
        holder = sqlite3.connect(scan.db_path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            r = c.post("/api/decisions", json={"sample_id": sid, "action": "accept", "request_id": "lockedreq01"})
            assert r.status_code == 503 and "locked by another process" in r.json()["detail"], r.text
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        r = c.post("/api/decisions", json={"sample_id": sid, "action": "accept", "request_id": "lockedreq01"})
        assert r.status_code == 200 and r.json()["recorded"][0]["decision"]["action"] == "accept"
    holder = sqlite3.connect(scan.db_path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE meta SET value = value")
    try:
        r = CliRunner().invoke(main, ["review", str(scan.scan_dir), "--port", "0"])
        assert r.exit_code == 1 and "locked by another process" in r.output and "Traceback" not in r.output, r.output
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_another_sqlite_error_is_a_logged_500_not_a_503(scan, caplog):
    """The handler that turns a lock into 503 must not swallow other SQLite errors without a trace."""
    import logging

    from fastapi.testclient import TestClient
    from webapp_support import BASE_URL

    from labelaudit.webapp import create_app

    with TestClient(create_app(scan.scan_dir, reviewer="tester"), base_url=BASE_URL,
                    raise_server_exceptions=False) as c:
        conn = sqlite3.connect(scan.db_path)
        conn.execute("ALTER TABLE samples RENAME COLUMN score_rank TO renamed_rank")  # a database the code no longer fits
        conn.commit()
        conn.close()
        with caplog.at_level(logging.ERROR, logger="labelaudit.webapp"):
            r = c.get("/api/samples")
        assert r.status_code == 500 and "SQLite" in r.json()["detail"]
        assert any("score_rank" in str(rec.exc_info[1]) for rec in caplog.records if rec.exc_info), caplog.records
