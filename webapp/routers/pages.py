"""Server-rendered HTML pages: overview, queue, grid, sample, export (and their fragments)."""

from __future__ import annotations

import math
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from labelaudit.errors import DecisionError, InvalidCursor, ReviewSettingsError, StaleScan
from labelaudit.export import export_summary
from labelaudit.review import parse_class_order, read_class_order
from labelaudit.review.selections import selection_size
from labelaudit.review.tags import all_tags

from .. import charts, queries, shortcuts
from ..deps import (
    REVIEWER_COOKIE,
    Db,
    Review,
    Reviewer,
    Settings,
    SettingsDep,
    class_order,
    get_settings,
    is_reviewer_name,
)
from ..schemas import SampleFilters
from ..templating import DENSITY_COOKIE, base_context, current_label, error_page, qs, render, stats_cache

router = APIRouter(include_in_schema=False)

QUEUE_PAGE = 40
GRID_PAGE = 120


def _filters_dict(f: SampleFilters) -> dict[str, Any]:
    return {k: v for k, v in f.model_dump().items() if v is not None}


def _page_defaults(f: SampleFilters) -> SampleFilters:
    """The pages list flagged samples unless told otherwise (a map selection: all of it)."""
    if f.flagged is not None:
        return f
    return f.model_copy(update={"flagged": "all" if f.selection else "1"})


# ---------------------------------------------------------------------------- overview


@router.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse)
def overview(request: Request, db: Db, settings: SettingsDep):
    order = list(class_order(db, settings).order)
    nm = _in_order(settings.noise_matrix(), order)
    cache = stats_cache(request)
    pairs = queries.pair_counts(db, cache)
    progress = queries.progress(db, cache)
    rank = {c: i for i, c in enumerate(order)}
    class_rows = sorted(queries.class_counts(db, cache), key=lambda r: rank.get(r["name"], len(rank)))
    summary = settings.manifest.summary
    ctx = base_context(
        request, settings, db, "overview",
        summary=summary.to_dict(),
        skipped=summary.skipped_by_kind(),
        noise_rate=summary.estimated_noise_rate,
        unscored=queries.unscored(db, cache),
        orphaned=queries.orphaned(db, cache),
        accepted_changed=queries.accepted_changed(db, cache),
        heatmap=charts.heatmap(nm["classes"], nm["matrix"], pairs) if nm else None,
        hist=charts.histogram(queries.score_histogram(db, cache)),
        class_chart=charts.class_bars(class_rows),
        decision_chart=charts.decision_bar(progress["by_action"], progress["n_flagged"]),
        pairs=pairs[:15],
        n_pairs=len(pairs),
        created_at=settings.manifest.created_at,
        per_class=queries.per_class(order, class_rows, pairs, nm),
        reviewers=queries.reviewers(db, cache),
        tags=all_tags(db)[:30],
    )
    return render(request, "overview.html", ctx)


def _in_order(nm: dict | None, order: list[str]) -> dict | None:
    """The noise matrix with its rows and columns in the display order of the classes."""
    if not nm:
        return nm
    idx = [nm["classes"].index(c) for c in order if c in nm["classes"]]
    return {"classes": [nm["classes"][i] for i in idx], "matrix": [[nm["matrix"][i][j] for j in idx] for i in idx]}


# ---------------------------------------------------------------------------- queue


def _listing(db, f: SampleFilters, after, before, limit, with_total):
    """A page of the listing; a cursor that does not fit the order starts at the top."""
    try:
        return queries.list_samples(db, f, after=after, before=before, limit=limit, with_total=with_total)
    except InvalidCursor:
        return queries.list_samples(db, f, limit=limit, with_total=with_total)


@router.api_route("/queue", methods=["GET", "HEAD"], response_class=HTMLResponse)
def queue(
    request: Request,
    db: Db,
    settings: SettingsDep,
    filters: Annotated[SampleFilters, Query()],
    after: str | None = None,
    before: str | None = None,
):
    f = _page_defaults(filters)
    page = _listing(db, f, after, before, QUEUE_PAGE, True)
    fd = _filters_dict(f)
    ctx = base_context(request, settings, db, "queue", filters=fd, items=page.items, page_=page, tag_names=_tag_names(db),
                next_url=_next_url("/queue/rows", fd, page),
                prev_url=("/queue?" + qs(fd, before=page.prev_before)) if page.prev_before else None,
                sample_qs=qs(fd))
    return render(request, "queue.html", ctx)


