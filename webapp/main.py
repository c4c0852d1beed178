"""The review app: ``create_app(scan_dir)`` builds a FastAPI app serving one scan directory."""

from __future__ import annotations

import getpass
import re
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from labelaudit import __version__

from . import queries
from .deps import Settings
from .routers import decisions, export, images, pages, samples, stats
from .security import SecurityMiddleware

__all__ = ["create_app", "default_reviewer", "TOKEN_PATTERN"]

STATIC_DIR = Path(__file__).parent / "static"
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9._~-]{8,256}$")

DESCRIPTION = """
JSON API of the labelaudit review app: everything the pages do.

* list samples with filters and keyset paging (`GET /api/samples`), get one (`GET /api/samples/{id}`),
  its image and thumbnail;
* record a decision (`POST /api/decisions`), one for many samples (`POST /api/decisions/batch`),
  undo the reviewer's last one (`POST /api/decisions/undo`);
* statistics and the noise matrix (`GET /api/stats`, `GET /api/noise-matrix`);
* the cleaned labels as CSV (`GET /api/export.csv`).

Decisions are appended to the scan's SQLite database (one committed transaction each) and
are never updated or deleted. POST requests from a browser must be same-origin.
"""


def default_reviewer() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in the environment
        return "reviewer"


def create_app(
    scan_dir: str | Path,
    *,
    token: str | None = None,
    reviewer: str | None = None,
    allowed_hosts: Sequence[str] | None = None,
) -> FastAPI:
    """The review app for ``scan_dir`` (a directory holding ``labelaudit.db``).

    Parameters
    ----------
    token : str, optional
        When set, every request must present it (query ``token``, a bearer/
        ``X-Labelaudit-Token`` header, or the cookie set on first use); required when
        serving beyond the loopback interface.
    reviewer : str, optional
        Name stored with every decision (default: the OS user name).
    allowed_hosts : sequence of str, optional
        ``Host`` names accepted when no token is set (default: loopback names only).
    """
    if token is not None and not TOKEN_PATTERN.match(token):
        raise ValueError("token must be 8-256 characters from A-Z a-z 0-9 . _ ~ -")
    settings = Settings(scan_dir=Path(scan_dir), reviewer=reviewer or default_reviewer(), token=token)
    if allowed_hosts is not None:
        settings.allowed_hosts = tuple(allowed_hosts)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        settings.pool.close()

    app = FastAPI(
        title="labelaudit review",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "samples", "description": "Scanned samples with their scores and decisions"},
            {"name": "decisions", "description": "Append-only review decisions"},
            {"name": "stats", "description": "Progress, noise estimates and distributions"},
            {"name": "export", "description": "Cleaned labels"},
        ],
    )
    app.state.settings = settings

    @app.exception_handler(queries.NotFound)
    async def not_found(request: Request, exc: queries.NotFound):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": f"no sample {exc.args[0]}"}, status_code=404)
        return pages.error_page(request, 404, f"No sample {exc.args[0]} in this scan.")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for module in (samples, images, decisions, stats, export, pages):
        app.include_router(module.router)
    app.add_middleware(SecurityMiddleware, token=token, allowed_hosts=settings.allowed_hosts)
    return app
