"""Screen a fold-training variant on the development slice, without a full scan.

Trains folds of a finished development scan (default: two of its five folds, the same
split, seed and images) with one *variant* of the training, and prints one JSON line:
held-out accuracy against the truth and against the given labels, AUROC / AP of
``1 - p(given label)`` for the truly wrong labels (held-out probabilities averaged over the
image and its mirror, as in a scan), the share of truly wrong labels whose best other class
is the truth, and the training time. With 2,000 held-out images the standard error is about
one point of accuracy and 0.01 AUROC: a variant has to clear that to matter.

Variants (``--variant``):

* ``base`` -- the scan's own settings;
* ``epochs:N`` -- N epochs instead of 12;
* ``progressive:N:SIZE:FRAC`` -- N epochs, the first FRAC of them on images resized to
  SIZE pixels (cheaper steps; FFCV-style progressive resizing; labelaudit's ``early_fraction`` /
  ``early_scale`` settings, the default since this screen);
* ``mirror-select:EPOCH:FRAC`` -- noise-resistant training (the MDA idea): after EPOCH epochs,
  the FRAC of training samples with the highest loss on their *mirror* image (eval mode; a
  memorised wrong label does not carry over to the mirror) get no gradient for the rest of
  the training;
* ``drop:FRAC`` -- a second pass: each fold's training set without its FRAC most suspicious
  samples by the finished scan's ``mislabel_score``;
* ``relabel:FRAC`` -- a second pass: those samples trained on the scan's suggestion (its
  held-out argmax) instead of their given label;
* ``flip-augment:FRAC`` -- mirror half of each training batch during the first FRAC of the
  epochs (1.0: all of them, the usual augmentation; the in-sample mirror signals then lose
  their meaning, the held-out ones keep it);
* ``set:FIELD=VALUE,...`` -- other training settings (fields of ``ScanConfig``, e.g.
  ``set:batch_size=64,lr=0.05``);
* ``pool-first`` / ``pool-first:FIELD=VALUE,...`` -- each stage's widening convolution followed
  by max-pooling *before* its batch norm and ReLU (airbench's order; those memory-bound layers
  then run on a quarter of the values), optionally with other settings as for ``set:``;
* ``elr:LAMBDA:BETA`` -- early-learning regularisation (Liu et al., NeurIPS 2020): each
  training sample keeps a running average ``t`` of its own softmax (momentum BETA, updated each
  time it is drawn), and the loss adds ``LAMBDA * log(1 - <p, t>)``, which pulls the model towards
  its early predictions and so resists memorising a wrong label late in training;
* ``gce:Q`` -- generalised cross-entropy ``(1 - p_y^Q) / Q`` (Zhang & Sabuncu, 2018) in place of
  the cross-entropy of the gradient, a loss bounded for wrong labels;
* ``truth`` -- the folds trained on the *true* labels: the noise-free ceiling of the fold
  models, i.e. the most that any noise-robust training could buy;
* ``votes:majority`` / ``votes:soft`` -- several annotators (``--annotators``, default the ``random1..3`` columns): the
  folds trained on the majority vote (what a scan with ``--annotations`` does) or on the
  share of each image's annotators per class as a soft target; also prints the consensus
  accuracy and the AUROC / AP of ``1 - consensus_quality`` for the wrong consensus labels
  (:func:`labelaudit.consensus.estimate_consensus` on the held-out images). Given labels,
  AUROC and AP are then those of the majority vote.

``kmeans-ensemble`` trains nothing on images: label-free k-means patch features
(:func:`byom.kmeans_patch_features`) of all the scan's images, linear/MLP heads per fold on
them (a scan from ``--features``), and the held-out probabilities of the CNN and of the heads
averaged (arithmetic and geometric, CNN weight 1.0 ... 0.5). All five folds.

``patch-dictionary-ensemble[:ATOMS]`` likewise, with a stronger label-free representation
(Thiry et al. 2021, "The unreasonable effectiveness of patches in deep convolutional kernels
methods"): ATOMS (default 1,024) random ZCA-whitened 6x6 patches of the images as convolution
filters, ``relu(+-response - 0.25)`` average-pooled to 2x2, a softmax head per fold on the image
and its mirror (:func:`patch_dictionary_ensemble`). All five folds.

The second-pass variants read the finished scan's scores, which came from models that saw
the held-out fold's labels; they measure what a second pass could buy, not a leak-free
procedure. Example (the development scan comes from ``benchmarks/detect.py``)::

    python benchmarks/detect.py --per-class 500 --max-index 30000 --human random1 --baseline shared --tag bf16
    python benchmarks/dev_screen.py --variant base
    python benchmarks/dev_screen.py --variant progressive:16:24:0.5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, roc_auc_score

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
DEFAULT_HUMAN = REPO.parent / "shared" / "datasets" / "cifar10n-dev-labels.csv.gz"
DEFAULT_SCAN = REPO / "bench-out" / "human-random1-n5000-o0-bf16" / "scan"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="base")
    p.add_argument("--scan", type=Path, default=DEFAULT_SCAN, help="a finished development scan (benchmarks/detect.py)")
    p.add_argument("--human-labels", type=Path, default=DEFAULT_HUMAN)
    p.add_argument("--truth-column", default="original")
    p.add_argument("--train-seed", type=int, default=None,
                   help="seed of initialisation and augmentation (default: the scan's; the fold split stays the scan's)")
    p.add_argument("--annotators", default="random1,random2,random3",
                   help="human-labels columns that are the annotators of the votes:* variants")
    p.add_argument("--folds", default="0,1", help="comma-separated 0-based folds to train")
    p.add_argument("--out", type=Path, default=None, help="also append the JSON line to this file")
    return p.parse_args(argv)


class DevScan:
    """The images, labels, truth and fold split of a finished scan, in its row order."""

    def __init__(self, scan: Path, human_labels: Path, truth_column: str) -> None:
        from labelaudit.scandir import ScanDir
        from labelaudit.scanner import _fold_assignment

        self.path = scan
        self.scores = pd.read_csv(scan / "scores.csv")
        manifest = ScanDir(scan).read_manifest()
        self.config, self.dataset_root = manifest.config, Path(manifest.dataset_root)
        self.images_path = next((scan / "cache").glob("decoded-*.npy"))
        self.images = np.load(self.images_path)
        self.classes = sorted(self.scores.given_label.unique())
        index = {c: i for i, c in enumerate(self.classes)}
        self.labels = self.scores.given_label.map(index).to_numpy().astype(np.int64)
        human = pd.read_csv(human_labels, dtype=str).set_index("path")
        self.truth = human.loc[self.scores.path, truth_column].map(index).to_numpy()
        self.folds = _fold_assignment(self.labels, self.config["folds"], self.config["seed"])
        if len(self.images) != len(self.labels):
            raise SystemExit(f"{scan}: {len(self.images)} cached images for {len(self.labels)} rows")


def figures(probs: np.ndarray, labels: np.ndarray, truth: np.ndarray) -> dict:
    """Accuracy, AUROC / AP of 1 - p(given) and best-other-class suggestion; probs (n, C)."""
    wrong = labels != truth
    given = probs[np.arange(len(labels)), labels]
    other = np.where(np.arange(probs.shape[1])[None] == labels[:, None], -1.0, probs).argmax(1)
    return {"acc_true": round(float((probs.argmax(1) == truth).mean()), 4),
            "acc_given": round(float((probs.argmax(1) == labels).mean()), 4),
            "auroc": round(float(roc_auc_score(wrong, -given)), 4),
            "ap": round(float(average_precision_score(wrong, -given)), 4),
            "suggestion_true_on_wrong": round(float((other[wrong] == truth[wrong]).mean()), 4)}


# ------------------------------------------------------------------ training variants


@contextlib.contextmanager
def mirror_selection(training, after_epoch: int, fraction: float) -> Iterator[None]:
    """Patch fold training: from epoch ``after_epoch`` on, the ``fraction`` of training samples with the
    highest mirror-image loss are masked out of the gradient."""
    original_train, original_batch = training._train, training._DeviceData.batch
    original_ce = training.F.cross_entropy
    state: dict = {}

    def train(model, data, labels, train_idx, cfg, *args, **kwargs):
        steps = len(training._batch_bounds(len(train_idx), cfg.batch_size))
        state.update(model=model, data=data, labels=labels, train_idx=train_idx, cfg=cfg, calls=0, steps=steps,
                     keep=None, idx=None)
        return original_train(model, data, labels, train_idx, cfg, *args, **kwargs)

    def batch(self, idx, *, flip=False):
        if state.get("model") is not None and state["model"].training and not flip:
            epoch = state["calls"] // state["steps"]
            state["calls"] += 1
            if epoch >= after_epoch and state["keep"] is None:
                state["keep"] = _mirror_keep(training, state, fraction)
                state["model"].train()
            state["idx"] = idx
        return original_batch(self, idx, flip=flip)

    def cross_entropy(logits, target, *args, **kwargs):
        loss = original_ce(logits, target, *args, **kwargs)
        if state.get("keep") is not None and logits.requires_grad and kwargs.get("reduction") == "none":
            loss = loss * state["keep"][state["idx"]]
        return loss

    with _patched_training(training, train=train, batch=batch, cross_entropy=cross_entropy):
        yield


def _mirror_keep(training, state: dict, fraction: float) -> torch.Tensor:
    """Weight (N,) 1 for kept samples, 0 for the ``fraction`` of training samples with the highest mirror loss."""
    train_idx = state["train_idx"]
    logits = training._eval_logits(state["model"], state["data"], train_idx, state["cfg"], flip=True)
    loss = F.cross_entropy(logits, state["labels"][train_idx], reduction="none")
    keep = torch.ones(len(state["labels"]))
    keep[train_idx[loss.argsort(descending=True)[: int(fraction * len(train_idx))]]] = 0
    return keep


@contextlib.contextmanager
def early_flips(training, fraction: float, seed: int) -> Iterator[None]:
    """Patch fold training: random horizontal flips of half of each batch in the first ``fraction`` of the epochs."""
    original_resize = training._early_resize
    generator = torch.Generator().manual_seed(seed)

    def early_resize(x, epoch, cfg):
        x = original_resize(x, epoch, cfg)
        return training._random_flip(x, generator) if epoch < fraction * cfg.epochs else x

    training._early_resize = early_resize
    try:
        yield
    finally:
        training._early_resize = original_resize


@contextlib.contextmanager
def _pool_first(training) -> Iterator[None]:
    """Patch fold training: models built with ``pool_first=True``."""
    import functools

    original = training.build_model
    training.build_model = functools.partial(original, pool_first=True)
    try:
        yield
    finally:
        training.build_model = original


@contextlib.contextmanager
def soft_targets(training, targets: torch.Tensor) -> Iterator[None]:
    """Patch fold training: the gradient's cross-entropy is taken against ``targets`` (N, C) rows."""
    original_batch, original_ce = training._DeviceData.batch, training.F.cross_entropy
    state: dict = {}

    def batch(self, idx, *, flip=False):
        state["idx"] = idx
        return original_batch(self, idx, flip=flip)

    def cross_entropy(logits, target, *args, **kwargs):
        if logits.requires_grad and target.dim() == 1:
            target = targets[state["idx"]]
        return original_ce(logits, target, *args, **kwargs)

    with _patched_training(training, batch=batch, cross_entropy=cross_entropy):
        yield


