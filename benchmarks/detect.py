"""Mislabel-detection benchmark: inject known label noise, scan, score against the truth.

Prints one JSON line with, side by side, labelaudit's ``mislabel_score``/``flagged``
and the plain cleanlab recipe (out-of-sample probabilities + ``find_label_issues`` and
self-confidence ranking) computed on the same data, folds and training budget.

The baseline (``"cleanlab"``) trains its own models, as the plain recipe would: the same
network, folds, epochs and seed, with the usual random-flip augmentation and no mirror
views. ``"cleanlab_on_labelaudit_models"`` applies the same recipe to labelaudit's own
folds (image only, no mirror averaging). ``--baseline shared`` skips the separate
training (quicker, for development). Every run starts from an empty scan directory, so
timings never include resumed folds.

Examples::

    # CPU figures quoted in the README (10,000 images, 20% symmetric noise)
    python benchmarks/detect.py --per-class 1000 --noise symmetric --rate 0.2
    # development split used to choose the default score recipe (disjoint images)
    python benchmarks/detect.py --per-class 500 --offset 3000 --noise instance --rate 0.2

The data default is ``../shared/datasets/cifar10-dev.tar.gz`` (extracted once into
``--work``); when it is absent the script prints a JSON line with ``"skipped"`` and exits 0.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shlex
import shutil
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score

from labelaudit.config import parse_setting, settings
from labelaudit.errors import SettingsError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "cifar10-dev.tar.gz"
DEFAULT_HUMAN = REPO.parent / "shared" / "datasets" / "cifar10n-dev-labels.csv.gz"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="class-folder image directory, or a .tar.gz of one (default: shared CIFAR-10 dev set)")
    p.add_argument("--work", type=Path, default=REPO / "bench-out", help="where extracted data and scans go")
    p.add_argument("--per-class", type=int, default=1000, help="images per class (0 = all)")
    p.add_argument("--offset", type=int, default=0, help="skip this many images per class first (dev splits)")
    p.add_argument("--long-tail", type=float, default=1.0, metavar="RATIO",
                   help="class imbalance: the first class (sorted by name) keeps --per-class images, the last "
                        "--per-class / RATIO, the others geometrically in between (1 = balanced)")
    p.add_argument("--min-index", type=int, default=None,
                   help="only images whose file-name index is >= this (e.g. 30000: the report slice)")
    p.add_argument("--max-index", type=int, default=None,
                   help="only images whose file-name index is < this (e.g. 30000: the development slice)")
    p.add_argument("--human", default=None, metavar="COLUMN",
                   help="real human noise: take the given labels from this column of --human-labels "
                        "(random1, random2, random3, aggre, worst); the truth is its 'original' column")
    p.add_argument("--human-labels", type=Path, default=DEFAULT_HUMAN,
                   help="CIFAR-10N style CSV: path,original,<annotator columns> (default: the shared one)")
    p.add_argument("--annotators", default=None, metavar="COLUMNS",
                   help="several annotators per image: comma-separated columns of --human-labels (e.g. "
                        "random1,random2,random3), scanned with --annotations; reports consensus accuracy "
                        "against majority vote and cleanlab's CROWDLAB on the same held-out probabilities")
    p.add_argument("--drop-annotations", action="store_true",
                   help="with --annotators: each image keeps a random 1..all of its labels (seeded by --noise-seed)")
    p.add_argument("--rescore", action="store_true",
                   help="keep the scan directory, so the stored folds are re-used (scoring code or --recipe "
                        "changed, training not); its wall time is then not a training time")
    p.add_argument("--noise", choices=["symmetric", "asymmetric", "instance"], default="symmetric")
    p.add_argument("--rate", type=float, default=0.2)
    p.add_argument("--noise-seed", type=int, default=0)
    p.add_argument("--baseline", choices=["shared", "separate"], default="separate")
    p.add_argument("--tag", default="", help="suffix of the scan directory name")
    for name, (spec, default) in _settings().items():
        p.add_argument(f"--{name.replace('_', '-')}", type=_setting_type(name), default=None,
                       metavar=spec.kind.__name__.upper(),
                       help=f"{spec.help} ({spec.describe()}; default: labelaudit's, {default!r})")
    p.add_argument("--executor", choices=["local", "threads", "stacked"], default="local",
                   help="folds one at a time, several at once in threads, or all as one stacked network "
                        "(labelaudit scan --executor)")
    p.add_argument("--fold-workers", type=int, default=2, help="with --executor threads: folds at the same time")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def _settings() -> dict:
    """The scan settings this benchmark offers: those of ``labelaudit scan`` (flips are set per run)."""
    return {name: entry for name, entry in settings().items() if entry[0].cli}


def _setting_type(name: str):
    """argparse ``type=`` for setting ``name``: its declared kind and range (labelaudit.config)."""
    def parse(text: str):
        try:
            return parse_setting(name, text)
        except SettingsError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def dataset_root(data: Path, work: Path) -> Path:
    """The class-folder root, extracting ``data`` into ``work`` when it is a tarball."""
    if data.is_dir():
        return data
    target = work / "data"
    marker = target / f".extracted-{data.name}"
    if not marker.exists():
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(data) as tar:
            tar.extractall(target, filter="data")
        marker.touch()
    folders = [d for d in target.iterdir() if d.is_dir()]
    return folders[0] if len(folders) == 1 else target


def _index(path: Path) -> tuple[int, str]:
    numbers = re.findall(r"\d+", path.stem)
    return (int(numbers[-1]) if numbers else -1, path.name)


def select_subset(root: Path, per_class: int, offset: int, min_index: int | None = None,
                  max_index: int | None = None, long_tail: float = 1.0) -> pd.DataFrame:
    """Rows ``path, true_label``: the images ``offset .. offset + n_k`` of each class ``k`` by index,
    among those whose index lies in ``[min_index, max_index)``.

    ``n_k = per_class`` for every class when ``long_tail`` is 1; otherwise class ``k`` of ``K``
    (sorted by name) keeps ``round(per_class * long_tail ** (-k / (K - 1)))`` images, at least
    one: a long tail whose largest class is ``long_tail`` times its smallest.
    """
    if long_tail < 1 or (long_tail > 1 and per_class <= 0):
        raise SystemExit("--long-tail needs a ratio >= 1 and a --per-class count")
    rows = []
    lo, hi = (-1 if min_index is None else min_index), (np.inf if max_index is None else max_index)
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    for k, class_dir in enumerate(class_dirs):
        files = sorted((f for f in class_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES
                        and lo <= _index(f)[0] < hi), key=_index)
        shrink = long_tail ** (-k / max(1, len(class_dirs) - 1))
        count = per_class if long_tail == 1 else max(1, round(per_class * shrink))
        chosen = files[offset: offset + count] if per_class else files[offset:]
        rows += [(f.relative_to(root).as_posix(), class_dir.name) for f in chosen]
    return pd.DataFrame(rows, columns=["path", "true_label"])


def human_labels(subset: pd.DataFrame, args) -> np.ndarray:
    """Given labels of ``subset`` from column ``args.human`` of the human-labels CSV (truth checked)."""
    table = pd.read_csv(args.human_labels, dtype=str, keep_default_na=False).set_index("path")
    if args.human not in table.columns:
        raise SystemExit(f"--human {args.human!r}: columns are {', '.join(table.columns)}")
    missing = set(subset.path) - set(table.index)
    if missing:
        raise SystemExit(f"{len(missing)} benchmark images have no human labels, e.g. {sorted(missing)[0]}")
    rows = table.loc[subset.path]
    if not (rows["original"].to_numpy() == subset.true_label.to_numpy()).all():
        raise SystemExit("the human-labels CSV's 'original' column disagrees with the class folders")
    return rows[args.human].to_numpy(dtype=object)


def noisy_labels(subset: pd.DataFrame, root: Path, args, cache_dir: Path) -> np.ndarray:
    if args.human:
        return human_labels(subset, args)
    from labelaudit.data import load_dataset
    from labelaudit.data.noise import inject_noise

    classes = sorted(subset.true_label.unique())
    truth = subset.true_label.map({c: i for i, c in enumerate(classes)}).to_numpy()
    images = None
    if args.noise == "instance":  # decoded here with its own cache, so the timed scan decodes too
        clean_csv = cache_dir / "clean_labels.csv"
        cache_dir.mkdir(parents=True, exist_ok=True)
        subset.rename(columns={"true_label": "label"}).to_csv(clean_csv, index=False)
        loaded = load_dataset(root, labels_csv=clean_csv, image_size=32, cache_dir=cache_dir,
                              progress=not args.no_progress)
        row = {path: i for i, path in enumerate(loaded.paths)}
        if set(row) != set(subset.path):
            raise SystemExit("some benchmark images could not be decoded; see the skipped list")
        images = loaded.images[[row[p] for p in subset.path]]
    noisy = inject_noise(truth, kind=args.noise, rate=args.rate, n_classes=len(classes), seed=args.noise_seed,
                         class_names=classes, images=images)
    return np.asarray(classes, dtype=object)[noisy]


def detection_figures(is_noisy: np.ndarray, score: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    precision, recall, f1, _ = precision_recall_fscore_support(is_noisy, flagged, average="binary", zero_division=0)
    return {"auroc": roc_auc_score(is_noisy, score), "ap": average_precision_score(is_noisy, score),
            "precision": precision, "recall": recall, "f1": f1, "n_flagged": int(flagged.sum())}


def _cleanlab_flags(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The plain recipe's flags, bool (N,): ``find_label_issues`` with its defaults."""
    from cleanlab.filter import find_label_issues

    return find_label_issues(labels, probs, n_jobs=1)


