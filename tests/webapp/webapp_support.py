"""Helpers of the review web app's tests: an ASGI client, a real `labelaudit review` server.

(Kept out of conftest.py so that test modules import them by a name no other test
directory uses.)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from labelaudit.webapp import create_app

REPO = Path(__file__).resolve().parents[2]
BASE_URL = "http://127.0.0.1:8000"


def make_client(scan_dir: Path, **kwargs) -> TestClient:
    kwargs.setdefault("reviewer", "tester")
    return TestClient(create_app(scan_dir, **kwargs), base_url=BASE_URL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    port: int

    def kill(self) -> None:
        """SIGKILL: no shutdown handler, no flush, no goodbye."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def start_server(scan_dir: Path, *extra: str, port: int | None = None, timeout: float = 30.0) -> Server:
    """``python -m labelaudit review SCAN_DIR`` as a subprocess, once it answers."""
    port = port or free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "labelaudit", "review", str(scan_dir), "--port", str(port), *extra],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"review server exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            if httpx.get(f"{url}/api/stats/progress", timeout=1.0).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"review server did not start: {proc.stdout.read()}")
        time.sleep(0.05)
    return Server(proc=proc, url=url, port=port)


@contextmanager
def running_server(scan_dir: Path, *extra: str, port: int | None = None):
    server = start_server(scan_dir, *extra, port=port)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(timeout=10)


#: Debian's Chromium and the flags it needs in this sandbox (playwright's own browsers cannot be downloaded).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@contextmanager
def chromium(sync_api):
    """A headless Chromium from ``playwright.sync_api``, closed afterwards."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