@contextlib.contextmanager
def robust_loss(training, n_samples: int, n_classes: int, *, elr: tuple[float, float] | None = None,
                gce_q: float | None = None) -> Iterator[None]:
    """Patch fold training: the gradient's loss is ELR-regularised or generalised cross-entropy.

    Only the training step's loss changes (logits that require a gradient, ``reduction="none"``);
    evaluation and the held-out predictions are untouched. The ELR targets live per sample of the
    whole data set (``n_samples`` x ``n_classes``) and are reset when a fold's training starts.
    """
    original_train, original_batch, original_ce = training._train, training._DeviceData.batch, training.F.cross_entropy
    state: dict = {}

    def train(*args, **kwargs):
        state["targets"] = torch.zeros(n_samples, n_classes)
        return original_train(*args, **kwargs)

    def batch(self, idx, *, flip=False):
        state["idx"] = idx
        return original_batch(self, idx, flip=flip)

    def cross_entropy(logits, target, *args, **kwargs):
        if not (logits.requires_grad and kwargs.get("reduction") == "none" and target.dim() == 1):
            return original_ce(logits, target, *args, **kwargs)
        probs = logits.float().softmax(1)
        if gce_q is not None:
            loss = (1 - probs.gather(1, target[:, None]).squeeze(1).clamp_min(1e-7) ** gce_q) / gce_q
        else:
            loss = original_ce(logits, target, *args, **kwargs)
        if elr is not None:
            weight, momentum = elr
            idx = state["idx"]
            clipped = probs.clamp(1e-4, 1 - 1e-4)
            clipped = clipped / clipped.sum(1, keepdim=True)
            targets = state["targets"]
            targets[idx] = momentum * targets[idx] + (1 - momentum) * clipped.detach()
            loss = loss + weight * torch.log(1 - (targets[idx] * clipped).sum(1))
        return loss

    with _patched_training(training, train=train, batch=batch, cross_entropy=cross_entropy):
        yield


