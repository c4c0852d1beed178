"""Bring-your-own-model benchmark: scans from embeddings, one JSON line per case.

Cases (``--case``):

* ``synthetic`` -- "strong features": class-separable Gaussian embeddings (unit variance
  around random class centres) with planted symmetric label errors; labelaudit's ranking
  against the *noise-free limit*, the Bayes-optimal detector that knows the true class
  densities and the noise rate (no detector can rank better on average);
* ``scale`` -- time and peak memory of a whole scan at ``--rows`` x ``--dim`` (default
  100,000 x 512): listing the files, heads, kNN, signals, writing the scan directory;
* ``heads`` -- the heads alone (no files, no kNN) at ``--rows`` x ``--dim``, for larger sizes;
* ``cifar10n`` -- the shared CIFAR-10 images with CIFAR-10N human labels (``random1``, the
  10,000 images of the report slice that ``benchmarks/detect.py`` uses): label-free k-means
  patch features computed here (Coates & Ng, 2011), the embeddings of the full scan's own
  CNN (``--cnn-scan``, a finished ``benchmarks/detect.py`` scan of the same images) and its
  out-of-sample probabilities (``--pred-probs``), against that full scan. Prints a
  ``"skipped"`` line and exits 0 when the shared data is absent.

Each case runs in its own process (``--case all`` starts them one after the other), so its
peak RSS is its own. Example::

    python benchmarks/byom.py --case all --out benchmarks/results/byom.jsonl
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
CASES = ("synthetic", "scale", "cifar10n")
DEFAULT_CNN_SCAN = REPO / "bench-out" / "human-random1-n10000-o0-i30000" / "scan"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", choices=[*CASES, "heads", "all"], default="all")
    p.add_argument("--work", type=Path, default=REPO / "bench-out" / "byom", help="generated files and scans")
    p.add_argument("--rows", type=int, default=None, help="samples (synthetic: 20,000; scale, heads: 100,000)")
    p.add_argument("--dim", type=int, default=None, help="embedding size (synthetic: 128; scale, heads: 512)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--rate", type=float, default=0.2, help="planted symmetric noise rate (synthetic, scale)")
    p.add_argument("--separation", type=float, default=4.0, help="distance between class centres (synthetic)")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "cifar10-dev.tar.gz")
    p.add_argument("--human-labels", type=Path,
                   default=REPO.parent / "shared" / "datasets" / "cifar10n-dev-labels.csv.gz")
    p.add_argument("--human", default="random1")
    p.add_argument("--slice", choices=["report", "dev"], default="report",
                   help="report: index >= 30000, first 1,000 per class (as the README's figures); dev: images "
                        "3000-3499 of each class (the development split the default recipes were chosen on)")
    p.add_argument("--cnn-scan", type=Path, default=DEFAULT_CNN_SCAN,
                   help="a finished benchmarks/detect.py scan of the same images (its embeddings and probabilities)")
    p.add_argument("--out", type=Path, default=None, help="also append the JSON lines to this file")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _machine() -> dict:
    import torch

    return {"machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads", "torch": torch.__version__}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def figures(is_wrong: np.ndarray, score: np.ndarray) -> dict:
    """AUROC and average precision of ``score`` (higher = more likely wrong) against the truth."""
    return {"auroc": round(float(roc_auc_score(is_wrong, score)), 4),
            "ap": round(float(average_precision_score(is_wrong, score)), 4)}


def scan_figures(scores: pd.DataFrame, is_wrong: np.ndarray) -> dict:
    """Figures of ``mislabel_score``, ``flagged`` and every signal (oriented) of a scan's scores."""
    from labelaudit.signals import SIGNALS

    flagged = scores.flagged.to_numpy()
    hits = int((flagged & is_wrong).sum())
    return {**figures(is_wrong, scores.mislabel_score.to_numpy()),
            "flag_precision": round(hits / max(1, flagged.sum()), 4),
            "flag_recall": round(hits / max(1, is_wrong.sum()), 4),
            "n_flagged": int(flagged.sum()), "recipes": recipe_figures(scores, is_wrong),
            "signals_auroc": {name: figures(is_wrong, SIGNALS[name].direction * scores[name].to_numpy())["auroc"]
                              for name in scores.columns if name in SIGNALS}}


