"""The map: a zoomable scatter of the scan's embeddings in 2-D (drawn by ``static/map.js``).

The projection is computed once per scan (:mod:`labelaudit.review.projection`, in the
background on first use) and cached in the scan folder. ``GET /api/map/points`` sends the
positions, labels and review state of every sample as one binary array (13 bytes a sample),
and a box drawn on the map becomes a short-lived server-side selection
(``POST /api/selections``) that the grid opens by its id.
"""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from ..deps import Db, Review, ScanId, SettingsDep, class_order
from ..schemas import SelectionIn, SelectionOut
from ..templating import base_context, render

router = APIRouter(tags=["map"])

#: Bits of the per-sample flags byte of ``/api/map/points``.
FLAGGED, REVIEWED, CHANGED = 1, 2, 4


@router.get("/api/map", summary="The map's status and legend")
def get_map(db: Db, settings: SettingsDep) -> dict:
    """`status`: `ready`, `computing` (poll again) or `error`; `classes` is the order of the label
    indexes of `/api/map/points`; `n` the number of points."""
    maps = settings.map  # the request's scan's (a re-scan brings a new map)
    data = maps.get()
    order = list(class_order(db, settings).order)
    if data is None:
        return {"status": "error" if maps.error else "computing", "error": maps.error, "classes": order, "n": 0}
    n = min(len(data.xy), db.execute("SELECT COUNT(*) FROM samples").fetchone()[0])
    return {"status": "ready", "n": n, "classes": order, "method": data.method, "seconds": data.seconds,
            "layout": ["float32 x, y per point", "uint16 label index per point", "uint8 flags per point"],
            "flags": {"flagged": FLAGGED, "reviewed": REVIEWED, "changed": CHANGED}}


@router.get("/api/map/points", summary="Positions, labels and state of every point (binary)",
            response_class=Response, responses={200: {"content": {"application/octet-stream": {}}}})
def get_points(db: Db, review: Review, settings: SettingsDep):
    """`n` float32 pairs (x, y in [0, 1], sample id = index), then `n` uint16 label indexes
    (into `/api/map`'s `classes`), then `n` uint8 flags (1 flagged, 2 reviewed, 4 label changed).
    409 while the map is being computed."""
    data = settings.map.get()
    if data is None:
        return Response(status_code=409, content=b"map not ready")
    order = list(class_order(db, settings).order)
    labels, flags = review.stats.get(f"mapstate:{'|'.join(order)}", db, lambda: _state(db, order))
    n = min(len(data.xy), len(labels))
    body = (np.ascontiguousarray(data.xy[:n], dtype="<f4").tobytes() + labels[:n].astype("<u2").tobytes()
            + flags[:n].tobytes())
    return Response(body, media_type="application/octet-stream", headers={"Cache-Control": "no-store"})


def _state(db, order: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per sample (by id): index of its given label in ``order``, and its flag bits."""
    index = {c: i for i, c in enumerate(order)}
    rows = db.execute("SELECT sample_id, given_label, flagged FROM samples ORDER BY sample_id").fetchall()
    n = (rows[-1][0] + 1) if rows else 0
    labels = np.zeros(n, dtype=np.uint16)
    flags = np.zeros(n, dtype=np.uint8)
    for sid, given, flagged in rows:
        labels[sid] = index.get(given, 0)
        flags[sid] = FLAGGED if flagged else 0
    for sid, changed in db.execute(
            "SELECT s.sample_id, (cd.label IS NOT NULL AND cd.label != s.given_label) FROM current_decisions AS cd "
            "CROSS JOIN samples AS s ON s.path = cd.path"):
        flags[sid] |= REVIEWED | (CHANGED if changed else 0)
    return labels, flags


@router.post("/api/selections", response_model=SelectionOut, summary="Store a selection of samples")
def post_selection(body: SelectionIn, review: Review, scan_id: ScanId):
    """A short-lived (24 h) named set of samples -- the box drawn on the map -- to open in the grid
    (`/grid?selection=ID`) or list (`GET /api/samples?selection=ID`). 409 when the page's scan
    (`X-Labelaudit-Scan`) is not the current one: its sample ids name other images since."""
    selection, n = review.create_selection(body.sample_ids, scan_id=scan_id)
    return {"selection": selection, "n": n, "grid_url": f"/grid?selection={selection}"}


@router.api_route("/map", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False)
def map_page(request: Request, db: Db, settings: SettingsDep):
    ctx = base_context(request, settings, db, "map", has_embeddings=settings.map.available)
    return render(request, "map.html", ctx)
