"""JSON API: record decisions (one, many), undo the reviewer's last one, read the log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from .. import queries
from ..deps import Db, SettingsDep
from ..schemas import BatchDecisionIn, DecisionIn, DecisionResult, UndoResult

router = APIRouter(prefix="/api/decisions", tags=["decisions"])


def _decide(db, settings, ids, body):
    try:
        return {"recorded": queries.decide(db, settings, ids, body.action, label=body.label, note=body.note)}
    except queries.DecisionError as exc:
        raise HTTPException(422, str(exc)) from None


@router.post("", response_model=DecisionResult, summary="Record a decision")
def post_decision(body: DecisionIn, db: Db, settings: SettingsDep):
    """Append a decision for one sample, committed before the response is sent.

    `accept` keeps the given label, `suggested` takes the suggested one, `relabel` sets
    `label` (a class name), `unusable` drops the sample from the cleaned dataset and
    `clear` withdraws the decision in force. A `relabel` to the given or suggested class
    is stored as `accept` / `suggested`. `relabel` without `label` is a 422; so is an
    `accept` / `suggested` whose `label` differs from the label it keeps (use `relabel`).
    """
    return _decide(db, settings, [body.sample_id], body)


@router.post("/batch", response_model=DecisionResult, summary="Record one decision for many samples")
def post_batch(body: BatchDecisionIn, db: Db, settings: SettingsDep):
    """The same action for every sample (grid mode), in one transaction: all or none.
    Undo withdraws the whole batch."""
    return _decide(db, settings, body.sample_ids, body)


@router.post("/undo", response_model=UndoResult, summary="Undo the reviewer's last decision")
def post_undo(db: Db, settings: SettingsDep):
    """Withdraw the reviewer's most recent decision (or batch) still in force by appending
    rows that re-instate each sample's previous state. Repeat to go further back.
    Each entry's `undoes` is the decision_id withdrawn; `undone` is empty when there is nothing to undo."""
    return {"undone": queries.undo(db, settings)}


@router.get("", summary="Decision log")
def list_decisions(
    db: Db,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[int | None, Query(description="only rows with a smaller decision_id")] = None,
):
    """Every recorded row (including changed, cleared and undo rows), newest first."""
    rows = db.execute(
        "SELECT d.*, s.sample_id, l.undoes FROM decisions AS d LEFT JOIN samples AS s USING (path) "
        "LEFT JOIN decision_links AS l USING (decision_id) "
        "WHERE (:before IS NULL OR d.decision_id < :before) ORDER BY d.decision_id DESC LIMIT :limit",
        {"before": before_id, "limit": limit},
    ).fetchall()
    return [dict(r) for r in rows]