class Votes:
    """The annotators' votes of the development images (columns of the human-labels CSV)."""

    def __init__(self, dev: DevScan, human_labels: Path, columns: list[str]) -> None:
        from labelaudit.consensus import majority_vote, vote_matrix

        human = pd.read_csv(human_labels, dtype=str).set_index("path").loc[dev.scores.path]
        index = {c: i for i, c in enumerate(dev.classes)}
        self.votes = np.stack([human[c].map(index).to_numpy() for c in columns], axis=1)
        self.majority = majority_vote(self.votes, len(dev.classes))
        counts = vote_matrix(self.votes, len(dev.classes))
        self.shares = torch.as_tensor(counts / counts.sum(1, keepdims=True), dtype=torch.float32)

    def figures(self, probs: np.ndarray, rows: np.ndarray, truth: np.ndarray) -> dict:
        from labelaudit.consensus import estimate_consensus

        result = estimate_consensus(self.votes[rows], probs)
        wrong = result.labels != truth
        return {"majority_acc": round(float((self.majority[rows] == truth).mean()), 4),
                "consensus_acc": round(float((result.labels == truth).mean()), 4),
                "consensus_auroc": round(float(roc_auc_score(wrong, -result.quality)), 4),
                "consensus_ap": round(float(average_precision_score(wrong, -result.quality)), 4),
                "model_weight": result.model_weight, "vote_weight": result.vote_weight}