def per_class_figures(given: np.ndarray, is_noisy: np.ndarray, flagged: np.ndarray,
                      baseline_flagged: np.ndarray) -> dict[str, dict[str, float]]:
    """Per given class: its size, wrong labels, and the flags of labelaudit and of the plain recipe.

    Parameters
    ----------
    given : numpy.ndarray of object, shape (N,)
        The given label of each image.
    is_noisy : numpy.ndarray of bool, shape (N,)
        Given label != truth.
    flagged, baseline_flagged : numpy.ndarray of bool, shape (N,)
        labelaudit's ``flagged`` and the plain cleanlab recipe's flags.

    Returns
    -------
    dict
        class -> ``n``, ``wrong`` (count), and for ``labelaudit`` and ``cleanlab`` the
        ``flagged`` count, ``precision`` (None without flags) and ``recall`` (None without
        wrong labels) of the flags among the images given that class.
    """
    out = {}
    for name in sorted(set(given)):
        rows = given == name
        wrong = is_noisy[rows]
        figures = {"n": int(rows.sum()), "wrong": int(wrong.sum())}
        for method, flags in (("labelaudit", flagged[rows]), ("cleanlab", baseline_flagged[rows])):
            hits = int((flags & wrong).sum())
            figures[method] = {"flagged": int(flags.sum()),
                               "precision": hits / flags.sum() if flags.any() else None,
                               "recall": hits / wrong.sum() if wrong.any() else None}
        out[str(name)] = figures
    return out


