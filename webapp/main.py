"""The review app: ``create_app(scan_dir)`` builds a FastAPI app serving one scan directory."""

from __future__ import annotations

import getpass
import logging
import os
import re
import sqlite3
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from labelaudit import __version__
from labelaudit.errors import (
    DatabaseBusy,
    DecisionError,
    InvalidCursor,
    MapUnavailable,
    ReadOnlyScanDir,
    RequestIdReused,
    ReviewSettingsError,
    SampleNotFound,
    StaleScan,
)
from labelaudit.review import ReviewDatabase
from labelaudit.scandir import database as storage

from .deps import Settings, is_reviewer_name
from .routers import annotators, decisions, export, images, map, pages, samples, stats
from .security import BodyLimitMiddleware, SecurityMiddleware
from .templating import error_page

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
* the cleaned labels as CSV (`GET /api/export.csv`);
* the images the scan did not score (`GET /api/unscored`);
* tags (`POST /api/samples/{id}/tags`), the class order and keys (`GET`/`PUT /api/class-order`),
  decisions per reviewer (`GET /api/reviewers`), per-class label quality (`GET /api/per-class`);
* the map: a 2-D projection of the embeddings (`GET /api/map`, `GET /api/map/points`), and
  selections of samples to open in the grid (`POST /api/selections`).

The reviewer of a request is the server's `--reviewer`, or the name chosen in the browser
(cookie), or a script's `X-Labelaudit-Reviewer` header.

Decisions are appended to the scan's SQLite database (one committed transaction each) and
are never updated or deleted. A decision or undo may carry a `request_id`: repeating the
request (after a lost response) returns the first answer and writes nothing. POST requests
from a browser must be same-origin; request bodies are limited to 1 MiB.
"""

#: Longest error message a 422 carries (the input itself is never echoed).
MAX_ERROR_TEXT = 200
_log = logging.getLogger("labelaudit.webapp")


def default_reviewer() -> str:
    """The OS user name, or ``"reviewer"`` where there is none or it is no valid reviewer name."""
    try:
        name = getpass.getuser()
    except Exception:  # no user name in the environment
        return "reviewer"
    return name if is_reviewer_name(name) else "reviewer"


def create_app(
    scan_dir: str | Path,
    *,
    token: str | None = None,
    reviewer: str | None = None,
    allowed_hosts: Sequence[str] | None = None,
) -> FastAPI:
    """The review app for ``scan_dir`` (a finished scan: ``labelaudit.db`` and ``scan.json``).

    Parameters
    ----------
    token : str, optional
        When set, every request must present it (query ``token``, a bearer/
        ``X-Labelaudit-Token`` header, or the cookie set on first use); required when
        serving beyond the loopback interface.
    reviewer : str, optional
        Name stored with every decision (default: the OS user name).
    allowed_hosts : sequence of str, optional
        ``Host`` names accepted when no token is set, besides the loopback ones
        (:func:`labelaudit.webapp.security.is_loopback`), which are always accepted.

    Raises
    ------
    ScanDirError
        ``scan_dir`` is not a finished scan (:class:`~labelaudit.errors.CorruptDatabase`: its
        database cannot be read; :class:`~labelaudit.errors.ReadOnlyScanDir`: it cannot be written).
    ReviewSettingsError
        ``token`` is not a valid token, or ``reviewer`` no valid reviewer name (a ``ValueError``).
    """
    if token is not None and not TOKEN_PATTERN.match(token):
        raise ReviewSettingsError("token must be 8-256 characters from A-Z a-z 0-9 . _ ~ -")
    if reviewer is not None and not is_reviewer_name(reviewer):
        raise ReviewSettingsError("a reviewer name is 1-64 letters, digits, spaces or . _ ' @ + -")
    settings = Settings(scan_dir=Path(scan_dir), reviewer=reviewer or default_reviewer(), token=token)
    if allowed_hosts is not None:
        settings.allowed_hosts = tuple(allowed_hosts)
    storage.check_holds_scan(settings.scan.require_database())
    if not (os.access(settings.scan.path, os.W_OK) and os.access(settings.scan.database, os.W_OK)):
        raise ReadOnlyScanDir(f"{settings.scan.path} is read-only: the review app writes every decision to "
                              f"{settings.scan.DATABASE} at once; copy the scan folder somewhere writable "
                              "(`labelaudit export` reads it as it is)")
    review = ReviewDatabase(settings.scan.database)
    settings.load_classes(review)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        review.close()

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
    app.state.review = review
    app.state.images = images.ImageCache()
    _add_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for module in (samples, images, decisions, stats, export, map, pages, annotators):
        app.include_router(module.router)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(SecurityMiddleware, token=token, allowed_hosts=settings.allowed_hosts)
    return app


def _short(text: str) -> str:
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 1] + "…"


def _validation_errors(exc: RequestValidationError) -> list[dict]:
    """Where and what, without the input (which may be large, or not even JSON: NaN)."""
    out = []
    for err in exc.errors()[:20]:
        loc = [part if isinstance(part, (int, str)) else str(part) for part in err.get("loc", ())]
        out.append({"loc": [_short(str(p)) if isinstance(p, str) else p for p in loc],
                    "msg": _short(str(err.get("msg", ""))), "type": str(err.get("type", ""))})
    return out


#: Typed review errors answered as a short JSON ``detail`` with this status.
_ERROR_STATUS = {DecisionError: 422, ReviewSettingsError: 422, InvalidCursor: 422, MapUnavailable: 404,
                 StaleScan: 409, RequestIdReused: 409, DatabaseBusy: 503}


def _short_json(status: int):
    """An exception handler answering ``{"detail": <short message>}`` with ``status``."""
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": _short(str(exc))}, status_code=status)

    return handler


def _add_error_handlers(app: FastAPI) -> None:
    """Typed review errors to HTTP: unknown sample 404, bad decision or cursor 422, a page of an earlier scan 409."""

    @app.exception_handler(SampleNotFound)
    async def not_found(request: Request, exc: SampleNotFound):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": _short(str(exc))}, status_code=404)
        return error_page(request, 404, f"{_short(str(exc)).capitalize()} in this scan.")

    for error, status in _ERROR_STATUS.items():
        app.add_exception_handler(error, _short_json(status))

    @app.exception_handler(sqlite3.OperationalError)
    async def database_error(request: Request, exc: sqlite3.OperationalError):
        """A read that met another process's lock: 503 with the reason (the request may be repeated)."""
        if storage.is_busy(exc):
            return JSONResponse({"detail": _short(str(storage.busy_error(request.app.state.settings.scan.database)))},
                                status_code=503)
        _log.error("SQLite error answering %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error (SQLite); see the server's log"}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": _validation_errors(exc)}, status_code=422)