@contextlib.contextmanager
def _patched_training(training, *, train=None, batch=None, cross_entropy=None) -> Iterator[None]:
    """Fold training with its ``_train``, ``_DeviceData.batch`` and/or ``F.cross_entropy`` replaced, restored after."""
    saved = training._train, training._DeviceData.batch, training.F
    training._train = train or training._train
    training._DeviceData.batch = batch or training._DeviceData.batch
    if cross_entropy is not None:
        training.F = _with(training.F, cross_entropy=cross_entropy)
    try:
        yield
    finally:
        training._train, training._DeviceData.batch, training.F = saved


def _with(module, **overrides):
    """A stand-in for ``module`` with some attributes replaced."""
    import types

    kept = {k: getattr(module, k) for k in dir(module) if not k.startswith("__") and k not in overrides}
    return types.SimpleNamespace(**kept, **overrides)


def _settings(text: str) -> dict:
    """``"batch_size=64,lr=0.05"`` -> ``{"batch_size": 64, "lr": 0.05}``, typed by the ``ScanConfig`` field."""
    from labelaudit.config import ScanConfig

    fields = ScanConfig.__dataclass_fields__
    pairs = [item.split("=", 1) for item in text.split(",")]
    unknown = [k for k, _ in pairs if k not in fields]
    if unknown:
        raise SystemExit(f"unknown ScanConfig field(s) {unknown}")
    defaults = ScanConfig()

    def typed(key: str, value: str):
        kind = type(getattr(defaults, key))
        return value.lower() in ("1", "true", "yes") if kind is bool else kind(value)

    return {k: typed(k, v) for k, v in pairs}