def cleanlab_recipe(labels: np.ndarray, probs: np.ndarray, is_noisy: np.ndarray,
                    issues: np.ndarray | None = None) -> dict[str, float]:
    """The plain recipe: rank by self-confidence, flag with ``find_label_issues`` defaults
    (``issues``, bool (N,), when already computed by :func:`_cleanlab_flags`)."""
    from cleanlab.rank import get_label_quality_scores

    quality = get_label_quality_scores(labels, probs, method="self_confidence")
    issues = _cleanlab_flags(labels, probs) if issues is None else issues
    accuracy = float((probs.argmax(1) == labels).mean())
    return {**detection_figures(is_noisy, 1 - quality, issues), "oos_accuracy_given": accuracy}


def run_scan(root: Path, labels_csv: Path | None, out: Path, args, **extra):
    from labelaudit import scan
    from labelaudit.folds.executor import ThreadedExecutor

    chosen = {k: getattr(args, k) for k in _settings() if getattr(args, k) is not None}
    executor = ThreadedExecutor(workers=args.fold_workers) if args.executor == "threads" else args.executor
    started = time.perf_counter()
    scores = scan(root, labels_csv=labels_csv, out=out, progress=not args.no_progress, executor=executor,
                  **chosen, **extra)
    return scores, time.perf_counter() - started



