"""Request and response models of the JSON API (they also document it in OpenAPI)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from labelaudit.review.actions import ACTIONS, IN_FORCE_ACTIONS
from labelaudit.review.database import MAX_SQLITE_INT

Action = Literal[ACTIONS]
#: The decision filter: an action in force, or ``changed`` (label differs from the given one).
DecisionFilter = Literal[IN_FORCE_ACTIONS + ("changed",)]
#: A sample id in a URL path: a non-negative SQLite integer (anything larger is a 422, never an overflow).
SampleId = Annotated[int, Field(ge=0, le=MAX_SQLITE_INT)]
#: A sample id in a JSON body: the same, and a JSON integer (`true` or "3" are a 422, not sample 1 or 3).
BodySampleId = Annotated[int, Field(ge=0, le=MAX_SQLITE_INT, strict=True)]
#: A client's id of one user action; a retry sends the same id and gets the first result.
RequestId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{8,64}$", description=(
    "client-chosen id of this user action (8-64 of A-Z a-z 0-9 _ -); a retry with the same id "
    "is answered with the first result and writes nothing"))]

#: Accepted spellings of the yes/no filters (case-insensitive); ``all`` means no filter.
BoolFilter = Literal["1", "0", "true", "false", "yes", "no", "all"]
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


class SampleFilters(BaseModel):
    """Filters and order of a sample listing; the same query parameters drive the pages."""

    model_config = ConfigDict(extra="ignore")

    given: str | None = Field(None, description="given label equals this class")
    suggested: str | None = Field(None, description="suggested label equals this class")
    flagged: BoolFilter | None = Field(
        None, description=("1 / true / yes: flagged only, 0 / false / no: unflagged only, all: both "
                           "(API default; the pages default to 1)"))
    reviewed: BoolFilter | None = Field(
        None, description=("1 / true / yes: with a decision in force, 0 / false / no: without one, "
                           "all (default): both"))
    decision: DecisionFilter | None = Field(
        None, description="action of the decision in force; `changed`: label differs from the given one")
    score_min: float | None = Field(None, ge=0, le=1, description="mislabel_score >= score_min")
    score_max: float | None = Field(None, ge=0, le=1, description="mislabel_score <= score_max")
    q: str | None = Field(None, max_length=200, description="case-insensitive substring of the file path")
    tag: str | None = Field(None, max_length=40, description="samples carrying this tag")
    reviewer: str | None = Field(None, max_length=64, description="decision in force recorded by this reviewer")
    disagree: BoolFilter | None = Field(
        None, description=("several annotators per image: 1 / true / yes: some annotator's label is not the "
                           "consensus (annotators disagree), 0 / false / no: all agree with it, all: both"))
    annotator: str | None = Field(None, max_length=200, description="images this annotator labelled")
    outvoted: BoolFilter | None = Field(
        None, description="with `annotator`: 1: their label is not the consensus (their disputed images), 0: it is")
    vote: str | None = Field(None, max_length=200, description="with `annotator`: their label equals this class")
    selection: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{8,40}$",
                                  description="a selection's id (`POST /api/selections`, the map's box)")
    sort: Literal["score", "score_asc", "path"] | None = Field(
        None, description="score (highest first, default), score_asc, or path")

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_none(cls, value):
        return None if isinstance(value, str) and value.strip() == "" else value

    @field_validator("flagged", "reviewed", "disagree", "outvoted", mode="before")
    @classmethod
    def _bool_synonyms(cls, value, info):
        """Store one spelling: flagged as 1 / 0 / all, reviewed as yes / no (all: no filter)."""
        if isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            return value
        v = value.strip().lower()
        if info.field_name in ("flagged", "disagree", "outvoted"):
            return "1" if v in _TRUE else "0" if v in _FALSE else v
        return "yes" if v in _TRUE else "no" if v in _FALSE else None if v == "all" else v


class TopClass(BaseModel):
    label: str
    prob: float


class Vote(BaseModel):
    annotator: str
    label: str
    agrees: bool = Field(description="the label is the consensus (the scan's given label)")


class DecisionOut(BaseModel):
    decision_id: int
    action: Action
    label: str | None
    note: str
    reviewer: str
    decided_at: str
    undoes: int | None = Field(None, description="for an undo row: the decision_id it withdrew")


class Sample(BaseModel):
    sample_id: int
    path: str
    name: str
    given_label: str
    suggested_label: str
    mislabel_score: float
    flagged: bool
    score_rank: int
    top_classes: list[TopClass]
    signals: dict[str, float | None]
    decision: DecisionOut | None = Field(None, description="decision in force; null when unreviewed")
    tags: list[str] = Field(default_factory=list, description="free tags of the sample")
    votes: list[Vote] = Field(default_factory=list, description=(
        "several annotators per image: every annotator's label (the given label is their consensus)"))
    image_url: str
    thumb_url: str


class SamplePage(BaseModel):
    items: list[Sample]
    total: int | None = Field(None, description="number of matching samples (when with_total)")
    next_after: str | None = Field(None, description="pass as `after` for the next page; null at the end")
    prev_before: str | None = Field(None, description="pass as `before` for the previous page")


class Neighbour(BaseModel):
    sample: Sample
    similarity: float


class SampleDetail(Sample):
    history: list[DecisionOut]
    neighbours: list[Neighbour] | None = Field(None, description="null when the scan stored no embeddings")


class DecisionIn(BaseModel):
    sample_id: BodySampleId
    action: Action
    label: str | None = Field(None, description=(
        "class for `relabel` (required); optional for `accept` / `suggested`, where it must equal the "
        "given / suggested label (422 otherwise); ignored for `unusable` and `clear`"))
    note: str = Field("", max_length=2000)
    request_id: RequestId | None = None


class BatchDecisionIn(BaseModel):
    sample_ids: list[BodySampleId] = Field(..., min_length=1, max_length=5000)
    action: Action
    label: str | None = Field(None, description="as for a single decision, checked for every sample")
    note: str = Field("", max_length=2000)
    request_id: RequestId | None = None


class TagsIn(BaseModel):
    add: list[str] = Field(default_factory=list, max_length=50)
    remove: list[str] = Field(default_factory=list, max_length=50)


class TagsOut(BaseModel):
    sample_id: int
    path: str
    tags: list[str]


class SelectionIn(BaseModel):
    sample_ids: list[BodySampleId] = Field(..., min_length=1, max_length=200_000)


class SelectionOut(BaseModel):
    selection: str = Field(description="pass as `selection` to the listings, the grid and the queue")
    n: int
    grid_url: str


class ClassOrderIn(BaseModel):
    order: list[str] = Field(default_factory=list, max_length=10_000, description=(
        "`NAME` or `KEY=NAME` (KEY one digit) in the wanted order; [] or [\"natural\"]: natural order, "
        "[\"dataset\"]: the scan's order; classes not named follow in natural order"))


class ClassOrderOut(BaseModel):
    order: list[str]
    keys: dict[str, str] = Field(description="{class: number key}")


class UndoIn(BaseModel):
    request_id: RequestId | None = None


class RecordedDecision(BaseModel):
    sample_id: int
    path: str
    decision: DecisionOut | None = Field(None, description="decision now in force; null when cleared")
    undoes: int | None = Field(None, description="for an undo: the decision_id it withdrew (also when "
                               "`decision` is null)")


class DecisionResult(BaseModel):
    recorded: list[RecordedDecision]


class UndoResult(BaseModel):
    undone: list[RecordedDecision] = Field(description="samples whose decision was withdrawn, with their new state")


class Progress(BaseModel):
    n_samples: int
    n_flagged: int
    n_reviewed: int
    n_reviewed_flagged: int
    n_changed: int
    n_unsure: int = Field(0, description="samples waiting for a second opinion (counted in n_reviewed)")
    by_action: dict[str, int]


class ClassCount(BaseModel):
    name: str
    n_samples: int
    n_flagged: int
    n_suggested: int
    n_relabeled_from: int
    n_relabeled_to: int
    n_unusable: int
    n_reviewed: int = 0


class PairCount(BaseModel):
    given: str
    suggested: str
    n: int
    n_reviewed: int


class HistogramBin(BaseModel):
    lo: float
    hi: float
    n_flagged: int
    n_unflagged: int


class Stats(BaseModel):
    progress: Progress
    summary: dict
    estimated_noise_rate: float | None
    classes: list[ClassCount]
    pairs: list[PairCount]
    histogram: list[HistogramBin]


class UnscoredImage(BaseModel):
    path: str = Field(description="relative to the dataset root")
    given_label: str
    reason: str = Field(description="why it was not scored (class too small for the folds, undecodable, ...)")
    readable: bool = Field(description="the file could be decoded")
    decision: str | None = Field(None, description="the decision in force for the image, made when an earlier "
                                                   "scan scored it (the export applies it); null: none")
    decision_label: str | None = Field(None, description="the label that decision gives (null for unusable, unsure)")
    reviewer: str | None = None
    decided_at: str | None = None


class AcceptedLabelChange(BaseModel):
    path: str = Field(description="relative to the dataset root")
    given_label: str = Field(description="the given label now")
    label: str = Field(description="the label the accept decision kept (the given label then)")
    reviewer: str
    decided_at: str


class OrphanedDecision(BaseModel):
    path: str = Field(description="relative to the dataset root; no image of this scan has it")
    action: str
    label: str | None = Field(None, description="the label the decision gives (null for unusable, unsure)")
    reviewer: str
    decided_at: str


class NoiseMatrix(BaseModel):
    classes: list[str]
    matrix: list[list[float]] = Field(description="matrix[i][j] = P(given = classes[i] | true = classes[j])")