def _tag_names(db) -> list[str]:
    return [t for t, _ in all_tags(db)]


def _next_url(fragment: str, fd: dict, page) -> str | None:
    """URL of the fragment that continues ``page`` (infinite scroll), or None at the end."""
    return f"{fragment}?{qs(fd, after=page.next_after)}" if page.next_after else None


@router.api_route("/queue/rows", methods=["GET", "HEAD"], response_class=HTMLResponse)
def queue_rows(request: Request, db: Db, filters: Annotated[SampleFilters, Query()], after: str | None = None):
    """The next rows of the queue (infinite scroll), ending with the next sentinel."""
    f = _page_defaults(filters)
    page = _listing(db, f, after, None, QUEUE_PAGE, False)
    fd = _filters_dict(f)
    ctx = {"items": page.items, "sample_qs": qs(fd), "next_url": _next_url("/queue/rows", fd, page),
           **_fragment(request, db)}
    return render(request, "_rows.html", ctx)


def _fragment(request: Request, db) -> dict[str, Any]:
    """What a fragment (more rows, more cells) needs of the page context."""
    order = class_order(db, get_settings(request))
    return {"key_of": order.keys, "compact": request.cookies.get(DENSITY_COOKIE) == "compact"}


# ---------------------------------------------------------------------------- grid


def _cell_labels(f: SampleFilters) -> dict[str, bool]:
    """Which labels each grid cell shows: those the filters leave open ("any")."""
    return {"show_given": f.given is None, "show_suggested": f.suggested is None}


@router.api_route("/grid", methods=["GET", "HEAD"], response_class=HTMLResponse)
def grid(
    request: Request,
    db: Db,
    settings: SettingsDep,
    filters: Annotated[SampleFilters, Query()],
    after: str | None = None,
):
    if "pair" in request.query_params:  # the pair picker without JavaScript
        return RedirectResponse("/grid?" + (request.query_params["pair"].lstrip("?/") or "all=1"), status_code=303)
    f = _page_defaults(filters)
    pairs = queries.pair_counts(db, stats_cache(request))
    selection_n = selection_size(db, f.selection) if f.selection else None
    if f.selection and selection_n is None:
        return error_page(request, 404, "This map selection has expired; draw the box again.")
    if (f.given is None and f.suggested is None and pairs and "all" not in request.query_params
            and not f.selection):
        # grid mode works on one confusion at a time: start with the most frequent pair
        f = f.model_copy(update={"given": pairs[0]["given"], "suggested": pairs[0]["suggested"]})
    page = _listing(db, f, after, None, GRID_PAGE, True)
    fd = _filters_dict(f)
    ctx = base_context(request, settings, db, "grid", filters=fd, items=page.items, page_=page, pairs=pairs[:200],
                **_cell_labels(f), pair_nav=_pair_nav(pairs[:200], f), selection_n=selection_n,
                next_url=_next_url("/grid/cells", fd, page),
                sample_qs=qs(fd))
    return render(request, "grid.html", ctx)


def _pair_nav(pairs: list[dict[str, Any]], f: SampleFilters) -> dict[str, str | None]:
    """URLs of the previous and next pair of the pair menu (None at the ends)."""
    keys = [(p["given"], p["suggested"]) for p in pairs]
    try:
        i = keys.index((f.given, f.suggested))
    except ValueError:
        i = -1
    url = lambda k: "/grid?" + qs({"given": k[0], "suggested": k[1]})  # noqa: E731
    return {"next": url(keys[i + 1]) if i + 1 < len(keys) else None,
            "prev": url(keys[i - 1]) if i > 0 else None}