def recipe_figures(table: pd.DataFrame, is_noisy: np.ndarray) -> dict[str, dict[str, float]]:
    """AUROC and AP of every score recipe whose signals are all columns of ``table``.

    A recipe of signals this kind of scan does not make (``knn`` on an image scan, flip
    recipes with ``--no-flip``) is left out rather than scored on a part of its signals.
    """
    from labelaudit.scoring import RECIPES, combine

    figures = {}
    for name, components in RECIPES.items():
        if set(components) <= set(table.columns):
            score = combine(table, components)
            figures[name] = {"auroc": roc_auc_score(is_noisy, score), "ap": average_precision_score(is_noisy, score)}
    return figures

def main(argv=None) -> dict:
    args = parse_args(argv)
    command = "python benchmarks/detect.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    if not args.data.exists():
        result = {"benchmark": "detect", "skipped": f"data not found: {args.data}", "command": command}
        print(json.dumps(result))
        return result
    import torch

    from labelaudit.scandir import ScanDir
    from labelaudit.signals import SIGNALS

    root = dataset_root(args.data, args.work)
    subset = select_subset(root, args.per_class, args.offset, args.min_index, args.max_index, args.long_tail)
    if args.annotators:
        return _print(annotators_benchmark(args, root, subset, command))
    noise = f"human-{args.human}" if args.human else f"{args.noise}-{args.rate:g}"
    first = "" if args.min_index is None else f"-i{args.min_index}"
    seed = f"-s{args.seed}" if args.seed else ""  # seed 0 keeps the older runs' names
    tail = f"-lt{args.long_tail:g}" if args.long_tail != 1 else ""
    name = f"{noise}-n{len(subset)}-o{args.offset}{first}{tail}{seed}{'-' + args.tag if args.tag else ''}"
    out = args.work / name
    if not args.rescore:
        for stale in ("scan", "baseline"):
            shutil.rmtree(out / stale, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    subset["given_label"] = noisy_labels(subset, root, args, out / "noise-cache")
    labels_csv = out / "labels.csv"
    subset.rename(columns={"given_label": "label"})[["path", "label"]].to_csv(labels_csv, index=False)

    scores, wall = run_scan(root, labels_csv, out / "scan", args)
    table = scores.merge(subset, on="path", validate="one_to_one")
    is_noisy = (table.given_label_x != table.true_label).to_numpy()
    classes = sorted(table.given_label_x.unique())
    labels = table.given_label_x.map({c: i for i, c in enumerate(classes)}).to_numpy()
    truth = table.true_label.map({c: i for i, c in enumerate(classes)}).to_numpy()
    scan_dir = ScanDir(out / "scan")
    probs_tta = np.load(scan_dir.pred_probs)
    summary = scores.attrs["summary"]
    manifest = scan_dir.read_manifest()
    probs_image = np.load(scan_dir.pred_probs_image)
    recipe_flags = _cleanlab_flags(labels, probs_image)

    result = {
        "benchmark": "detect",
        "command": command,
        "data": str(args.data), "n_samples": len(table), "n_classes": len(classes),
        "noise": f"human:{args.human}" if args.human else args.noise,
        "rate": None if args.human else args.rate, "actual_noise_rate": float(is_noisy.mean()),
        "index_range": [args.min_index, args.max_index], "offset": args.offset, "long_tail": args.long_tail,
        "estimated_noise_rate": summary["estimated_noise_rate"],
        "device": summary["device"], "torch_threads": torch.get_num_threads(), "versions": manifest.versions,
        "config": manifest.config, "score_components": manifest.score_components,
        "wall_s": wall, "samples_per_s": len(table) / wall,
        "train_images_per_s": manifest.timings["train_images_per_s"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cuda_peak_mb": (torch.cuda.max_memory_allocated(manifest.config["device"].replace("auto", "cuda"))
                         / 2**20 if "cuda" in summary["device"] else None),
        "oos_accuracy_given": float((probs_tta.argmax(1) == labels).mean()),
        "oos_accuracy_true": float((probs_tta.argmax(1) == truth).mean()),
        "labelaudit": detection_figures(is_noisy, table.mislabel_score.to_numpy(), table.flagged.to_numpy()),
        "suggestion_true_on_wrong": float((table.suggested_label[is_noisy] == table.true_label[is_noisy]).mean()),
        "cleanlab_on_labelaudit_models": cleanlab_recipe(labels, probs_image, is_noisy, issues=recipe_flags),
        "per_class": per_class_figures(table.given_label_x.to_numpy(), is_noisy, table.flagged.to_numpy(),
                                       recipe_flags),
        "signals_auroc": {s: roc_auc_score(is_noisy, SIGNALS[s].direction * table[s].to_numpy())
                          for s in SIGNALS if s in table.columns},
        "recipes": recipe_figures(table, is_noisy),
        "rescored_from_stored_folds": bool(args.rescore), "folds_resumed": summary["folds_resumed"],
    }
    if args.baseline == "separate":
        base_scores, base_wall = run_scan(root, labels_csv, out / "baseline", args, flip=False, flip_augment=True)
        base = base_scores.merge(subset, on="path", validate="one_to_one")
        assert (base.path == table.path).all()
        result["cleanlab"] = {**cleanlab_recipe(labels, np.load(ScanDir(out / "baseline").pred_probs), is_noisy),
                              "wall_s": base_wall}
    print(json.dumps(_rounded(result)))
    return result


def _print(result: dict) -> dict:
    print(json.dumps(_rounded(result)))
    return result


def annotation_table(subset: pd.DataFrame, args) -> pd.DataFrame:
    """Long ``path, annotator, label`` rows of ``subset`` from the --annotators columns (some dropped
    at random with --drop-annotations: each image keeps 1..all of its labels)."""
    columns = [c.strip() for c in args.annotators.split(",") if c.strip()]
    table = pd.read_csv(args.human_labels, dtype=str, keep_default_na=False).set_index("path")
    unknown = [c for c in columns if c not in table.columns]
    if unknown:
        raise SystemExit(f"--annotators {unknown}: columns are {', '.join(table.columns)}")
    rows = table.loc[subset.path]
    if not (rows["original"].to_numpy() == subset.true_label.to_numpy()).all():
        raise SystemExit("the human-labels CSV's 'original' column disagrees with the class folders")
    wide = rows[columns].reset_index()
    long = wide.melt(id_vars="path", var_name="annotator", value_name="label")
    long["_o"] = long["annotator"].map({c: i for i, c in enumerate(columns)})
    long = long.sort_values(["path", "_o"], kind="stable").reset_index(drop=True)
    if args.drop_annotations:
        rng = np.random.default_rng(args.noise_seed)
        keep_n = rng.integers(1, len(columns) + 1, size=len(wide))
        rank = np.argsort(rng.random((len(wide), len(columns))), axis=1).argsort(axis=1)  # random order per image
        keep = (rank < keep_n[:, None]).ravel()  # long is path-major in column order
        long = long[keep]
    return long[["path", "annotator", "label"]]


def annotators_benchmark(args, root: Path, subset: pd.DataFrame, command: str) -> dict:
    """Scan with several annotators per image; consensus accuracy next to majority vote and CROWDLAB."""
    from cleanlab.multiannotator import get_label_quality_multiannotator

    from labelaudit.consensus import majority_vote
    from labelaudit.consensus.scoring import combine_consensus
    from labelaudit.data.annotations import read_annotations
    from labelaudit.scandir import ScanDir

    tag = "drop" if args.drop_annotations else "all"
    name = f"annotators-{args.annotators.replace(',', '+')}-{tag}-n{len(subset)}" + (f"-{args.tag}" if args.tag else "")
    out = args.work / name
    if not args.rescore:
        shutil.rmtree(out / "scan", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    long = annotation_table(subset, args)
    long.to_csv(out / "annotations.csv", index=False)
    scores, wall = run_scan(root, None, out / "scan", args, annotations_csv=out / "annotations.csv")
    table = scores.merge(subset, on="path", validate="one_to_one")
    classes = ScanDir(out / "scan").read_manifest().classes
    index = {c: i for i, c in enumerate(classes)}
    truth = table.true_label.map(index).to_numpy()
    annotations = read_annotations(out / "annotations.csv", root)
    votes = annotations.votes(list(table.path), classes)
    probs = np.load(ScanDir(out / "scan").pred_probs)
    crowd = get_label_quality_multiannotator(pd.DataFrame(np.where(votes >= 0, votes, np.nan),
                                                          columns=annotations.annotators),
                                             probs, verbose=False)
    crowd_labels = crowd["label_quality"]["consensus_label"].to_numpy()
    consensus = table.consensus_label.map(index).to_numpy()
    wrong = consensus != truth
    crowd_wrong = crowd_labels != truth
    majority = majority_vote(votes, len(classes))
    true_acc = {a: float((votes[:, j] == truth)[votes[:, j] != -1].mean()) for j, a in enumerate(annotations.annotators)}
    stats = pd.read_csv(ScanDir(out / "scan").annotators).set_index("annotator")
    crowd_stats = crowd["annotator_stats"]["annotator_quality"]
    summary = scores.attrs["summary"]
    variants = {"mislabel_score": table.mislabel_score.to_numpy(),
                "1 - consensus_quality": 1 - table.consensus_quality.to_numpy(),
                "consensus_quality+flip_loss_in": combine_consensus(table, ["consensus_quality", "flip_loss_in"]),
                "consensus_quality+label_quality": combine_consensus(table, ["consensus_quality", "label_quality"]),
                "1 - agreement": 1 - table.agreement.to_numpy()}
    return {
        "benchmark": "detect-annotators", "command": command, "n_samples": len(table), "n_classes": len(classes),
        "annotators": annotations.annotators, "dropped_at_random": bool(args.drop_annotations),
        "n_annotations": int(len(long)), "annotations_per_image": dict(long.groupby("path").size().value_counts().sort_index()
                                                                        .rename(str).items()),
        "device": summary["device"], "config": ScanDir(out / "scan").read_manifest().config, "wall_s": wall,
        "rescored_from_stored_folds": bool(args.rescore), "folds_resumed": summary["folds_resumed"],
        "consensus_accuracy": {
            "labelaudit": float((consensus == truth).mean()),
            "majority_vote": float((majority == truth).mean()),
            "crowdlab_same_probs": float((crowd_labels == truth).mean()),
            "model_argmax": float((probs.argmax(1) == truth).mean()),
        },
        "consensus_summary": summary["consensus"],
        "n_wrong_consensus": int(wrong.sum()),
        "labelaudit": detection_figures(wrong, table.mislabel_score.to_numpy(), table.flagged.to_numpy()),
        "score_variants_auroc_ap": {k: [roc_auc_score(wrong, v), average_precision_score(wrong, v)]
                                    for k, v in variants.items()},
        "crowdlab_quality_auroc_ap_own_consensus": [
            roc_auc_score(crowd_wrong, -crowd["label_quality"]["consensus_quality_score"].to_numpy()),
            average_precision_score(crowd_wrong, -crowd["label_quality"]["consensus_quality_score"].to_numpy())],
        "annotator_quality": {a: {"true_accuracy": true_acc[a], "labelaudit": float(stats.loc[a, "quality"]),
                                  "crowdlab": float(crowd_stats.loc[a])} for a in annotations.annotators},
        "holdout_accuracy_vs_consensus": summary["holdout_accuracy"],
    }


def _rounded(value):
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


if __name__ == "__main__":
    main()
