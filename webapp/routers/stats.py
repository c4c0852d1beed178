"""JSON API: progress, per-class counts, confused pairs, score histogram, noise matrix, unscored images."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from .. import queries
from ..deps import Db, Review, SettingsDep
from ..schemas import NoiseMatrix, Progress, Stats, UnscoredImage

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
    for the folds, undecodable, ...), by path. The export keeps them with their given label.
    Empty for scans made before these were recorded."""
    return queries.unscored(db, review.stats)["items"]
