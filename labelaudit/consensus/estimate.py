"""Consensus labels from several annotations per image and the folds' held-out probabilities.

The model is a Dawid-Skene generative model whose class prior is the cross-validated
classifier's held-out probability (tempered): for image ``i`` with held-out probabilities
``p_i`` and annotations ``l_ia``,

    P(true = y | annotations, image) ∝ p_i[y] ** w * (prod_a pi_a[y, l_ia]) ** v

where ``pi_a[y, l]`` = P(annotator ``a`` says ``l`` | true class ``y``) is each annotator's
confusion matrix, shrunk towards the pooled confusion of all annotators (so an annotator
with few labels borrows strength from the others). Expectation-maximisation alternates
between the posteriors and the confusion matrices; the model's weight ``w`` (a
temperature) and the weight ``v`` of the annotations (``v < 1`` when annotators err on the
same hard images, which the product of independent votes would overcount) are chosen among
small grids by how well the posterior *without* each vote predicts that vote
(leave-one-vote-out log-likelihood), so an overconfident or a weak model is weighed as much
as it predicts the annotators, and a useless one drops out (``w = 0``).

Compared with CROWDLAB (``cleanlab.multiannotator``), which weighs each annotator by one
accuracy figure, the confusion matrices learn *which* classes each annotator mixes up
(cat/dog, automobile/truck), and the weight of the model is fitted rather than set from
its agreement with a majority vote. ``benchmarks/detect.py --annotators ...`` (and
``benchmarks/consensus_probs.py`` on a finished scan's probabilities) measures both on the
same held-out probabilities (README, "Several annotators per image").

Votes are integer arrays of shape (N, M) (M annotators): a class id, :data:`MISSING` (-1)
where the annotator did not label the image, or :data:`OTHER` (-2) where the annotator's
label is not a scanned class (it counts as an annotation that agrees with no consensus,
and carries no evidence).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

__all__ = ["MISSING", "OTHER", "ConsensusResult", "vote_matrix", "majority_vote", "estimate_consensus",
           "annotator_stats", "MODEL_WEIGHTS", "VOTE_WEIGHTS"]

MISSING = -1
OTHER = -2
#: Candidate weights of the model's log-probabilities (0 = annotations only, Dawid-Skene).
MODEL_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)
#: Candidate weights of the annotations' log-likelihood (1 = independent votes).
VOTE_WEIGHTS = (0.5, 0.75, 1.0)
_EPS = 1e-6


@dataclass
class ConsensusResult:
    """What :func:`estimate_consensus` estimated.

    Attributes
    ----------
    labels : numpy.ndarray of int64, shape (N,)
        Consensus class id of each image.
    posterior : numpy.ndarray of float64, shape (N, C)
        P(true class | annotations, image); rows sum to 1.
    quality : numpy.ndarray of float64, shape (N,)
        Probability that the consensus is right (higher = surer): ``posterior[i, labels[i]]``,
        capped for an image whose annotators disagree strictly below what it would be had they
        all voted for the consensus (a dissenting vote never makes the consensus surer, even
        where an annotator's estimated confusions would say so).
    agreement : numpy.ndarray of float64, shape (N,)
        Share of the image's annotations equal to the consensus (1 = unanimous).
    n_annotations : numpy.ndarray of int64, shape (N,)
        Annotations of each image (those for unscanned classes included).
    confusion : numpy.ndarray of float64, shape (M, C, C)
        ``confusion[a, y, l]`` = estimated P(annotator a says l | true class y).
    model_weight : float
        The chosen exponent ``w`` of the held-out probabilities.
    vote_weight : float
        The chosen exponent ``v`` of the annotations' likelihood.
    log_likelihood : float
        Leave-one-vote-out log-likelihood of the annotations at the chosen weight.
    """

    labels: np.ndarray
    posterior: np.ndarray
    quality: np.ndarray
    agreement: np.ndarray
    n_annotations: np.ndarray
    confusion: np.ndarray
    model_weight: float
    log_likelihood: float
    vote_weight: float = 1.0


def vote_matrix(votes: np.ndarray, n_classes: int) -> np.ndarray:
    """Vote counts per image and class, shape (N, C) (missing and unscanned-class votes left out)."""
    votes = np.asarray(votes)
    counts = np.zeros((votes.shape[0], n_classes))
    for a in range(votes.shape[1]):
        have = votes[:, a] >= 0
        np.add.at(counts, (np.flatnonzero(have), votes[have, a]), 1)
    return counts


def majority_vote(votes: np.ndarray, n_classes: int) -> np.ndarray:
    """Most frequent class among each image's votes; the provisional labels the folds train on.

    Parameters
    ----------
    votes : numpy.ndarray of int, shape (N, M)
        Class ids, :data:`MISSING` or :data:`OTHER`.
    n_classes : int

    Returns
    -------
    numpy.ndarray of int64, shape (N,)
        Ties go to the class with more votes over the whole dataset, then to the lower class
        id (deterministic); -1 for an image without any vote for a scanned class.
    """
    counts = vote_matrix(votes, n_classes)
    overall = counts.sum(axis=0)
    order = sorted(range(n_classes), key=lambda c: (-overall[c], c))  # tie-break preference
    bonus = np.empty(n_classes)
    bonus[order] = np.arange(n_classes, 0, -1) / (n_classes + 1)  # < 1: never outweighs a vote
    labels = np.argmax(counts + bonus, axis=1).astype(np.int64)
    labels[counts.sum(axis=1) == 0] = -1
    return labels


def estimate_consensus(votes: np.ndarray, pred_probs: np.ndarray, *, weights: tuple[float, ...] = MODEL_WEIGHTS,
                       vote_weights: tuple[float, ...] = VOTE_WEIGHTS, n_iter: int = 50,
                       shrinkage: float | None = None) -> ConsensusResult:
    """Consensus labels from annotations and held-out probabilities (see the module docstring).

    Parameters
    ----------
    votes : numpy.ndarray of int, shape (N, M)
        Annotations (class ids, :data:`MISSING`, :data:`OTHER`).
    pred_probs : numpy.ndarray, shape (N, C)
        Held-out probabilities of models trained on provisional labels (e.g. the majority vote).
    weights : tuple of float
        Candidate model weights ``w``.
    vote_weights : tuple of float
        Candidate annotation weights ``v``; the pair whose posteriors best predict each left-out
        vote is used.
    n_iter : int
        Maximum EM iterations per weight.
    shrinkage : float, optional
        Pseudo-count per class row pulling each annotator's confusion towards the pooled one
        (default: the number of classes).

    Returns
    -------
    ConsensusResult
    """
    votes = np.asarray(votes, dtype=np.int64)
    probs = np.clip(np.asarray(pred_probs, dtype=np.float64), _EPS, 1.0)
    n_classes = probs.shape[1]
    beta = float(n_classes if shrinkage is None else shrinkage)
    log_p = np.log(probs / probs.sum(axis=1, keepdims=True))
    best = None
    for v in vote_weights:
        for w in weights:
            posterior, confusion, _ = _em(votes, w * log_p, n_classes, beta, n_iter, v)
            ll = _leave_one_out(votes, posterior, confusion, v)
            if best is None or ll > best[2] + 1e-9:
                best = (posterior, confusion, ll, w, v)
    posterior, confusion, ll, w, v = best
    labels = _argmax_ties_to_votes(posterior, votes, n_classes)
    n_ann = (votes != MISSING).sum(axis=1)
    agree = (votes == labels[:, None]).sum(axis=1)
    quality = posterior[np.arange(len(labels)), labels]
    disputed = agree < n_ann
    unanimous = _unanimous_quality(votes[disputed], labels[disputed], w * log_p[disputed], confusion, v)
    quality[disputed] = np.minimum(quality[disputed], unanimous * (1 - 1e-9))
    return ConsensusResult(
        labels=labels, posterior=posterior, quality=quality,
        agreement=np.where(n_ann > 0, agree / np.maximum(n_ann, 1), np.nan), n_annotations=n_ann,
        confusion=confusion, model_weight=float(w), log_likelihood=float(ll), vote_weight=float(v))


def _unanimous_quality(votes: np.ndarray, labels: np.ndarray, log_prior: np.ndarray,
                       confusion: np.ndarray, v: float) -> np.ndarray:
    """P(true = labels[i]) had every annotator of image ``i`` voted ``labels[i]``, shape (n,)."""
    log_prior = log_prior - logsumexp(log_prior, axis=1, keepdims=True)
    joint = log_prior.copy()
    for a in range(votes.shape[1]):
        voted = np.flatnonzero(votes[:, a] != MISSING)
        joint[voted] += v * np.log(confusion[a][:, labels[voted]]).T
    return np.exp(joint[np.arange(len(labels)), labels] - logsumexp(joint, axis=1))


def _argmax_ties_to_votes(posterior: np.ndarray, votes: np.ndarray, n_classes: int) -> np.ndarray:
    """Posterior argmax; exact ties go to the majority vote's order (deterministic)."""
    return np.argmax(posterior + 1e-12 * vote_matrix(votes, n_classes), axis=1).astype(np.int64)


def _em(votes: np.ndarray, log_prior: np.ndarray, n_classes: int, beta: float, n_iter: int, v: float = 1.0):
    """EM for one pair of weights: (posterior (N, C), confusion (M, C, C), marginal log-likelihood)."""
    log_prior = log_prior - logsumexp(log_prior, axis=1, keepdims=True)
    m = votes.shape[1]
    start = np.full((n_classes, n_classes), 0.3 / max(n_classes - 1, 1))
    np.fill_diagonal(start, 0.7)
    confusion = np.repeat(start[None], m, axis=0)
    previous = -np.inf
    for _ in range(n_iter):
        joint = log_prior + v * _log_likelihood(votes, confusion)
        norm = logsumexp(joint, axis=1, keepdims=True)
        posterior = np.exp(joint - norm)
        ll = float(norm.sum())
        confusion = _confusions(votes, posterior, n_classes, beta)
        if ll - previous < 1e-7 * max(1.0, abs(ll)):
            break
        previous = ll
    joint = log_prior + v * _log_likelihood(votes, confusion)
    norm = logsumexp(joint, axis=1, keepdims=True)
    return np.exp(joint - norm), confusion, float(norm.sum())


def _leave_one_out(votes: np.ndarray, posterior: np.ndarray, confusion: np.ndarray, v: float = 1.0) -> float:
    """Sum over votes of log P(vote | the image's other votes and the model), shape ()."""
    total = 0.0
    for a in range(votes.shape[1]):
        have = np.flatnonzero(votes[:, a] >= 0)
        said = votes[have, a]
        own = confusion[a][:, said].T  # (n, C): P(says l | true y)
        without = posterior[have] / own ** v
        without /= without.sum(axis=1, keepdims=True)
        total += float(np.log(np.maximum((without * own).sum(axis=1), 1e-300)).sum())
    return total


def _log_likelihood(votes: np.ndarray, confusion: np.ndarray) -> np.ndarray:
    """``sum_a log confusion[a, y, l_ia]`` over each image's usable votes, shape (N, C)."""
    out = np.zeros((votes.shape[0], confusion.shape[1]))
    for a in range(votes.shape[1]):
        have = np.flatnonzero(votes[:, a] >= 0)
        out[have] += np.log(confusion[a][:, votes[have, a]]).T
    return out


def _counts(votes: np.ndarray, posterior: np.ndarray, n_classes: int) -> np.ndarray:
    """Expected ``(true y, said l)`` counts per annotator, shape (M, C, C)."""
    counts = np.zeros((votes.shape[1], n_classes, n_classes))
    for a in range(votes.shape[1]):
        have = np.flatnonzero(votes[:, a] >= 0)
        onehot = np.zeros((len(have), n_classes))
        onehot[np.arange(len(have)), votes[have, a]] = 1
        counts[a] = posterior[have].T @ onehot
    return counts


def _confusions(votes: np.ndarray, posterior: np.ndarray, n_classes: int, beta: float) -> np.ndarray:
    """Each annotator's confusion matrix, shrunk towards the pooled one (rows sum to 1)."""
    counts = _counts(votes, posterior, n_classes)
    pooled = counts.sum(axis=0) + 1.0 / n_classes + np.eye(n_classes)  # a light prior: mostly right
    pooled /= pooled.sum(axis=1, keepdims=True)
    smoothed = counts + beta * pooled[None]
    return smoothed / smoothed.sum(axis=2, keepdims=True)


def annotator_stats(votes: np.ndarray, result: ConsensusResult, top: int = 3) -> list[dict]:
    """Per annotator: labels given, agreement with the consensus, estimated quality, worst confusions.

    Parameters
    ----------
    votes : numpy.ndarray of int, shape (N, M)
    result : ConsensusResult
        From :func:`estimate_consensus` on the same votes.
    top : int
        How many confused class pairs to list.

    Returns
    -------
    list of dict, length M
        ``n_labels``; ``agreement`` (share of their labels equal to the consensus);
        ``quality`` (estimated accuracy, in [0, 1], higher = better: the diagonal of their
        confusion matrix weighted by the estimated classes of the images they labelled);
        ``confusion`` (C, C) counts of (consensus class, their label); ``most_confused``:
        up to ``top`` ``(consensus class id, their label id, count)`` off-diagonal cells,
        most frequent first.
    """
    out = []
    n_classes = result.posterior.shape[1]
    for a in range(votes.shape[1]):
        voted = np.flatnonzero(votes[:, a] != MISSING)
        usable = voted[votes[voted, a] >= 0]
        said = votes[usable, a]
        # P(right) = sum_y P(true y) P(says y | true y) over the images they labelled; labels
        # of unscanned classes are never right
        share = result.posterior[usable].mean(axis=0) if len(usable) else np.zeros(n_classes)
        quality = float(share @ np.diag(result.confusion[a])) * len(usable) / max(len(voted), 1)
        counts = np.zeros((n_classes, n_classes), dtype=np.int64)
        np.add.at(counts, (result.labels[usable], said), 1)
        off = [(int(y), int(l), int(counts[y, l])) for y in range(n_classes) for l in range(n_classes)
               if y != l and counts[y, l] > 0]
        out.append({
            "n_labels": int(len(voted)),
            "agreement": float((votes[voted, a] == result.labels[voted]).mean()) if len(voted) else float("nan"),
            "quality": quality if len(voted) else float("nan"),
            "confusion": counts,
            "most_confused": sorted(off, key=lambda t: (-t[2], t[0], t[1]))[:top],
        })
    return out
