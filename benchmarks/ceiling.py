"""The noise-free ceiling of the fold models: folds trained on the *true* labels, scored on human labels.

Every detection figure of labelaudit rests on the fold models' held-out probabilities. Any
noise-robust training (sample selection, re-weighting, relabelling, robust losses) can at
best make the models what they would be without the noise. This benchmark trains the folds
of a slice of the shared CIFAR-10 set on its **true** labels, with the scan's default (or
given) settings, and reads what those held-out probabilities would give against each human
label column of CIFAR-10N (``random1``, ``aggre``, ``worst``):

* AUROC / AP of the out-of-sample log-probability margin (``oos_margin``, the main
  component of the default ``mislabel_score``; lower margin = more likely mislabeled);
* the best flag F1 over *every* top-N of that ranking (chosen with the truth: an upper bound
  of any count rule, not a rule) and its precision, and the precision at 70% recall;
* the share of truly wrong labels whose most likely *other* class is the truth (an upper
  bound of ``suggested_label``'s rule, which takes the other class only for flagged samples).

It measures a ceiling, so it uses the truth on purpose and chooses nothing. The folds are
stored in the scan directory: a second run with the same arguments resumes them and only
re-reads. ``benchmarks/consensus_probs.py --scan WORK/truth-.../scan --annotators
random1,random2,random3`` gives the same ceiling for the consensus of several annotators.

Example (the report slice: one default scan's training, 431-461 s on the 2-core AMD EPYC)::

    python benchmarks/ceiling.py --per-class 1000 --min-index 30000
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from detect import DEFAULT_DATA, DEFAULT_HUMAN, REPO, dataset_root, select_subset  # noqa: E402
from review import machine  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--human-labels", type=Path, default=DEFAULT_HUMAN)
    p.add_argument("--work", type=Path, default=REPO / "bench-out")
    p.add_argument("--per-class", type=int, default=1000)
    p.add_argument("--min-index", type=int, default=30000)
    p.add_argument("--max-index", type=int, default=None)
    p.add_argument("--columns", default="random1,aggre,worst", help="human label columns to score")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="default: labelaudit's (or the budget's)")
    p.add_argument("--budget", default="small", help="training budget (labelaudit.config.BUDGETS): small, large, auto")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--out", type=Path, default=None, help="also append the JSON line to this file")
    return p.parse_args(argv)


def ceiling_figures(probs: np.ndarray, given: np.ndarray, truth: np.ndarray) -> dict:
    """Detection figures of held-out ``probs`` (N, C) for the labels ``given`` (N,), truth ``truth`` (N,)."""
    wrong = given != truth
    rows = np.arange(len(given))
    p_given = np.clip(probs[rows, given], 1e-12, None)
    others = np.where(np.arange(probs.shape[1])[None] == given[:, None], -1.0, probs)
    margin = np.log(p_given) - np.log(np.clip(others.max(1), 1e-12, None))  # lower = more suspicious
    precision, recall, _ = precision_recall_curve(wrong, -margin)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(f1.argmax())
    return {"actual_noise_rate": round(float(wrong.mean()), 4),
            "auroc_oos_margin": round(float(roc_auc_score(wrong, -margin)), 4),
            "ap_oos_margin": round(float(average_precision_score(wrong, -margin)), 4),
            "oracle_best_f1": round(float(f1[best]), 4),
            "precision_at_oracle_best_f1": round(float(precision[best]), 4),
            "precision_at_70pct_recall": round(float(precision[recall >= 0.7].max()), 4),
            "best_other_class_is_truth_on_wrong": round(float((others.argmax(1)[wrong] == truth[wrong]).mean()), 4)}


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    command = "python benchmarks/ceiling.py " + shlex.join(argv)
    if not args.data.exists() or not args.human_labels.exists():
        result = {"benchmark": "ceiling", "skipped": f"shared data absent ({args.data}, {args.human_labels})",
                  "command": command}
        print(json.dumps(result))
        return result
    import labelaudit

    root = dataset_root(args.data, args.work)
    subset = select_subset(root, args.per_class, 0, args.min_index, args.max_index)
    suffix = (f"-e{args.epochs}" if args.epochs else "") + (f"-{args.budget}" if args.budget != "small" else "")
    work = args.work / f"truth-n{len(subset)}-i{args.min_index}-s{args.seed}{suffix}"
    work.mkdir(parents=True, exist_ok=True)
    labels_csv = work / "labels.csv"
    pd.DataFrame({"path": subset.path, "label": subset.true_label}).to_csv(labels_csv, index=False)
    settings = {"seed": args.seed, "budget": args.budget, "device": args.device,
                **({"epochs": args.epochs} if args.epochs else {})}
    started = time.perf_counter()
    scores = labelaudit.scan(root, labels_csv=labels_csv, out=work / "scan", progress=False, **settings)
    wall = time.perf_counter() - started
    probs = np.load(work / "scan" / "pred_probs.npy")
    manifest = json.loads((work / "scan" / "scan.json").read_text())
    index = {c: i for i, c in enumerate(manifest["classes"])}  # the column order of pred_probs.npy
    human = pd.read_csv(args.human_labels, dtype=str, keep_default_na=False).set_index("path").loc[scores.path]
    truth = human["original"].map(index).to_numpy()
    result = {"benchmark": "ceiling", "trained_on": "true labels", "n_samples": len(scores),
              "index_range": [args.min_index, args.max_index], "config": manifest.get("config"),
              "versions": manifest.get("versions"), "cpu": machine()["cpu"], "wall_s": round(wall, 1),
              "train_s": round(manifest["timings"]["train_s"], 1),
              "folds_resumed": manifest["summary"].get("folds_resumed", []),
              "oos_accuracy_true": round(float((probs.argmax(1) == truth).mean()), 4),
              "columns": {col: ceiling_figures(probs, human[col].map(index).to_numpy(), truth)
                          for col in args.columns.split(",")},
              "scan": str(work / "scan"), "command": command}
    print(json.dumps(result))
    if args.out:
        with args.out.open("a") as fh:
            fh.write(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    main()