def train_variant(dev: DevScan, variant: str, folds: list[int], train_seed: int | None = None,
                  votes: Votes | None = None) -> dict:
    from labelaudit.config import ScanConfig
    from labelaudit.folds import training

    name, *params = variant.split(":")
    # a scan made before progressive resizing existed trained every epoch at full size
    settings = {"early_fraction": 0.0, **{k: v for k, v in dev.config.items() if k in ScanConfig.__dataclass_fields__}}
    if train_seed is not None:
        settings["seed"] = train_seed
    patch = contextlib.nullcontext()
    if name == "epochs":
        settings["epochs"] = int(params[0])
    elif name == "progressive":  # labelaudit's own setting since this screen chose it
        settings.update(epochs=int(params[0]), early_scale=int(params[1]) / settings["image_size"],
                        early_fraction=float(params[2]))
    elif name == "mirror-select":
        patch = mirror_selection(training, int(params[0]), float(params[1]))
    elif name == "set":
        settings.update(_settings(variant.split(":", 1)[1]))
    elif name == "pool-first":
        patch = _pool_first(training)
        if params:
            settings.update(_settings(variant.split(":", 1)[1]))
    elif name == "flip-augment":
        patch = early_flips(training, float(params[0]), settings["seed"])
    elif name == "elr":
        patch = robust_loss(training, len(dev.labels), len(dev.classes), elr=(float(params[0]), float(params[1])))
    elif name == "gce":
        patch = robust_loss(training, len(dev.labels), len(dev.classes), gce_q=float(params[0]))
    elif name == "votes" and params[0] == "soft":
        patch = soft_targets(training, votes.shares)
    elif name not in ("base", "drop", "relabel", "truth", "votes"):
        raise SystemExit(f"unknown variant {variant!r}")
    given = dev.truth if name == "truth" else votes.majority if name == "votes" else dev.labels
    cfg = ScanConfig(**settings)
    suspicion = dev.scores.mislabel_score.to_numpy()
    probs, rows, train_s = [], [], 0.0
    with patch:
        for k in folds:
            train_idx, labels = np.flatnonzero(dev.folds != k), given.copy()
            worst = train_idx[np.argsort(-suspicion[train_idx], kind="stable")[: int(len(train_idx) * float(params[0]))]] \
                if name in ("drop", "relabel") else train_idx[:0]
            if name == "drop":
                train_idx = np.setdiff1d(train_idx, worst)
            if name == "relabel":
                labels[worst] = np.load(dev.path / "pred_probs.npy")[worst].argmax(1)
            job = training.FoldJob(fold=k, train_idx=train_idx, holdout_idx=np.flatnonzero(dev.folds == k),
                                   images_path=str(dev.images_path), labels=labels, n_classes=len(dev.classes),
                                   config=cfg.to_dict(), embed_all=False, images=dev.images)
            result = training.run_fold(job)
            train_s += result.timings["train_s"]
            p = result.records["holdout_probs"]
            if "holdout_probs_flip" in result.records:
                p = 0.5 * (p + result.records["holdout_probs_flip"])
            probs.append(p)
            rows.append(result.holdout_idx)
    rows_all, probs_all = np.concatenate(rows), np.concatenate(probs)
    scored = votes.majority if name == "votes" else dev.labels
    line = {"folds": folds, "held_out": len(rows_all), "epochs": cfg.epochs, "train_seed": cfg.seed,
            "train_s": round(train_s, 1), **figures(probs_all, scored[rows_all], dev.truth[rows_all])}
    if name == "votes":
        line.update(votes.figures(probs_all, rows_all, dev.truth[rows_all]))
    return line


