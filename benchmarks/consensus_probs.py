"""Consensus from several annotators on the stored held-out probabilities of an earlier scan (no training).

``detect.py --annotators`` trains the folds on the majority vote and then scores; this
script takes a finished scan of the same images whose folds trained on a majority vote
(e.g. ``detect.py --human aggre``: CIFAR-10N's own majority vote of random1-3) and runs the
consensus step on its ``pred_probs.npy`` and ``scores.csv`` exactly as a scan with
``--annotations`` does after training: consensus accuracy against the truth next to the plain
majority vote and CROWDLAB on the same probabilities, AUROC / AP of ``mislabel_score`` for the
wrong consensus labels, annotator quality against true accuracy. Seconds instead of a
training run; the caveat (printed in the JSON) is that the folds trained on the scan's
labels, not on labelaudit's own tie-breaking of the vote.

Example::

    python benchmarks/consensus_probs.py --scan bench-out/human-aggre-n10000-o0-i30000/scan \\
        --annotators random1,random2,random3 [--drop-annotations]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

HERE = Path(__file__).resolve().parent


def _detect():
    spec = importlib.util.spec_from_file_location("bench_detect", HERE / "detect.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv=None) -> argparse.Namespace:
    detect = _detect()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scan", type=Path, required=True, help="finished scan whose folds trained on a majority vote")
    p.add_argument("--annotators", required=True, help="comma-separated columns of --human-labels")
    p.add_argument("--human-labels", type=Path, default=detect.DEFAULT_HUMAN)
    p.add_argument("--drop-annotations", action="store_true",
                   help="each image keeps a random 1..all of its labels (seeded by --noise-seed)")
    p.add_argument("--noise-seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    from cleanlab.multiannotator import get_label_quality_multiannotator

    from labelaudit.consensus import annotator_stats, estimate_consensus, majority_vote
    from labelaudit.consensus.scoring import CONSENSUS_RECIPE, combine_consensus
    from labelaudit.scandir import ScanDir
    from labelaudit.scoring import flag

    args = parse_args(argv)
    command = "python benchmarks/consensus_probs.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    scan = ScanDir(args.scan)
    manifest = scan.read_manifest()
    scores = pd.read_csv(scan.scores, dtype={"path": str, "given_label": str})
    probs = np.load(scan.pred_probs)
    classes = manifest.classes
    index = {c: i for i, c in enumerate(classes)}
    human = pd.read_csv(args.human_labels, dtype=str, keep_default_na=False).set_index("path").loc[scores.path]
    subset = pd.DataFrame({"path": scores.path.to_numpy(), "true_label": human["original"].to_numpy()})
    long = _detect().annotation_table(subset, args)
    names = [c.strip() for c in args.annotators.split(",")]
    row = {p: i for i, p in enumerate(scores.path)}
    votes = np.full((len(scores), len(names)), -1, np.int64)
    votes[long.path.map(row).to_numpy(), long.annotator.map({a: j for j, a in enumerate(names)}).to_numpy()] = \
        long.label.map(lambda x: index.get(x, -2)).to_numpy()
    truth = subset.true_label.map(index).to_numpy()

    result = estimate_consensus(votes, probs)
    table = pd.DataFrame({"consensus_quality": result.quality, "agreement": result.agreement,
                          "flip_loss_in": scores["flip_loss_in"].to_numpy(),
                          "label_quality": probs[np.arange(len(probs)), result.labels]})
    components = [c for c in CONSENSUS_RECIPE if c in table.columns]
    mislabel = combine_consensus(table, components)
    n_wrong_est = int(round(float((1 - result.quality).sum())))
    flagged = flag(mislabel, n_estimated=n_wrong_est)
    wrong = result.labels != truth
    crowd = get_label_quality_multiannotator(pd.DataFrame(np.where(votes >= 0, votes, np.nan), columns=names),
                                             probs, verbose=False)
    crowd_labels = crowd["label_quality"]["consensus_label"].to_numpy()
    crowd_q = crowd["label_quality"]["consensus_quality_score"].to_numpy()
    trained_on = scores.given_label.map(index).to_numpy()
    detect = _detect()
    out = {
        "benchmark": "consensus-on-stored-probs", "command": command, "scan": str(args.scan),
        "scan_trained_on": manifest.labels_csv, "scan_config": manifest.config, "scan_device": manifest.device,
        "caveat": "folds trained on the scan's labels (CIFAR-10N 'aggre' for the aggre scan), not retrained here",
        "n_samples": len(scores), "annotators": names, "dropped_at_random": bool(args.drop_annotations),
        "annotations_per_image": {str(k): int(v) for k, v in
                                  long.groupby("path").size().value_counts().sort_index().items()},
        "model_weight": result.model_weight, "vote_weight": result.vote_weight,
        "consensus_accuracy": {
            "labelaudit": float((result.labels == truth).mean()),
            "majority_vote": float((majority_vote(votes, len(classes)) == truth).mean()),
            "crowdlab_same_probs": float((crowd_labels == truth).mean()),
            "labels_the_folds_trained_on": float((trained_on == truth).mean()),
            "model_argmax": float((probs.argmax(1) == truth).mean()),
        },
        "n_wrong_consensus": int(wrong.sum()), "estimated_wrong_consensus": n_wrong_est,
        "score_components": components,
        "labelaudit": detect.detection_figures(wrong, mislabel, flagged),
        "score_variants_auroc_ap": {k: [roc_auc_score(wrong, v), average_precision_score(wrong, v)] for k, v in {
            "mislabel_score": mislabel, "1 - consensus_quality": 1 - result.quality,
            "consensus_quality+label_quality": combine_consensus(table, ["consensus_quality", "label_quality"]),
            "consensus_quality+flip_loss_in": combine_consensus(table, ["consensus_quality", "flip_loss_in"]),
            "1 - agreement": 1 - result.agreement}.items()},
        "crowdlab_quality_auroc_ap_own_consensus": [roc_auc_score(crowd_labels != truth, -crowd_q),
                                                    average_precision_score(crowd_labels != truth, -crowd_q)],
        "annotator_quality": {a: {"true_accuracy": float((votes[:, j] == truth)[votes[:, j] != -1].mean()),
                                  "labelaudit": s["quality"],
                                  "crowdlab": float(crowd["annotator_stats"]["annotator_quality"].loc[a])}
                              for j, (a, s) in enumerate(zip(names, annotator_stats(votes, result)))},
    }
    print(json.dumps(detect._rounded(out)))
    return out


if __name__ == "__main__":
    main()
