"""Several annotators per image: the annotators' page (quality, agreement) and each annotator's confusions."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from .. import charts, queries
from ..deps import Db, SettingsDep, class_order
from ..templating import base_context, render, stats_cache

router = APIRouter(include_in_schema=False)


def annotator_url(name: str) -> str:
    return f"/annotators/{quote(name, safe='')}"


def disputed_url(name: str, **extra: str) -> str:
    """The queue of the images where ``name``'s label is not the consensus (flagged or not)."""
    return "/queue?" + urlencode({"annotator": name, "outvoted": "1", "flagged": "all", **extra})


@router.api_route("/annotators", methods=["GET", "HEAD"], response_class=HTMLResponse)
def annotators_page(request: Request, db: Db, settings: SettingsDep):
    rows = queries.annotators(db, stats_cache(request))
    for r in rows:
        r["url"], r["disputed_url"] = annotator_url(r["annotator"]), disputed_url(r["annotator"])
    ctx = base_context(request, settings, db, "annotators", rows=rows,
                consensus=settings.manifest.summary.consensus or {})
    return render(request, "annotators.html", ctx)


@router.api_route("/annotators/{name:path}", methods=["GET", "HEAD"], response_class=HTMLResponse)
def annotator_page(request: Request, name: str, db: Db, settings: SettingsDep):
    row = queries.annotator(db, stats_cache(request), name)  # SampleNotFound -> 404 page
    counts = queries.annotator_confusion(db, name)
    order = list(class_order(db, settings).order)
    said = order + sorted({v for _, v in counts} - set(order))  # their labels outside the classes last
    ctx = base_context(request, settings, db, "annotators", row=row, disputed_url=disputed_url(name),
                heatmap=charts.count_heatmap(order, said, counts, lambda c, v: disputed_url(name, given=c, vote=v)
                                             if c != v else None))
    return render(request, "annotator.html", ctx)