# ------------------------------------------------------------------ k-means ensemble


def kmeans_ensemble(dev: DevScan, work: Path) -> dict:
    from byom import kmeans_patch_features

    started = time.perf_counter()
    features = kmeans_patch_features(dev.images, seed=0)
    feature_s = time.perf_counter() - started
    work.mkdir(parents=True, exist_ok=True)
    index, labels_csv = work / "index.csv", work / "labels.csv"
    pd.DataFrame({"path": dev.scores.path}).to_csv(index, index=False)
    pd.DataFrame({"path": dev.scores.path, "label": dev.scores.given_label}).to_csv(labels_csv, index=False)
    started = time.perf_counter()
    heads = _heads_scan(dev, features, work, index, labels_csv)
    heads_s = time.perf_counter() - started
    return {"feature_s": round(feature_s, 1), "heads_s": round(heads_s, 1), **_blends(dev, heads, "kmeans_heads")}


def _blends(dev: DevScan, heads: np.ndarray, name: str) -> dict:
    """Figures of the scan's CNN, of ``heads`` (N, C) and of their blends (CNN weight 0.9 ... 0.5)."""
    cnn = np.load(dev.path / "pred_probs.npy")
    result = {"cnn": figures(cnn, dev.labels, dev.truth), name: figures(heads, dev.labels, dev.truth), "blends": {}}
    for weight in (0.9, 0.8, 0.7, 0.6, 0.5):
        arithmetic = weight * cnn + (1 - weight) * heads
        geometric = np.exp(weight * np.log(cnn + 1e-7) + (1 - weight) * np.log(heads + 1e-7))
        for kind, p in (("arithmetic", arithmetic), ("geometric", geometric)):
            result["blends"][f"{kind}:{weight}"] = figures(p / p.sum(1, keepdims=True), dev.labels, dev.truth)
    return result


def patch_dictionary_ensemble(dev: DevScan, atoms: int = 1024, patch: int = 6, threshold: float = 0.25) -> dict:
    """Label-free whitened-patch dictionary features (Thiry et al. 2021), a linear head per fold, blended.

    ``atoms`` random whitened 6x6 patches of the images (no labels) are the filters of one
    convolution; the features are ``relu(+-z - threshold)`` of the contrast-normalised
    responses, average-pooled to 2x2 (N, 4 * 2 * atoms). Each fold's softmax head (L-BFGS,
    L2 1e-4) trains on its training images and their mirrors; held-out probabilities are
    averaged over image and mirror, as the CNN's are.
    """
    x = torch.as_tensor(dev.images).permute(0, 3, 1, 2).float() / 255
    started = time.perf_counter()
    filters, bias = _whitened_patch_filters(x, atoms, patch)
    feats, feats_flip = (_patch_features(v, filters, bias, patch, threshold) for v in (x, x.flip(3)))
    feature_s = time.perf_counter() - started
    labels = torch.as_tensor(dev.labels)
    heads = np.zeros((len(x), len(dev.classes)))
    for fold in np.unique(dev.folds):
        train, held = np.flatnonzero(dev.folds != fold), np.flatnonzero(dev.folds == fold)
        mean, std = feats[train].mean(0), feats[train].std(0) + 1e-3
        head = _softmax_head(torch.cat([(feats[train] - mean) / std, (feats_flip[train] - mean) / std]),
                             torch.cat([labels[train], labels[train]]), len(dev.classes))
        with torch.no_grad():
            heads[held] = ((head((feats[held] - mean) / std).softmax(1)
                            + head((feats_flip[held] - mean) / std).softmax(1)) / 2).numpy()
    return {"feature_s": round(feature_s, 1), "heads_s": round(time.perf_counter() - started - feature_s, 1),
            "atoms": atoms, **_blends(dev, heads, "patch_heads")}