def recipe_figures(scores: pd.DataFrame, is_wrong: np.ndarray) -> dict:
    """AUROC / AP of every score recipe whose signals the scan has."""
    from labelaudit.scoring import RECIPES, combine

    return {name: figures(is_wrong, combine(scores, parts)) for name, parts in RECIPES.items()
            if all(p in scores.columns for p in parts)}


# ----------------------------------------------------------------------- generated


def gaussian_embeddings(n: int, dim: int, classes: int, separation: float, rate: float, seed: int):
    """(features (n, dim) float32, true (n,), given (n,), class centres (classes, dim)) with symmetric noise."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(dim, classes)))[0].T * separation / np.sqrt(2)
    true = rng.integers(0, classes, n)
    if n * dim <= 1 << 27:  # the recorded runs (20,000 x 128, 100,000 x 512)
        features = (centres[true] + rng.normal(size=(n, dim))).astype(np.float32)
    else:  # float32 chunks: no float64 copy of a large array
        features = np.empty((n, dim), np.float32)
        for start in range(0, n, 65536):
            rows = true[start:start + 65536]
            features[start:start + len(rows)] = centres[rows] + rng.standard_normal((len(rows), dim), dtype=np.float32)
    given = true.copy()
    wrong = rng.random(n) < rate
    given[wrong] = (true[wrong] + rng.integers(1, classes, int(wrong.sum()))) % classes
    return features, true, given, centres


def class_posterior(features: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """P(true class | x) (n, C) of the generating densities (unit variance, equal priors)."""
    logits = features.astype(np.float64) @ centres.T - 0.5 * (centres ** 2).sum(1)
    posterior = np.exp(logits - logits.max(1, keepdims=True))
    return posterior / posterior.sum(1, keepdims=True)


def noise_free_limit(features: np.ndarray, given: np.ndarray, centres: np.ndarray, rate: float) -> np.ndarray:
    """Bayes-optimal P(label wrong | x, given label) from the true densities and noise rate (higher = wrong)."""
    classes = len(centres)
    posterior = class_posterior(features, centres)
    rows = np.arange(len(given))
    keep = posterior[rows, given] * (1 - rate)
    flip = (1 - posterior[rows, given]) * rate / (classes - 1)
    return flip / (keep + flip)


def write_files(root: Path, given: np.ndarray) -> list[str]:
    """One small file per sample, ``root/c<label>/s<row>.txt``; returns the paths (row order = sorted order)."""
    width = len(str(len(given)))
    paths = [f"c{g:02d}/s{i:0{width}d}.txt" for i, g in enumerate(given)]
    marker = root / f".written-{len(given)}-{hash(given.tobytes()) & 0xffffffff:x}"
    if not marker.exists():
        import shutil

        shutil.rmtree(root, ignore_errors=True)
        for c in np.unique(given):
            (root / f"c{c:02d}").mkdir(parents=True, exist_ok=True)
        for i, rel in enumerate(paths):
            (root / rel).write_bytes(b"")
        marker.touch()
    return paths


def case_synthetic(args) -> dict:
    import labelaudit

    n, dim = args.rows or 20_000, args.dim or 128
    features, true, given, centres = gaussian_embeddings(n, dim, args.classes, args.separation, args.rate, args.seed)
    paths = write_files(args.work / f"synthetic-{n}", given)
    order = np.argsort(np.asarray(paths, dtype=object), kind="stable")
    started = time.perf_counter()
    scores = labelaudit.scan(args.work / f"synthetic-{n}", out=args.work / f"synthetic-{n}-scan",
                             features=features[order], progress=False)
    wall = time.perf_counter() - started
    wrong = (given != true)[order]
    manifest = json.loads((args.work / f"synthetic-{n}-scan" / "scan.json").read_text())
    limit = noise_free_limit(features, given, centres, args.rate)[order]
    return {"rows": n, "dim": dim, "classes": args.classes, "separation": args.separation,
            "actual_noise_rate": round(float(wrong.mean()), 4),
            "bayes_accuracy": round(float((class_posterior(features, centres).argmax(1) == true).mean()), 4),
            "noise_free_limit": figures(wrong, limit), "labelaudit": scan_figures(scores, wrong),
            "head": manifest["inputs"]["head"]["kind"], "head_losses": manifest["inputs"]["head"]["holdout_losses"],
            "wall_s": round(wall, 1), "peak_rss_mb": round(_peak_rss_mb())}


def case_scale(args) -> dict:
    import labelaudit

    n, dim = args.rows or 100_000, args.dim or 512
    features, true, given, _ = gaussian_embeddings(n, dim, args.classes, args.separation, args.rate, args.seed)
    paths = write_files(args.work / f"scale-{n}", given)
    order = np.argsort(np.asarray(paths, dtype=object), kind="stable")  # rows in the scan's file order
    features, true, given, paths = features[order], true[order], given[order], [paths[i] for i in order]
    before = _peak_rss_mb()
    started = time.perf_counter()
    scores = labelaudit.scan(args.work / f"scale-{n}", out=args.work / f"scale-{n}-scan", features=features,
                             progress=False)
    wall = time.perf_counter() - started
    timings = json.loads((args.work / f"scale-{n}-scan" / "scan.json").read_text())["timings"]
    assert list(scores.path) == paths
    return {"rows": n, "dim": dim, "classes": args.classes, "wall_s": round(wall, 1),
            "timings_s": {k: round(v, 1) for k, v in timings.items() if k.endswith("_s")},
            "peak_rss_mb": round(_peak_rss_mb()), "rss_before_scan_mb": round(before),
            "features_mb": round(features.nbytes / 2**20),
            "auroc": figures(given != true, scores.mislabel_score)["auroc"]}


def case_heads(args) -> dict:
    from labelaudit.folds.heads import HeadSettings, train_heads

    n, dim = args.rows or 100_000, args.dim or 512
    features, true, given, _ = gaussian_embeddings(n, dim, args.classes, args.separation, args.rate, args.seed)
    folds = np.random.default_rng(args.seed).permutation(n) % 5
    started = time.perf_counter()
    run = train_heads(features, given, folds, args.classes)
    wall = time.perf_counter() - started
    return {"rows": n, "dim": dim, "classes": args.classes, "folds": 5, "head_settings": HeadSettings().to_dict(),
            "kept": run.kind, "holdout_losses": run.holdout_losses, "wall_s": round(wall, 1),
            "rows_per_s": round(run.images_trained / wall), "peak_rss_mb": round(_peak_rss_mb())}


# ----------------------------------------------------------------------- CIFAR-10N


def kmeans_patch_features(images: np.ndarray, centroids: int = 256, patch: int = 6, seed: int = 0) -> np.ndarray:
    """Label-free features (Coates & Ng, 2011): whitened 6x6 patches, k-means, triangle activation,
    sum-pooled over the four image quadrants. ``images`` uint8 (N, S, S, 3) -> float32 (N, 4 x centroids)."""
    import torch
    from sklearn.cluster import MiniBatchKMeans

    rng = np.random.default_rng(seed)
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255

    def patches(batch):  # (B, P, 3 * patch * patch), normalised per patch
        cols = torch.nn.functional.unfold(batch, patch).transpose(1, 2)
        cols = cols - cols.mean(2, keepdim=True)
        return cols / cols.std(2, keepdim=True).add(0.1)

    sample = patches(x[rng.choice(len(x), min(len(x), 2000), replace=False)]).reshape(-1, 3 * patch * patch)
    sample = sample[rng.choice(len(sample), min(len(sample), 100_000), replace=False)]
    mean = sample.mean(0)
    u, s, _ = torch.linalg.svd(torch.cov((sample - mean).T))
    zca = u @ torch.diag(1 / torch.sqrt(s + 0.1)) @ u.T
    kmeans = MiniBatchKMeans(centroids, random_state=seed, n_init=3, batch_size=4096)
    kmeans.fit(((sample - mean) @ zca).numpy())
    centres = torch.as_tensor(kmeans.cluster_centers_, dtype=torch.float32)
    side = x.shape[-1] - patch + 1
    out = []
    for start in range(0, len(x), 256):
        z = (patches(x[start:start + 256]) - mean) @ zca  # (B, side*side, d)
        dist = torch.cdist(z, centres[None].expand(len(z), -1, -1))
        act = (dist.mean(2, keepdim=True) - dist).clamp_min(0).reshape(len(z), side, side, centroids)
        h = side // 2
        quads = [act[:, :h, :h], act[:, :h, h:], act[:, h:, :h], act[:, h:, h:]]
        out.append(torch.cat([q.sum((1, 2)) for q in quads], 1))
    return torch.cat(out).numpy().astype(np.float32)


def case_cifar10n(args) -> dict:
    if not args.data.exists() or not args.human_labels.exists():
        return {"skipped": f"shared data absent ({args.data}, {args.human_labels})"}
    import labelaudit
    from detect import dataset_root, select_subset
    from labelaudit.data import load_dataset

    root = dataset_root(args.data, REPO / "bench-out")
    subset = select_subset(root, 1000, 0, min_index=30000) if args.slice == "report" else select_subset(root, 500, 3000)
    human = pd.read_csv(args.human_labels, dtype=str, keep_default_na=False).set_index("path").loc[subset.path]
    labels_csv = args.work / f"cifar10n-{args.slice}-{args.human}-labels.csv"
    labels_csv.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"path": subset.path, "label": human[args.human].to_numpy()}).to_csv(labels_csv, index=False)
    wrong_of = dict(zip(subset.path, human[args.human].to_numpy() != human["original"].to_numpy()))
    result = {"images": len(subset), "labels": f"CIFAR-10N {args.human}", "slice": args.slice,
              "actual_noise_rate": round(float(np.mean(list(wrong_of.values()))), 4), "runs": {}}

    started = time.perf_counter()
    loaded = load_dataset(root, labels_csv=labels_csv, image_size=32, cache_dir=args.work / "cifar-cache",
                          progress=False)
    cached = args.work / f"cifar10n-{args.slice}-kmeans-features.npy"  # label-free: reused across label columns
    if cached.exists() and len(np.load(cached, mmap_mode="r")) == len(loaded.paths):
        features = np.load(cached)
    else:
        features = kmeans_patch_features(loaded.images, seed=args.seed)
        np.save(cached, features)
    feature_s = time.perf_counter() - started
    index = args.work / f"cifar10n-{args.slice}-index.csv"
    pd.DataFrame({"path": loaded.paths}).to_csv(index, index=False)
    runs = {"kmeans_features": {"features": features, "index": index, "feature_s": round(feature_s, 1)}}
    cnn = args.cnn_scan
    if args.slice == "report" and (cnn / "embeddings.npy").exists() and (cnn / "scores.csv").exists():
        cnn_index = args.work / "cnn-index.csv"
        pd.read_csv(cnn / "scores.csv", usecols=["path"]).to_csv(cnn_index, index=False)
        runs["cnn_embeddings"] = {"features": np.load(cnn / "embeddings.npy").astype(np.float32), "index": cnn_index}
        runs["cnn_pred_probs"] = {"pred_probs": np.load(cnn / "pred_probs.npy"), "index": cnn_index}
        runs["cnn_embeddings+pred_probs"] = {"features": runs["cnn_embeddings"]["features"],
                                             "pred_probs": runs["cnn_pred_probs"]["pred_probs"], "index": cnn_index}
        full = pd.read_csv(cnn / "scores.csv")
        result["full_scan"] = {"source": str(cnn), **scan_figures(full, full.path.map(wrong_of).to_numpy())}
    for name, run in runs.items():
        extra = {k: run[k] for k in ("features", "pred_probs") if k in run}
        started = time.perf_counter()
        out = args.work / f"cifar10n-{args.slice}-{name}"
        scores = labelaudit.scan(root, labels_csv=labels_csv, out=out, index=run["index"], progress=False, **extra)
        manifest = json.loads((out / "scan.json").read_text())
        result["runs"][name] = {**scan_figures(scores, scores.path.map(wrong_of).to_numpy()),
                                "oos_accuracy_given": round(manifest["summary"]["holdout_accuracy"], 4),
                                "head": (manifest["inputs"].get("head") or {}).get("kind"),
                                "scan_s": round(time.perf_counter() - started, 1),
                                **({"feature_s": run["feature_s"]} if "feature_s" in run else {})}
    result["peak_rss_mb"] = round(_peak_rss_mb())
    return result


# ----------------------------------------------------------------------- main


def run_case(args, case: str) -> dict:
    args.work.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "byom", "case": case, **{"synthetic": case_synthetic, "scale": case_scale,
                                                     "heads": case_heads, "cifar10n": case_cifar10n}[case](args)}
    result.update(_machine())
    return result


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    command = "python benchmarks/byom.py " + shlex.join(argv)
    if args.case == "all":
        for case in CASES:
            rest = [a for i, a in enumerate(argv) if not a.startswith("--case") and argv[i - 1:i] != ["--case"]]
            subprocess.run([sys.executable, __file__, *rest, "--case", case], check=True)
        return
    line = json.dumps({**run_case(args, args.case), "command": command})
    print(line, flush=True)
    if args.out is not None:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


if __name__ == "__main__":
    main()
