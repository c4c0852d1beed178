"""From signals to one ``mislabel_score``, a suggested label and the ``flagged`` set.

Combination rule (no ground truth needed): every component signal is turned into its
percentile rank among the scanned samples, oriented so that 1 = most suspicious, and
``mislabel_score`` is the mean of those ranks. It is therefore in [0, 1], higher =
more likely mislabeled, and insensitive to the very different scales of losses,
margins and probabilities. It is a *relative* score; whether a sample is proposed for
review is decided by ``flagged``.

Flag rule: confident learning estimates how many samples are mislabeled -- the
off-diagonal count of its confident joint
(``cleanlab.count.num_label_issues(..., estimation_method="off_diagonal")``) on the held-out
probabilities tempered to fit the given labels
(:func:`labelaudit.signals.confident.temper`) -- and the that-many highest-scoring samples
are flagged. The calibrated variant overshot the true
noise rate by 1.5-2x with the fold models of a CPU scan (on every development run, real and
synthetic noise), halving the precision of the review queue; the uncalibrated count is
closer (README, "Choosing the default"). ``flag_threshold`` replaces the rule by a fixed
score threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from labelaudit.errors import ScanError
from labelaudit.signals.registry import SIGNALS, SignalRegistry

__all__ = ["RECIPES", "DEFAULT_RECIPE", "DEFAULT_RECIPE_NO_FLIP", "DEFAULT_RECIPE_ARRAYS", "suspicion", "combine", "flag", "suggest"]

#: Candidate combinations (component signals of the rank mean). The defaults were chosen
#: by ``benchmarks/detect.py`` on a development split (see the README, "Choosing the
#: default"): the highest mean average precision over the development runs among the
#: recipes whose signals a scan has.
RECIPES: dict[str, tuple[str, ...]] = {
    "margin+flip": ("oos_margin", "flip_loss_in"),
    "margin+aum": ("oos_margin", "aum"),
    "margin+aum+flip": ("oos_margin", "aum", "flip_loss_in"),
    "margin+dynamics": ("oos_margin", "aum", "learned_epoch", "forgetting_events", "flip_loss_in"),
    "cleanlab": ("label_quality",),
    "cleanlab+aum": ("label_quality", "aum"),
    "cleanlab+flip": ("label_quality", "flip_loss_in"),
    "cleanlab+aum+flip": ("label_quality", "aum", "flip_loss_in"),
    "aum+flip": ("aum", "flip_loss_in"),
    "all-dynamics": ("label_quality", "aum", "learned_epoch", "forgetting_events", "flip_loss_in"),
    # scans from embeddings or predicted probabilities (README, "Bring your own model")
    "cleanlab+knn": ("label_quality", "knn_agreement"),
    "knn": ("knn_agreement",),
    "cleanlab+aum+knn": ("label_quality", "aum", "knn_agreement"),
}
#: The default: the out-of-sample log-probability margin (``oos_margin``), the heads' area
#: under the margin (``aum``) and the never-trained-on mirror's in-sample loss
#: (``flip_loss_in``). Chosen by the highest mean average precision over the four human-noise
#: development scans (CIFAR-10N labels of images of index < 30000; README, "Choosing the
#: default"): it ranked ahead of ``margin+flip`` and of every ``cleanlab`` recipe on each of
#: them, in AUROC and AP.
DEFAULT_RECIPE = "margin+aum+flip"
#: Without mirror views (``--no-flip``): the best recipe of the same development runs without
#: a mirror signal.
DEFAULT_RECIPE_NO_FLIP = "margin+aum"
#: Scans from ``--features`` / ``--pred-probs``: confident learning + the heads' AUM (the
#: highest mean AP on the development runs of ``benchmarks/byom.py``: synthetic Gaussian
#: embeddings and the CIFAR-10N development slice; kNN agreement ranked lower on both).
#: With ``--pred-probs`` nothing is trained, so this is confident learning alone.
DEFAULT_RECIPE_ARRAYS = "cleanlab+aum"


def suspicion(values: np.ndarray, direction: int) -> np.ndarray:
    """Percentile rank in (0, 1] oriented so that higher = more likely mislabeled.

    Parameters
    ----------
    values : numpy.ndarray, shape (N,)
        One signal; ties get their average rank.
    direction : {+1, -1}
        The signal's direction (see :data:`labelaudit.signals.SIGNALS`).

    Returns
    -------
    numpy.ndarray, shape (N,)
        Higher = more likely mislabeled.
    """
    return pd.Series(direction * np.asarray(values, dtype=float)).rank(pct=True, method="average").to_numpy()


def combine(table: pd.DataFrame, components: Sequence[str], *, registry: SignalRegistry | None = None,
            direction: Callable[[str], int] | None = None) -> np.ndarray:
    """Mean oriented percentile rank of the ``components`` present in ``table``.

    Parameters
    ----------
    table : pandas.DataFrame, shape (N, n_signals)
    components : sequence of str
        Signal names; those missing from ``table`` (flip signals with flips off) are
        left out of the mean.
    registry : SignalRegistry, optional
        Where each component's direction is read; default :data:`labelaudit.signals.SIGNALS`.
    direction : callable, optional
        ``name -> +1 / -1`` (+1: higher = more suspicious), in place of the registry's (the
        consensus columns of a scan with several annotators are no registered signals).

    Returns
    -------
    numpy.ndarray, shape (N,)
        ``mislabel_score`` in [0, 1], higher = more likely mislabeled.

    Raises
    ------
    ScanError
        None of ``components`` is a column of ``table``.
    """
    registry = SIGNALS if registry is None else registry
    direction = direction or (lambda name: registry[name].direction)
    present = [name for name in components if name in table.columns]
    if not present:
        raise ScanError(f"none of the signals {list(components)} is available")
    ranks = np.column_stack([suspicion(table[name].to_numpy(), direction(name)) for name in present])
    return ranks.mean(axis=1)


def flag(scores: np.ndarray, *, n_estimated: int, threshold: float | None = None) -> np.ndarray:
    """Boolean mask of the samples proposed for review.

    Parameters
    ----------
    scores : numpy.ndarray, shape (N,)
        ``mislabel_score``.
    n_estimated : int
        Estimated number of mislabeled samples; the ``n_estimated`` highest scores are
        flagged when ``threshold`` is None.
    threshold : float, optional
        Flag ``scores >= threshold`` instead.

    Returns
    -------
    numpy.ndarray of bool, shape (N,)
        True for the flagged samples.
    """
    if threshold is not None:
        return scores >= threshold
    flagged = np.zeros(len(scores), bool)
    flagged[np.argsort(-scores, kind="stable")[: max(0, min(n_estimated, len(scores)))]] = True
    return flagged


def suggest(pred_probs: np.ndarray, labels: np.ndarray | None = None,
            flagged: np.ndarray | None = None) -> np.ndarray:
    """Suggested class id per sample, shape (N,).

    Parameters
    ----------
    pred_probs : numpy.ndarray, shape (N, C)
        Out-of-sample probabilities.
    labels : numpy.ndarray of int, shape (N,), optional
        Given labels.
    flagged : numpy.ndarray of bool, shape (N,), optional
        Samples proposed for review.

    Returns
    -------
    numpy.ndarray of int, shape (N,)
        The most likely class out of sample; for a flagged sample, the most likely class
        *other than its given label*. A flag says the given label is probably wrong, so the
        suggestion must be an alternative: when the model still ranks the given label
        first, its runner-up is the class most likely to be right.
    """
    best = pred_probs.argmax(axis=1)
    if labels is None or flagged is None:
        return best
    others = pred_probs.copy()
    others[np.arange(len(labels)), labels] = -np.inf
    return np.where(flagged, others.argmax(axis=1), best)
