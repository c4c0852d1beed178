"""Flag-count and suggestion rules compared on finished benchmark scans (no training).

``benchmarks/detect.py --human COLUMN`` leaves its scan in ``--work``; this script reads
that scan's ``scores.csv`` and ``pred_probs.npy``, takes the truth from the human-labels
CSV's ``original`` column, and prints one JSON line per scan with:

* the flag F1 of every candidate count rule (the top-N of ``mislabel_score``, N from
  cleanlab's ``num_label_issues`` estimation methods (``off_diagonal_tempered``: on the
  probabilities tempered to fit the given labels, labelaudit's count since the eighth
  round), ``find_label_issues`` filters, the
  number of samples whose out-of-sample argmax differs from the given label, or a
  2-component mixture on the score), and next to them ``oracle_best_threshold``: the top-N
  with the best F1 over every N, *chosen with the truth* -- not a rule, the ceiling any count
  rule on this ranking can reach;
* the share of truly wrong labels whose suggestion is the true class, for the plain
  argmax, for "the most likely class other than the given label" (every sample), and for
  that rule applied to the scan's flagged samples only (the argmax elsewhere), and for the
  noise-aware posterior ``p(c | x) * noise_matrix[given, c]`` (Bayes with confident learning's
  estimated P(given | true), read from the scan's ``noise_matrix.csv``: a class that people
  often confuse with the given label is the likelier truth) in the same two ways;
* ``prior_adjusted_margin``: AUROC and AP of the scan's own score with its ``oos_margin``
  computed on held-out probabilities re-weighted for class frequencies -- cleanlab's
  ``adjust_pred_probs`` (per-class confident thresholds subtracted), divided by the given
  labels' class prior, or by its square root -- next to the score as stored (``as_scanned``):
  whether class imbalance (``detect.py --long-tail``) calls for a prior correction.

It was used to choose labelaudit's flag count and suggestion rule on the development
slice (images of index < 30000); see the README, "Choosing the default".

Example::

    python benchmarks/detect.py --per-class 500 --max-index 30000 --human random1 --baseline shared
    python benchmarks/rules.py bench-out/human-random1-n5000-o0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score

REPO = Path(__file__).resolve().parents[1]
DEFAULT_HUMAN = REPO.parent / "shared" / "datasets" / "cifar10n-dev-labels.csv.gz"
COUNT_RULES = ("off_diagonal_calibrated", "off_diagonal", "off_diagonal_tempered", "prune_by_noise_rate", "both")


def flag_figures(is_noisy: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    p, r, f1, _ = precision_recall_fscore_support(is_noisy, flagged, average="binary", zero_division=0)
    return {"n": int(flagged.sum()), "precision": round(float(p), 4), "recall": round(float(r), 4),
            "f1": round(float(f1), 4)}


def top(score: np.ndarray, n: int) -> np.ndarray:
    mask = np.zeros(len(score), bool)
    mask[np.argsort(-score, kind="stable")[:n]] = True
    return mask


def best_f1_count(is_noisy: np.ndarray, score: np.ndarray) -> int:
    """The N whose top-N of ``score`` (n,) has the best F1 for the truth ``is_noisy`` (n,): an upper bound."""
    hits = np.cumsum(is_noisy[np.argsort(-score, kind="stable")])  # true positives among the top 1..n
    n = np.arange(1, len(score) + 1)
    f1 = 2 * hits / (n + is_noisy.sum())
    return int(f1.argmax()) + 1


def count(rule: str, labels: np.ndarray, probs: np.ndarray) -> int:
    from cleanlab.count import num_label_issues
    from cleanlab.filter import find_label_issues

    if rule == "off_diagonal_tempered":  # labelaudit's count: on the probabilities tempered to the given labels
        from labelaudit.signals.confident import temper

        return int(num_label_issues(labels, temper(labels, probs)[0], estimation_method="off_diagonal"))
    if rule.startswith("off_diagonal"):
        return int(num_label_issues(labels, probs, estimation_method=rule))
    return int(find_label_issues(labels, probs, filter_by=rule, n_jobs=1).sum())


def prior_adjusted_margins(scores: pd.DataFrame, labels: np.ndarray, probs: np.ndarray,
                           components: list[str]) -> dict[str, np.ndarray]:
    """The scan's score with ``oos_margin`` on class-prior re-weighted probabilities, per re-weighting.

    Parameters
    ----------
    scores : pandas.DataFrame, shape (N, ...)
        The scan's ``scores.csv``: ``mislabel_score`` and the ``components`` columns.
    labels : numpy.ndarray of int, shape (N,)
        Given class ids.
    probs : numpy.ndarray, shape (N, C)
        The scan's held-out probabilities (``pred_probs.npy``).
    components : list of str
        The signals ``mislabel_score`` combines (``scan.json``'s ``score_components``).

    Returns
    -------
    dict of str -> numpy.ndarray, shape (N,)
        ``as_scanned``: the stored ``mislabel_score``; ``cleanlab_adjusted`` (cleanlab's
        ``adjust_pred_probs``: per-class confident thresholds subtracted, a private cleanlab
        helper), ``divided_by_prior`` and ``divided_by_sqrt_prior`` (the given labels' class
        frequencies): the score recombined with the margin of the re-weighted probabilities
        in place of ``oos_margin``. Higher = more likely mislabeled. Empty when ``components``
        lacks ``oos_margin`` or ``scores`` lacks one of them.
    """
    if "oos_margin" not in components or not set(components) <= set(scores.columns):
        return {}  # a score without the margin, or a table without its columns: nothing to re-weight
    from cleanlab.internal.label_quality_utils import _subtract_confident_thresholds

    from labelaudit.scoring import combine
    from labelaudit.signals.confident import log_margin

    prior = np.bincount(labels, minlength=probs.shape[1]) / len(labels)
    reweighted = {"cleanlab_adjusted": _subtract_confident_thresholds(labels, probs),
                  "divided_by_prior": probs / np.maximum(prior, 1e-12),
                  "divided_by_sqrt_prior": probs / np.sqrt(np.maximum(prior, 1e-12))}
    out = {"as_scanned": scores.mislabel_score.to_numpy()}
    for name, weighted in reweighted.items():
        weighted = weighted / weighted.sum(axis=1, keepdims=True)
        out[name] = combine(scores.assign(oos_margin=log_margin(weighted, labels)), components)
    return out


def evaluate(run: Path, human: pd.DataFrame) -> dict:
    scan = run / "scan"
    scores = pd.read_csv(scan / "scores.csv", dtype={"given_label": str, "suggested_label": str})
    classes = sorted(scores.given_label.unique())
    index = {c: i for i, c in enumerate(classes)}
    labels = scores.given_label.map(index).to_numpy()
    truth = human.loc[scores.path, "original"].map(index).to_numpy()
    is_noisy = labels != truth
    probs = np.load(scan / "pred_probs.npy")
    score = scores.mislabel_score.to_numpy()
    flags = {rule: flag_figures(is_noisy, top(score, count(rule, labels, probs))) for rule in COUNT_RULES}
    flags["argmax_differs"] = flag_figures(is_noisy, top(score, int((probs.argmax(1) != labels).sum())))
    flags["oracle_best_threshold"] = flag_figures(is_noisy, top(score, best_f1_count(is_noisy, score)))
    others = probs.copy()
    others[np.arange(len(labels)), labels] = -np.inf
    flagged = scores.flagged.to_numpy().astype(bool)
    flagged_other = np.where(flagged, others.argmax(1), probs.argmax(1))
    suggestions = {
        "argmax": float((probs.argmax(1) == truth)[is_noisy].mean()),
        "most_likely_other_class": float((others.argmax(1) == truth)[is_noisy].mean()),
        "other_class_if_flagged": float((flagged_other == truth)[is_noisy].mean()),
    }
    if (scan / "noise_matrix.csv").exists():
        noise_matrix = pd.read_csv(scan / "noise_matrix.csv", index_col=0).loc[classes, classes].to_numpy()
        posterior = probs * noise_matrix[labels, :]
        posterior[np.arange(len(labels)), labels] = -np.inf  # after the product: -inf * 0 would be NaN
        flagged_posterior = np.where(flagged, posterior.argmax(1), probs.argmax(1))
        suggestions.update(noise_posterior_other_class=float((posterior.argmax(1) == truth)[is_noisy].mean()),
                           noise_posterior_if_flagged=float((flagged_posterior == truth)[is_noisy].mean()))
    return {
        "benchmark": "rules", "run": run.name, "n_samples": len(scores), "actual_noise_rate": float(is_noisy.mean()),
        "oos_accuracy_true": float((probs.argmax(1) == truth).mean()),
        "auroc": float(roc_auc_score(is_noisy, score)), "ap": float(average_precision_score(is_noisy, score)),
        "flag_rules": flags,
        "suggestion_true_on_wrong": suggestions,
        "prior_adjusted_margin": {name: {"auroc": float(roc_auc_score(is_noisy, adjusted)),
                                         "ap": float(average_precision_score(is_noisy, adjusted))}
                                  for name, adjusted in prior_adjusted_margins(
                                      scores, labels, probs, _components(scan)).items()},
    }


def _components(scan: Path) -> list[str]:
    """The scan's score components (``scan.json``), or the default recipe's for an older scan without them."""
    from labelaudit.scoring import DEFAULT_RECIPE, RECIPES

    manifest = json.loads((scan / "scan.json").read_text()) if (scan / "scan.json").exists() else {}
    return list(manifest.get("score_components") or RECIPES[DEFAULT_RECIPE])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run folders of benchmarks/detect.py (holding scan/)")
    p.add_argument("--human-labels", type=Path, default=DEFAULT_HUMAN)
    args = p.parse_args(argv)
    if not args.human_labels.exists():
        print(json.dumps({"benchmark": "rules", "skipped": f"no human labels at {args.human_labels}"}))
        return
    human = pd.read_csv(args.human_labels, dtype=str, keep_default_na=False).set_index("path")
    for run in args.runs:
        print(json.dumps(evaluate(run, human)))


if __name__ == "__main__":
    main()