@router.api_route("/grid/cells", methods=["GET", "HEAD"], response_class=HTMLResponse)
def grid_cells(request: Request, db: Db, filters: Annotated[SampleFilters, Query()], after: str | None = None):
    f = _page_defaults(filters)
    page = _listing(db, f, after, None, GRID_PAGE, False)
    fd = _filters_dict(f)
    ctx = {"items": page.items, "sample_qs": qs(fd), **_cell_labels(f),
           "next_url": _next_url("/grid/cells", fd, page)}
    return render(request, "_cells.html", ctx)


# ---------------------------------------------------------------------------- sample


@router.api_route("/samples/{sample_id}", methods=["GET", "HEAD"], response_class=HTMLResponse)
def sample_page(
    request: Request,
    sample_id: int,
    db: Db,
    settings: SettingsDep,
    filters: Annotated[SampleFilters, Query()],
):
    item = queries.get_sample(db, sample_id)
    f = _page_defaults(filters)
    fd = _filters_dict(f)
    cursor = queries.cursor_of(item, f.sort)
    nxt = _listing(db, f, cursor, None, 1, False).items
    prv = _listing(db, f, None, cursor, 1, False).items
    nbrs = queries.neighbours(db, settings, sample_id, 12)
    ctx = base_context(
        request, settings, db, "sample", item=item, filters=fd, sample_qs=qs(fd),
        history=list(reversed(queries.history(db, item["path"]))),
        neighbours=nbrs, signals=_signal_rows(db, settings, item),
        next_url=f"/samples/{nxt[0]['sample_id']}?{qs(fd)}" if nxt else None,
        prev_url=f"/samples/{prv[0]['sample_id']}?{qs(fd)}" if prv else None,
        queue_url=f"/queue?{qs(fd)}#s-{sample_id}",
        nbr_votes=_votes(nbrs, item),
    )
    return render(request, "sample.html", ctx)




def _votes(nbrs, item) -> list[dict[str, Any]] | None:
    """Per candidate label (given, suggested, the top classes): how many neighbours carry it now."""
    if not nbrs:
        return None
    labels = [current_label(s) for s, _ in nbrs]
    candidates = list(dict.fromkeys([item["given_label"], item["suggested_label"]]
                                    + [t["label"] for t in item["top_classes"][:3]]))
    rows = [{"label": c, "n": labels.count(c), "k": len(nbrs),
             "role": "given" if c == item["given_label"] else "suggested" if c == item["suggested_label"] else ""}
            for c in candidates]
    return sorted(rows, key=lambda r: -r["n"])


def _signal_rows(db, settings: Settings, item: dict[str, Any]) -> list[dict[str, Any]]:
    """Each signal as its rank among the scanned samples, with its direction and meaning."""
    declared = settings.manifest.signals
    rows = []
    for name, value in item["signals"].items():
        info = declared.get(name) or {}
        direction = int(info.get("direction", 1) or 1)
        share = settings.signal_stats.suspicion(db, name, value, direction)
        rows.append({"name": name, "value": value, "share": share, "meaning": str(info.get("description", "")),
                     "direction": "higher" if direction > 0 else "lower",
                     "text": _suspicion_text(share)})
    return sorted(rows, key=lambda r: -(r["share"] if r["share"] is not None else -1))


def _suspicion_text(share: float | None) -> str:
    if share is None:
        return "not computed for this sample"
    if share >= 0.5:
        return f"more suspicious than {math.floor(100 * share)}% of the scanned images"
    return f"less suspicious than {math.floor(100 * (1 - share))}% of the scanned images"


@router.post("/samples/{sample_id}/decision")
def sample_decision_form(
    sample_id: int,
    request: Request,
    review: Review,
    reviewer: Reviewer,
    action: Annotated[str, Form()],
    label: Annotated[str | None, Form()] = None,
    note: Annotated[str, Form(max_length=2000)] = "",
    back: Annotated[str, Form(max_length=2000)] = "",
    scan: Annotated[str, Form(max_length=200)] = "",
):
    """The sample page's form, for use without JavaScript: record, then show the page again."""
    if action.startswith("relabel:"):
        action, label = "relabel", action.split(":", 1)[1]
    elif action != "relabel":
        label = None  # the form's class select is sent with every button; only relabel reads it
    try:
        review.decide([sample_id], action, label=label or None, note=note, reviewer=reviewer, scan_id=scan or None)
    except DecisionError as exc:
        return error_page(request, 422, str(exc))
    except StaleScan as exc:
        return error_page(request, 409, str(exc).capitalize() + ".")
    query = back if back and not back.startswith(("/", "\\")) and "://" not in back else ""
    return RedirectResponse(f"/samples/{sample_id}" + (f"?{query}" if query else ""), status_code=303)


