"""Fixtures of the review web app's tests: generated scans, an ASGI client, a real server."""

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
import pytest
from fastapi.testclient import TestClient

from fakescan import FakeScan, clone_scan, make_big_scan, make_scan

from webapp import create_app

REPO = Path(__file__).resolve().parents[2]
BASE_URL = "http://127.0.0.1:8000"


@pytest.fixture(scope="session")
def _scan_template(tmp_path_factory) -> FakeScan:
    return make_scan(tmp_path_factory.mktemp("template"))


@pytest.fixture
def scan(_scan_template: FakeScan, tmp_path: Path) -> FakeScan:
    """A tiny scan: 4 classes (one named ``<script>alert(1)</script>``) x 12 generated images.

    Each test gets its own copy (made once, then copied: quicker than drawing the images).
    """
    return clone_scan(_scan_template, tmp_path)


@pytest.fixture
def big_queue_scan(tmp_path: Path) -> FakeScan:
    """A scan with 40-odd flagged samples (enough for 20 keyboard decisions)."""
    return make_scan(tmp_path, n_per_class=24, noise=0.45, seed=1)


@pytest.fixture(scope="session")
def big_scan(tmp_path_factory) -> Path:
    """100,000 synthetic samples (no images) with 20,000 decisions, for query speed."""
    return make_big_scan(tmp_path_factory.mktemp("big"))


def make_client(scan_dir: Path, **kwargs) -> TestClient:
    kwargs.setdefault("reviewer", "tester")
    return TestClient(create_app(scan_dir, **kwargs), base_url=BASE_URL)


@pytest.fixture
def client(scan: FakeScan):
    with make_client(scan.scan_dir) as c:
        yield c


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
