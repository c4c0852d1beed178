"""Fixtures of the review web app's tests: generated scans and an ASGI client."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakescan import FakeScan, clone_scan, make_big_scan, make_scan
from webapp_support import make_client


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


@pytest.fixture
def client(scan: FakeScan):
    with make_client(scan.scan_dir) as c:
        yield c
