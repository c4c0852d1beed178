"""Scoring a scan whose images carry several annotations: the consensus becomes the given label.

The folds trained on the provisional labels (:func:`~labelaudit.consensus.majority_vote`);
here their held-out probabilities and the annotations give the consensus
(:func:`~labelaudit.consensus.estimate_consensus`), every signal whose labels can change
is computed against it, and ``mislabel_score`` / ``flagged`` mean "the consensus is probably
wrong".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from labelaudit.consensus.estimate import ConsensusResult, annotator_stats, estimate_consensus
from labelaudit.scoring import combine, flag, suggest
from labelaudit.signals import SIGNALS, Signals, compute_signals
from labelaudit.signals.evidence import Evidence

__all__ = ["CONSENSUS_RECIPE", "CONSENSUS_SIGNALS", "ANNOTATOR_COLUMNS", "ConsensusScores", "score_consensus"]

#: Per-image consensus figures stored next to the signals: name -> (direction, description).
CONSENSUS_SIGNALS = {
    "consensus_quality": (-1, "probability that the consensus label is right, from every annotation, each "
                              "annotator's estimated confusions and the held-out model probabilities"),
    "agreement": (-1, "share of the image's annotators whose label is the consensus (1 = unanimous)"),
}
#: Columns of ``annotators.csv`` (and of the database table ``annotators``).
ANNOTATOR_COLUMNS = ["annotator", "n_labels", "agreement", "quality", "most_confused"]


@dataclass
class ConsensusScores:
    """What :func:`score_consensus` returns.

    Attributes
    ----------
    scores : pandas.DataFrame, shape (N, 7 + n_signals)
        ``path, given_label`` (the consensus), ``consensus_label, suggested_label,
        mislabel_score, flagged, n_annotations``, then ``agreement, consensus_quality`` and
        the signals.
    signals : Signals
        Signals against the consensus, with the two consensus columns first in ``table``.
    labels : numpy.ndarray of int64, shape (N,)
        Consensus class ids.
    consensus : ConsensusResult
    annotators : pandas.DataFrame
        :data:`ANNOTATOR_COLUMNS`, one row per annotator.
    summary : dict
        Figures for the scan summary.
    """

    scores: pd.DataFrame
    signals: Signals
    labels: np.ndarray
    consensus: ConsensusResult
    annotators: pd.DataFrame
    summary: dict


#: The score of a scan with several annotators per image: the probability that the consensus is right.
#: It already holds the model's held-out evidence; the in-sample signals (``flip_loss_in``, ``aum``)
#: refer to the label the folds trained on, not to the consensus, and added nothing on CIFAR-10N
#: (README, "Several annotators per image").
CONSENSUS_RECIPE = ("consensus_quality",)


def _direction(name: str) -> int:
    return CONSENSUS_SIGNALS[name][0] if name in CONSENSUS_SIGNALS else SIGNALS[name].direction


def combine_consensus(table: pd.DataFrame, components: Sequence[str]) -> np.ndarray:
    """Mean oriented percentile rank of ``components`` (consensus columns included), shape (N,), higher = worse.

    :func:`labelaudit.scoring.combine` with the consensus columns' directions; raises
    :class:`~labelaudit.errors.ScanError` when none of ``components`` is in ``table``.
    """
    return combine(table, components, direction=_direction)


def score_consensus(results, provisional: np.ndarray, votes: np.ndarray, paths: Sequence[str],
                    classes: Sequence[str], annotators: Sequence[str], components: Sequence[str],
                    flag_threshold: float | None = None) -> ConsensusScores:
    """Consensus, signals against it, ``mislabel_score``, flag, suggestion and annotator figures.

    Parameters
    ----------
    results : sequence of FoldResult
        The folds, trained on ``provisional``.
    provisional : numpy.ndarray of int, shape (N,)
        The labels the folds trained on (majority vote).
    votes : numpy.ndarray of int, shape (N, M)
        Annotations as class ids (-1 missing, -2 a class not scanned).
    paths, classes, annotators : sequences of str
        Image paths (N), class names (C), annotator names (M).
    components : sequence of str
        The single-label recipe, used when every image has one annotation (else
        :data:`CONSENSUS_RECIPE`).
    flag_threshold : float, optional
        Flag ``mislabel_score >= flag_threshold`` instead of the estimated number of wrong consensus labels.

    Returns
    -------
    ConsensusScores

    Notes
    -----
    With exactly one annotation per image the scan *is* a single-label scan: the consensus is
    each image's label, ``mislabel_score``, ``flagged`` and the suggestion are those of the
    single-label recipe, and ``consensus_quality`` is ``label_quality``.
    """
    n_classes = len(classes)
    result = estimate_consensus(votes, Evidence(results, provisional, n_classes).pred_probs)
    single = bool(((votes != -1).sum(axis=1) == 1).all() and (votes != -2).all())
    labels = np.asarray(provisional, dtype=np.int64) if single else result.labels
    signals = compute_signals(results, labels, n_classes)  # held-out signals against the consensus
    if single:
        result = _as_given(result, labels)
        quality, comps, posterior, n_wrong = (signals.table["label_quality"].to_numpy(), tuple(components),
                                              signals.pred_probs, signals.n_label_issues)
    else:
        quality, comps, posterior = result.quality, CONSENSUS_RECIPE, result.posterior
        n_wrong = int(round(float((1 - quality).sum())))
    signals.table = pd.concat([pd.DataFrame({"agreement": result.agreement, "consensus_quality": quality}),
                               signals.table], axis=1)
    comps = [c for c in comps if c in signals.table.columns]
    scores = combine_consensus(signals.table, comps)
    flagged = flag(scores, n_estimated=n_wrong, threshold=flag_threshold)
    names = np.asarray(classes, dtype=object)
    table = pd.DataFrame({
        "path": np.asarray(paths, dtype=object), "given_label": names[labels], "consensus_label": names[labels],
        "suggested_label": names[suggest(posterior, labels, flagged)], "mislabel_score": scores,
        "flagged": flagged, "n_annotations": result.n_annotations,
    })
    summary = _summary(result, provisional, len(annotators), n_wrong, comps)
    summary["one_annotation_per_image"] = single  # its count is the single-label scan's (tempered)
    return ConsensusScores(scores=pd.concat([table, signals.table], axis=1), signals=signals, labels=labels,
                           consensus=result, annotators=_annotator_table(votes, result, classes, annotators),
                           summary=summary)


def _summary(result: ConsensusResult, provisional: np.ndarray, n_annotators: int, n_wrong: int,
             components: list[str]) -> dict:
    """The scan summary's ``consensus`` entry (:class:`~labelaudit.scandir.ScanSummary`)."""
    return {"n_annotators": n_annotators, "n_annotations": int(result.n_annotations.sum()),
            "n_disputed": int((result.agreement < 1).sum()),
            "n_changed_from_majority": int((result.labels != provisional).sum()),
            "model_weight": result.model_weight, "vote_weight": result.vote_weight,
            "estimated_wrong_consensus": n_wrong, "score_components": components}


def _as_given(result: ConsensusResult, labels: np.ndarray) -> ConsensusResult:
    """``result`` with the consensus pinned to ``labels`` (one annotation per image)."""
    from dataclasses import replace

    return replace(result, labels=labels, quality=result.posterior[np.arange(len(labels)), labels],
                   agreement=np.ones(len(labels)))


def _annotator_table(votes: np.ndarray, result: ConsensusResult, classes: Sequence[str],
                     annotators: Sequence[str]) -> pd.DataFrame:
    """``annotators.csv``: one row per annotator (see :data:`ANNOTATOR_COLUMNS`)."""
    rows = []
    for name, s in zip(annotators, annotator_stats(votes, result)):
        confused = "; ".join(f"{classes[y]} -> {classes[l]} ({n})" for y, l, n in s["most_confused"])
        rows.append((name, s["n_labels"], s["agreement"], s["quality"], confused))
    return pd.DataFrame(rows, columns=ANNOTATOR_COLUMNS)
