"""The pages' templates: the Jinja environment, its filters and globals, the context every page gets, rendering.

Routers render through :func:`render` with :func:`base_context`; nothing here touches a route.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlencode

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from labelaudit.review import ACTION_TEXT, ACTIONS, ReviewDatabase
from labelaudit.review.actions import ACTION_KIND_TEXT, label_in_force
from labelaudit.review.database import StatsCache

from . import queries, shortcuts
from .deps import Settings, class_order, get_reviewer, get_settings
from .schemas import DecisionFilter

__all__ = ["TEMPLATES_DIR", "templates", "qs", "stats_cache", "base_context", "render", "error_page", "current_label",
           "DECISION_PAGES", "DENSITY_COOKIE", "TILE_COOKIE", "TILE_SIZES", "FILTER_TEXT"]

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    autoescape=True,  # every template, whatever its name: class and file names are data
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates = Jinja2Templates(env=_env)

DECISION_PAGES = ("queue", "grid", "sample")  # the pages whose number keys relabel
#: Cookies the pages read (set by app.js): queue row density and grid tile size.
DENSITY_COOKIE, TILE_COOKIE = "la_density", "la_tiles"
TILE_SIZES = ("s", "m", "l")


def _pct(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def _num(value: int | float) -> str:
    return f"{value:,}"


_env.filters["pct"] = _pct
_env.filters["num"] = _num
_env.globals["action_text"] = ACTION_TEXT
#: The decision filter's options: every value SampleFilters.decision takes, with its text.
FILTER_TEXT = {**ACTION_KIND_TEXT, "changed": "label changed"}
_env.globals["decision_filters"] = [("", "any")] + [(v, FILTER_TEXT[v]) for v in get_args(DecisionFilter)]


def qs(params: dict[str, Any], **overrides: Any) -> str:
    """A query string of the non-empty values of ``params`` updated with ``overrides``."""
    merged = {**params, **overrides}
    return urlencode([(k, v) for k, v in merged.items() if v is not None and v != ""])


_env.globals["qs"] = qs


def stats_cache(request: Request) -> StatsCache:
    """The app's cache of computed statistics."""
    return request.app.state.review.stats


def base_context(request: Request, settings: Settings, db, page: str, **extra: Any) -> dict[str, Any]:
    """What every page's template gets: progress, classes and keys, reviewer, page config (``extra`` added)."""
    progress = queries.progress(db, stats_cache(request))
    order = class_order(db, settings)
    keys = shortcuts.class_keys(order)  # [[key, class], ...] in display order
    reviewer = get_reviewer(request)
    config = {
        "page": page,
        "actions": list(ACTIONS),
        "action_text": ACTION_TEXT,
        "reviewer": reviewer,
        "classes": list(order.order),
        "class_keys": keys,
        "keys": shortcuts.keymap(page),
        "progress": {"reviewed": progress["n_reviewed_flagged"], "flagged": progress["n_flagged"]},
    }
    return {
        "request": request,
        "page": page,
        "settings": settings,
        "reviewer": reviewer,
        "progress": progress,
        "classes": list(order.order),
        "key_of": order.keys,
        "compact": request.cookies.get(DENSITY_COOKIE) == "compact",
        "tiles": request.cookies.get(TILE_COOKIE) if request.cookies.get(TILE_COOKIE) in TILE_SIZES else "m",
        "class_keys": keys if page in DECISION_PAGES else [],
        "help_rows": shortcuts.help_rows(page),
        "keys_bar": shortcuts.bar(page),
        "config": config,
        "annotator_names": [a["annotator"] for a in queries.annotators(db, stats_cache(request))],
        "scan_id": request.app.state.review.scan_id(db) or "",
        **extra,
    }


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    """Template ``name`` with ``context``, never cached by the browser."""
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"  # decisions change pages; never show a stale one
    return response


def error_page(request: Request, status_code: int, message: str) -> HTMLResponse:
    """The error page (the app's layout, with ``message``)."""
    settings: Settings = get_settings(request)
    review: ReviewDatabase = request.app.state.review
    with review.reader() as conn:
        ctx = base_context(request, settings, conn, "error", message=message, status_code=status_code)
        return render(request, "error.html", ctx, status_code=status_code)


def current_label(s: dict[str, Any]) -> str:
    """The label a sample has now: its decision's, else the given one (unusable, unsure: given)."""
    d = s["decision"] or {}
    return label_in_force(d.get("action"), d.get("label"), s["given_label"])


_env.globals["current_label"] = current_label
