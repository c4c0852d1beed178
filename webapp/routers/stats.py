"""JSON API: progress, per-class counts, confused pairs, score histogram, noise matrix, unscored images,
decisions on images the scan does not have."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from labelaudit.review import parse_class_order

from .. import queries
from ..deps import Db, Review, Reviewer, SettingsDep, class_order
from ..schemas import (AcceptedLabelChange, ClassOrderIn, ClassOrderOut, NoiseMatrix, OrphanedDecision, PairCount, Progress, Stats,
                       UnscoredImage)

router = APIRouter(prefix="/api", tags=["stats"])


@router.get("/stats", response_model=Stats, summary="Review statistics")
def get_stats(db: Db, review: Review, settings: SettingsDep, bins: Annotated[int, Query(ge=1, le=200)] = 40):
    """Progress, the scan summary, per-class counts, flagged (given -> suggested) pairs and a
    histogram of `mislabel_score` (split into flagged and unflagged samples)."""
    summary = settings.manifest.summary
    return {
        "progress": queries.progress(db, review.stats),
        "summary": summary.to_dict(),
        "estimated_noise_rate": summary.estimated_noise_rate,
        "classes": queries.class_counts(db, review.stats),
        "pairs": queries.pair_counts(db, review.stats),
        "histogram": queries.score_histogram(db, review.stats, bins),
    }


@router.get("/stats/progress", response_model=Progress, summary="Review progress")
def get_progress(db: Db, review: Review):
    return queries.progress(db, review.stats)


@router.get("/noise-matrix", response_model=NoiseMatrix | None, summary="Estimated noise matrix")
def get_noise_matrix(settings: SettingsDep):
    """`matrix[i][j]` = P(given label = classes[i] | true label = classes[j]); null if the
    scan did not estimate one."""
    return settings.noise_matrix()


@router.get("/classes", response_model=list[str], summary="Class names in class-id order")
def get_classes(settings: SettingsDep):
    return settings.classes


@router.get("/unscored", response_model=list[UnscoredImage], summary="Images the scan did not score")
def get_unscored(db: Db, review: Review):
    """Images of the input with a usable label that were not scored (in a class too small
    for the folds, undecodable, ...), by path, each with the decision in force for it from the
    review of an earlier scan (`decision`, `decision_label`; null when none). The export keeps the
    readable ones with that decision applied, else with their given label. Empty for scans made
    before these were recorded."""
    return queries.unscored(db, review.stats)["items"]


@router.get("/orphaned-decisions", response_model=list[OrphanedDecision],
            summary="Decisions on images this scan does not have")
def get_orphaned_decisions(db: Db, review: Review):
    """Decisions in force whose path no image of this scan has (the file was renamed, moved or
    removed since): kept in the log, and applied again by a later scan that finds the file, but
    not applied by this scan's export."""
    return queries.orphaned(db, review.stats)


@router.get("/accepted-label-changes", response_model=list[AcceptedLabelChange],
            summary="Accepted labels that are no longer the given label")
def get_accepted_label_changes(db: Db, review: Review):
    """Accept decisions in force whose accepted label is not the sample's given label any more (the labels
    changed since the review, e.g. an edited labels CSV): the export gives the accepted label."""
    return queries.accepted_changed(db, review.stats)


@router.get("/pairs", response_model=list[PairCount], summary="Flagged given -> suggested pairs")
def get_pairs(db: Db, review: Review):
    """Flagged pairs with a different suggestion, most frequent first, with how many are reviewed."""
    return queries.pair_counts(db, review.stats)


@router.get("/reviewers", summary="Decisions per reviewer")
def get_reviewers(db: Db, review: Review) -> list[dict]:
    """Per reviewer name: decisions in force (`n_in_force`, of them `n_unsure` and `n_changed`),
    rows written (`n_rows`, undo rows included) and the time of the last one."""
    return queries.reviewers(db, review.stats)


@router.get("/per-class", summary="Per-class label quality")
def get_per_class(db: Db, review: Review, settings: SettingsDep) -> list[dict]:
    """Per class: estimated precision and recall of its labels (from the noise matrix), flagged and
    reviewed counts, and the worst-confused class."""
    counts = queries.class_counts(db, review.stats)
    pairs = queries.pair_counts(db, review.stats)
    return queries.per_class(list(class_order(db, settings).order), counts, pairs, settings.noise_matrix())


@router.get("/class-order", response_model=ClassOrderOut, summary="Class order and number keys")
def get_class_order(db: Db, settings: SettingsDep):
    order = class_order(db, settings)
    return {"order": list(order.order), "keys": order.keys}


@router.put("/class-order", response_model=ClassOrderOut, summary="Set the class order and number keys")
def put_class_order(body: ClassOrderIn, review: Review, reviewer: Reviewer, settings: SettingsDep):
    """Stored in the scan database for every reviewer. An unknown class or a repeated key is a 422."""
    order = parse_class_order(body.order, settings.classes)
    review.set_class_order(order, reviewer=reviewer)
    return {"order": list(order.order), "keys": order.keys}
