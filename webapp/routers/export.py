"""Download of the cleaned labels (the same table `labelaudit export` writes)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from labelaudit.export import cleaned_labels, to_csv_text

from ..deps import Db

router = APIRouter(prefix="/api", tags=["export"])


@router.get("/export.csv", summary="Cleaned labels as CSV", response_class=Response,
            responses={200: {"content": {"text/csv": {}}}})
def export_csv(
    db: Db,
    full: Annotated[bool, Query(description="add original_label, decision, reviewer, decided_at, ...")] = False,
    auto_accept_above: Annotated[str | None, Query(description=(
        "a score in [0, 1]: unreviewed samples scoring above it take their suggested label"))] = None,
    include_unusable: Annotated[bool, Query(description="keep unusable samples with an empty label")] = False,
):
    """`path,label` of the cleaned dataset: decisions applied, unusable samples dropped."""
    threshold = None
    if auto_accept_above is not None and auto_accept_above.strip() != "":
        try:
            threshold = float(auto_accept_above)
        except ValueError:
            threshold = -1.0
        if not 0 <= threshold <= 1:
            raise HTTPException(422, "auto_accept_above must be a number in [0, 1]")
    df = cleaned_labels(db, full=full, auto_accept_above=threshold, include_unusable=include_unusable)
    return Response(
        to_csv_text(df),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="cleaned_labels.csv"', "Cache-Control": "no-store"},
    )