def _whitened_patch_filters(x: torch.Tensor, atoms: int, patch: int, seed: int = 0):
    """Convolution weights (atoms, 3, patch, patch) and bias (atoms,): ZCA-whitened random patches, unit norm."""
    g = torch.Generator().manual_seed(seed)
    cols = F.unfold(x[torch.randperm(len(x), generator=g)[:4000]], patch).transpose(1, 2).reshape(-1, 3 * patch * patch)
    cols = cols[torch.randperm(len(cols), generator=g)[:200_000]]
    mean = cols.mean(0)
    eigenvalues, eigenvectors = torch.linalg.eigh(torch.cov((cols - mean).T))
    zca = eigenvectors @ torch.diag(1 / torch.sqrt(eigenvalues + 1e-2 * eigenvalues.mean())) @ eigenvectors.T
    chosen = ((cols - mean) @ zca)[torch.randperm(len(cols), generator=g)[:atoms]]
    weights = (chosen / chosen.norm(dim=1, keepdim=True).clamp_min(1e-6)) @ zca
    return weights.reshape(atoms, 3, patch, patch), -(weights @ mean)


def _patch_features(x: torch.Tensor, filters: torch.Tensor, bias: torch.Tensor, patch: int, threshold: float,
                    batch: int = 500) -> torch.Tensor:
    ones = torch.ones(1, 3, patch, patch)
    out = []
    for start in range(0, len(x), batch):
        b = x[start:start + batch]
        spread = (F.conv2d(b ** 2, ones) - F.conv2d(b, ones) ** 2 / ones.numel()).clamp_min(0).sqrt()
        z = F.conv2d(b, filters, bias) / (spread + 0.5)
        out.append(F.adaptive_avg_pool2d(torch.cat([F.relu(z - threshold), F.relu(-z - threshold)], 1), 2).flatten(1))
    return torch.cat(out)


def _softmax_head(features: torch.Tensor, labels: torch.Tensor, n_classes: int, l2: float = 1e-4) -> torch.nn.Module:
    head = torch.nn.Linear(features.shape[1], n_classes)
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1, max_iter=300, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(head(features), labels) + l2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return head


def _heads_scan(dev: DevScan, features: np.ndarray, work: Path, index: Path, labels_csv: Path) -> np.ndarray:
    """Held-out probabilities (N, C) of heads trained per fold on ``features``, in the scan's row order."""
    import labelaudit

    out = work / "scan"
    scores = labelaudit.scan(dev.dataset_root, labels_csv=labels_csv, out=out, index=index, features=features, progress=False)
    probs = np.load(out / "pred_probs.npy")
    return pd.DataFrame(probs, index=scores.path).loc[dev.scores.path].to_numpy()


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if not args.human_labels.exists() or not (args.scan / "scores.csv").exists():
        print(json.dumps({"benchmark": "dev_screen", "skipped": f"needs {args.human_labels} and a finished scan {args.scan}"}))
        return
    dev = DevScan(args.scan, args.human_labels, args.truth_column)
    started = time.perf_counter()
    if args.variant == "kmeans-ensemble":
        figures_ = kmeans_ensemble(dev, args.scan.parent / "kmeans-ensemble")
    elif args.variant.startswith("patch-dictionary-ensemble"):
        figures_ = patch_dictionary_ensemble(dev, *(int(a) for a in args.variant.split(":")[1:2]))
    else:
        votes = Votes(dev, args.human_labels, args.annotators.split(",")) if args.variant.startswith("votes") else None
        figures_ = train_variant(dev, args.variant, [int(k) for k in args.folds.split(",")], args.train_seed, votes)
    line = {"benchmark": "dev_screen", "variant": args.variant, "scan": str(args.scan), **figures_,
            "wall_s": round(time.perf_counter() - started, 1), "torch_threads": torch.get_num_threads(),
            "command": "python benchmarks/dev_screen.py " + shlex.join(argv)}
    print(json.dumps(line))
    if args.out:
        with args.out.open("a") as fh:
            fh.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
