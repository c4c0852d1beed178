"""JSON API: record decisions (one, many), undo the reviewer's last one, read the log.

The reviewer is the request's (:func:`labelaudit.webapp.deps.get_reviewer`): the name chosen in
the browser, a script's ``X-Labelaudit-Reviewer`` header, or the server's ``--reviewer``.

The routes only translate HTTP: the meaning of an action, the write and its de-duplication
by request id belong to :class:`labelaudit.review.ReviewDatabase`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query

from labelaudit.review.database import MAX_SQLITE_INT
from labelaudit.review.decisions import decision_log

from ..deps import Db, Review, Reviewer, ScanId
from ..schemas import BatchDecisionIn, DecisionIn, DecisionResult, UndoIn, UndoResult

router = APIRouter(prefix="/api/decisions", tags=["decisions"])


def _decide(review, reviewer: str, ids, body, scan_id: str | None):
    return {"recorded": review.decide(ids, body.action, label=body.label, note=body.note,
                                      reviewer=reviewer, request_id=body.request_id, scan_id=scan_id)}


@router.post("", response_model=DecisionResult, summary="Record a decision")
def post_decision(body: DecisionIn, review: Review, reviewer: Reviewer, scan_id: ScanId):
    """Append a decision for one sample, committed before the response is sent.

    `accept` keeps the given label, `suggested` takes the suggested one, `relabel` sets
    `label` (a class name), `unusable` drops the sample from the cleaned dataset and
    `clear` withdraws the decision in force; `unsure` asks for a second opinion (in force,
    listed and filterable, but the export keeps the given label until a later decision). A `relabel` to the given or suggested class
    is stored as `accept` / `suggested`. `relabel` without `label` is a 422; so is an
    `accept` / `suggested` whose `label` differs from the label it keeps (use `relabel`).
    A request that repeats an earlier `request_id` gets the earlier answer and writes nothing.
    With an `X-Labelaudit-Scan` header (the pages send the scan they were made from) a 409 writes
    nothing once the folder was scanned again (sample ids are renumbered by a re-scan).
    """
    return _decide(review, reviewer, [body.sample_id], body, scan_id)


@router.post("/batch", response_model=DecisionResult, summary="Record one decision for many samples")
def post_batch(body: BatchDecisionIn, review: Review, reviewer: Reviewer, scan_id: ScanId):
    """The same action for every sample (grid mode), in one transaction: all or none.
    Undo withdraws the whole batch."""
    return _decide(review, reviewer, body.sample_ids, body, scan_id)


@router.post("/undo", response_model=UndoResult, summary="Undo the reviewer's last decision")
def post_undo(review: Review, reviewer: Reviewer, body: Annotated[UndoIn | None, Body()] = None):
    """Withdraw the reviewer's most recent decision (or batch) still in force by appending
    rows that re-instate each sample's previous state. Repeat to go further back.
    Each entry's `undoes` is the decision_id withdrawn; `undone` is empty when there is nothing to undo.
    An undo that repeats an earlier `request_id` gets the earlier answer and undoes nothing more.
    Undo is per reviewer: it never withdraws another reviewer's decision."""
    return {"undone": review.undo(reviewer, request_id=body.request_id if body else None)}


@router.get("", summary="Decision log")
def list_decisions(
    db: Db,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[int | None, Query(ge=0, le=MAX_SQLITE_INT,
                                           description="only rows with a smaller decision_id")] = None,
):
    """Every recorded row (including changed, cleared and undo rows), newest first."""
    return decision_log(db, limit=limit, before_id=before_id)
