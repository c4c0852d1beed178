"""Confident-learning signals: cleanlab on the out-of-sample probabilities."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from labelaudit.signals.base import OutOfSampleSignal, Signal
from labelaudit.signals.evidence import Evidence

__all__ = ["confident_learning", "temper", "LabelQuality", "OosMargin", "OosSelfConfidence", "ClLabelIssue"]

#: Bounds of the temperature :func:`temper` fits.
TEMPERATURE_RANGE = (0.05, 20.0)


def confident_learning(labels: np.ndarray, pred_probs: np.ndarray) -> dict[str, np.ndarray | int | float]:
    """cleanlab's confident learning on out-of-sample probabilities.

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (N,)
    pred_probs : numpy.ndarray, shape (N, C)

    Returns
    -------
    dict
        ``label_quality`` (N,) self-confidence, lower = more likely mislabeled;
        ``label_issue`` (N,) bool from ``find_label_issues``; ``noise_matrix`` (C, C);
        ``n_label_issues``: the flag count, the number of off-diagonal entries of the
        confident joint (``num_label_issues(..., estimation_method="off_diagonal")``) of
        ``pred_probs`` tempered to fit the given labels (:func:`temper`); ``temperature``:
        that temperature. Held-out probabilities of models trained for many epochs are
        overconfident for the given labels, and overconfident probabilities put more samples
        above another class's threshold: the untempered count was 1.02-1.22x the tempered
        one on the development scans, and further from the true number of wrong labels on
        every one (README, "Score, suggestion, flag"). Only the count is tempered.
    """
    from cleanlab.count import estimate_py_and_noise_matrices_from_probabilities, num_label_issues
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    _, noise_matrix, _, _ = estimate_py_and_noise_matrices_from_probabilities(labels, pred_probs)
    tempered, temperature = temper(labels, pred_probs)
    return {
        "label_quality": get_label_quality_scores(labels, pred_probs, method="self_confidence"),
        "label_issue": find_label_issues(labels, pred_probs, n_jobs=1),
        "noise_matrix": noise_matrix,
        "n_label_issues": int(num_label_issues(labels, tempered, estimation_method="off_diagonal")),
        "temperature": temperature,
    }


def temper(labels: np.ndarray, pred_probs: np.ndarray) -> tuple[np.ndarray, float]:
    """``pred_probs`` with the temperature that best predicts the given labels (temperature scaling).

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (N,)
    pred_probs : numpy.ndarray, shape (N, C)
        Out-of-sample probabilities.

    Returns
    -------
    tempered : numpy.ndarray of float64, shape (N, C)
        ``softmax(log(pred_probs) / T)``: same order within each row, rows sum to 1.
    temperature : float
        ``T`` in :data:`TEMPERATURE_RANGE` minimising the mean negative log-likelihood of the
        given labels (> 1: the probabilities were overconfident for these labels, which label
        noise alone also makes them; 1, also when no temperature fits better: as they are).
        Probabilities below 1e-12 are raised to it first, so entries under it tie.
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    log_p = np.log(np.clip(np.asarray(pred_probs, dtype=np.float64), 1e-12, None))
    rows = np.arange(len(labels))

    def loss(temperature: float) -> float:
        return float(-log_softmax(log_p / temperature, axis=1)[rows, labels].mean())

    fitted = minimize_scalar(loss, bounds=TEMPERATURE_RANGE, method="bounded", options={"xatol": 1e-4})
    temperature = float(fitted.x) if loss(fitted.x) < loss(1.0) else 1.0
    return np.exp(log_softmax(log_p / temperature, axis=1)), temperature


class LabelQuality(Signal):
    """cleanlab self-confidence on :attr:`Evidence.pred_probs` (image and mirror averaged when both exist)."""

    name = "label_quality"
    direction = -1
    description = ("cleanlab self-confidence: out-of-sample probability of the given label "
                   "(averaged over image and mirror when flips are on)")
    requires = ("holdout_probs",)

    def compute(self, evidence: Evidence) -> np.ndarray:
        return evidence.confident_learning["label_quality"]


class OosMargin(Signal):
    """Out-of-sample log-probability margin of the given label; lower = more likely mislabeled.

    ``log p(given) - log max_{j != given} p(j)`` on :attr:`Evidence.pred_probs` (image and
    mirror averaged when both exist), shape (N,): negative exactly when another class is
    more likely than the given one. Unlike the self-confidence it also weighs how sure the
    model is of the alternative: a 0.3 for the given label is more suspicious next to a 0.7
    than next to three 0.2s. The default score's out-of-sample component (README, "Score,
    suggestion, flag").
    """

    name = "oos_margin"
    direction = -1
    description = ("out-of-sample log-probability margin: log p(given label) - log p(most likely other class), "
                   "image and mirror averaged when flips are on")
    requires = ("holdout_probs",)

    def compute(self, evidence: Evidence) -> np.ndarray:
        return log_margin(evidence.pred_probs, evidence.labels)


def log_margin(pred_probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``log p(given) - log max_{j != given} p(j)`` of probabilities (N, C) for labels (N,); shape (N,).

    Lower = more likely mislabeled (negative: another class is likelier than the given one).

    Probabilities are clipped at 1e-12 before the logarithm (a float32 softmax can be 0).
    With one class there is no alternative: the margin is +inf.
    """
    probs = np.clip(np.asarray(pred_probs, dtype=np.float64), 1e-12, None)
    rows = np.arange(len(labels))
    given = probs[rows, labels]
    others = probs.copy()
    others[rows, labels] = -np.inf
    best_other = others.max(axis=1) if probs.shape[1] > 1 else np.zeros(len(labels))
    with np.errstate(divide="ignore"):
        return np.log(given) - np.log(best_other)


class OosSelfConfidence(OutOfSampleSignal):
    """Out-of-sample probability of the given label, image only; lower = more likely mislabeled."""

    name = "oos_self_confidence"
    direction = -1
    description = "out-of-sample probability of the given label, image only"
    requires = ("holdout_probs",)

    def per_sample(self, held_out: Mapping[str, np.ndarray], labels: np.ndarray) -> np.ndarray:
        return held_out["holdout_probs"][np.arange(len(labels)), labels]


class ClLabelIssue(Signal):
    """1.0 where ``cleanlab.filter.find_label_issues`` flags the sample, else 0.0."""

    name = "cl_label_issue"
    direction = +1
    description = "1 if cleanlab.filter.find_label_issues flags the sample"
    requires = ("holdout_probs",)

    def compute(self, evidence: Evidence) -> np.ndarray:
        return evidence.confident_learning["label_issue"].astype(float)