# ---------------------------------------------------------------------------- export


@router.api_route("/export", methods=["GET", "HEAD"], response_class=HTMLResponse)
def export_page(request: Request, db: Db, settings: SettingsDep):
    summary = export_summary(db)
    ctx = base_context(request, settings, db, "export", export=summary, scan_dir=str(settings.scan_dir))
    return render(request, "export.html", ctx)


# ---------------------------------------------------------------------------- settings, reviewer


@router.api_route("/settings", methods=["GET", "HEAD"], response_class=HTMLResponse)
def settings_page(request: Request, db: Db, settings: SettingsDep, error: str | None = None):
    classes = settings.classes  # once: the form's fields are numbered by this list
    order = read_class_order(db, classes)
    ctx = base_context(request, settings, db, "settings", order=list(order.order), keys=order.keys, classes=classes,
                error=error[:200] if error else None, key_choices=list(shortcuts.CLASS_KEYS))
    return render(request, "settings.html", ctx)


@router.post("/settings/classes")
async def settings_classes(request: Request, review: Review, reviewer: Reviewer, settings: SettingsDep):
    """The settings form: ``pos:<i>`` (order) and ``key:<i>`` (a digit or empty) per class index,
    or ``reset`` = natural / dataset. A form from a page of an earlier scan (``scan``) is refused: its
    class indexes may name other classes now."""
    form = await request.form()
    classes = settings.classes  # once, as the page numbered them
    reset = str(form.get("reset", ""))
    try:
        if reset in ("natural", "dataset"):
            order = parse_class_order([reset], classes)
        else:
            order = parse_class_order(_form_order(form, classes), classes)
    except ReviewSettingsError as exc:
        return RedirectResponse("/settings?" + urlencode({"error": str(exc)}), status_code=303)
    try:  # checked in the write's transaction, as every write of a page
        review.set_class_order(order, reviewer=reviewer, scan_id=str(form.get("scan", "")) or None)
    except StaleScan:
        return error_page(request, 409, "This page was made from an earlier scan of the folder (its classes may "
                                        "differ): reload it, then save again.")
    return RedirectResponse("/settings?saved=1", status_code=303)


def _form_order(form, classes: list[str]) -> list[str]:
    """``KEY=NAME`` / ``NAME`` items in the order of the form's position fields."""
    rows = []
    for i, name in enumerate(classes):
        try:
            pos = float(str(form.get(f"pos:{i}", "")).strip() or i + 1)
        except ValueError:
            raise ReviewSettingsError(f"the position of {name[:80]!r} must be a number") from None
        key = str(form.get(f"key:{i}", "")).strip()
        rows.append((pos, i, f"{key}={name}" if key else name))
    return [item for _, _, item in sorted(rows)]


@router.post("/reviewer")
async def set_reviewer(request: Request, name: Annotated[str, Form(max_length=64)] = "",
                       back: Annotated[str, Form(max_length=2000)] = "/"):
    """Record this browser's decisions under ``name`` (a cookie); empty: the server's reviewer."""
    target = back if back.startswith("/") and not back.startswith("//") and "\\" not in back else "/"
    response = RedirectResponse(target, status_code=303)
    name = name.strip()
    if not name:
        response.delete_cookie(REVIEWER_COOKIE, path="/")
    elif is_reviewer_name(name):
        response.set_cookie(REVIEWER_COOKIE, name, max_age=365 * 86400, path="/", samesite="strict", httponly=True)
    else:
        return error_page(request, 422, "A reviewer name has 1-64 letters, digits, spaces or . _ ' @ + -")
    return response
