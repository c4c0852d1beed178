"""JSON API: samples (listing with filters and keyset paging, one sample with its history)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from labelaudit.review.tags import all_tags

from .. import queries
from ..deps import Db, Review, Reviewer, ScanId, SettingsDep
from ..schemas import SampleDetail, SampleFilters, SamplePage, SampleId, TagsIn, TagsOut

router = APIRouter(prefix="/api", tags=["samples"])


@router.get("/samples", response_model=SamplePage, summary="List samples")
def list_samples(
    db: Db,
    filters: Annotated[SampleFilters, Query()],
    after: Annotated[str | None, Query(description="cursor: return the samples after this one")] = None,
    before: Annotated[str | None, Query(description="cursor: return the samples before this one")] = None,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_LIMIT)] = 50,
    with_total: Annotated[bool, Query(description="also count all matching samples")] = False,
):
    """Samples matching the filters, in the chosen order, one page at a time.

    Paging is by cursor: pass a page's `next_after` as `after` (or `prev_before` as
    `before`). It costs the same at any depth of the list. A cursor that is not one of
    this order's keys is a 422.
    """
    page = queries.list_samples(db, filters, after=after, before=before, limit=limit, with_total=with_total)
    return {"items": page.items, "total": page.total, "next_after": page.next_after,
            "prev_before": page.prev_before}


@router.get("/samples/{sample_id}", response_model=SampleDetail, summary="Get one sample")
def get_sample(
    sample_id: int,
    db: Db,
    settings: SettingsDep,
    k: Annotated[int, Query(ge=0, le=100, description="number of nearest neighbours")] = 12,
):
    """One sample with all its signals, its decision history (oldest first) and, when the
    scan stored embeddings, its nearest neighbours in the model's feature space."""
    item = queries.get_sample(db, sample_id)
    item["history"] = queries.history(db, item["path"])
    nbrs = queries.neighbours(db, settings, sample_id, k)
    item["neighbours"] = None if nbrs is None else [{"sample": s, "similarity": sim} for s, sim in nbrs]
    return item


@router.post("/samples/{sample_id}/tags", response_model=TagsOut, summary="Add or remove tags of a sample")
def post_tags(sample_id: SampleId, body: TagsIn, review: Review, reviewer: Reviewer, scan_id: ScanId):
    """Free tags (at most 40 characters, no comma; stored lower case). Each change is appended
    to the tag log with the reviewer's name; nothing is overwritten."""
    path, tags = review.change_tags(sample_id, add=body.add, remove=body.remove, reviewer=reviewer,
                                    scan_id=scan_id)
    return {"sample_id": sample_id, "path": path, "tags": tags}


@router.get("/tags", summary="Tags in use, most used first")
def get_tags(db: Db) -> list[dict]:
    return [{"tag": t, "n": n} for t, n in all_tags(db)]
