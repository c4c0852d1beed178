"""JSON API: progress, per-class counts, confused pairs, score histogram, noise matrix."""

from __future__ import annotations

from fastapi import APIRouter

from .. import queries
from ..deps import Db, SettingsDep
from ..schemas import NoiseMatrix, Progress, Stats

router = APIRouter(prefix="/api", tags=["stats"])


def noise_matrix(settings) -> dict | None:
    nm = settings.meta.get("noise_matrix")
    if not nm or not nm.get("classes"):
        return None
    return {"classes": list(nm["classes"]), "matrix": [[float(v or 0) for v in row] for row in nm["matrix"]]}


def estimated_noise_rate(settings) -> float | None:
    value = (settings.meta.get("summary") or {}).get("estimated_noise_rate")
    return None if value is None else float(value)


@router.get("/stats", response_model=Stats, summary="Review statistics")
def get_stats(db: Db, settings: SettingsDep, bins: int = 40):
    """Progress, the scan summary, per-class counts, flagged (given -> suggested) pairs and a
    histogram of `mislabel_score` (split into flagged and unflagged samples)."""
    return {
        "progress": queries.progress(db),
        "summary": settings.meta.get("summary") or {},
        "estimated_noise_rate": estimated_noise_rate(settings),
        "classes": queries.class_counts(db),
        "pairs": queries.pair_counts(db),
        "histogram": queries.score_histogram(db, max(1, min(bins, 200))),
    }


@router.get("/stats/progress", response_model=Progress, summary="Review progress")
def get_progress(db: Db):
    return queries.progress(db)


@router.get("/noise-matrix", response_model=NoiseMatrix | None, summary="Estimated noise matrix")
def get_noise_matrix(settings: SettingsDep):
    """`matrix[i][j]` = P(given label = classes[i] | true label = classes[j]); null if the
    scan did not estimate one."""
    return noise_matrix(settings)


@router.get("/classes", response_model=list[str], summary="Class names in class-id order")
def get_classes(settings: SettingsDep):
    return settings.classes
