"""Folds on embeddings: a small head per fold instead of a CNN (bring your own model).

With ``features`` (N, D) given, each stratified fold trains two heads on its training
rows -- a linear softmax classifier and an MLP with one hidden layer -- and the kind whose
out-of-sample cross-entropy against the *given* labels is lower over all folds is kept
(the scan's own held-out loss, never ground truth). The kept folds' results carry the
same named records as the CNN folds (:mod:`labelaudit.folds.records`), so the signals,
score, scan directory, review app and export are unchanged:

* ``holdout_probs`` (n_holdout, C) -- confident learning;
* ``train_margins``, ``train_losses``, ``train_correct`` (E, n_train) -- loss dynamics of
  the head's training, one row per epoch, from the training batches;
* with ``features_flip`` (the mirrored images' embeddings, never trained on):
  ``holdout_probs_flip`` and the late-epoch in-sample views ``view_losses``,
  ``view_flip_losses``, ``view_flip_agree`` -- flip consistency.

Speed: the whole array is one float32 tensor (no copy of a float32 ``.npy`` memory map
beyond what the OS pages in), large batches (up to :attr:`HeadSettings.batch_size` rows),
AdamW, bfloat16 autocast where the CPU computes it natively. Standardisation statistics
come from at most 65,536 training rows of each fold.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from labelaudit.errors import TrainingDiverged
from labelaudit.folds.records import FoldResult
from labelaudit.folds.training import (autocast, late_epochs, margin, resolve_device, resolve_precision,
                                       torch_threads)
from labelaudit.folds.transfer import to_device
from labelaudit.progress import progress_bar

__all__ = ["HEAD_KINDS", "HeadSettings", "HeadRun", "build_head", "train_heads", "run_head_fold",
           "select_head", "holdout_loss"]

#: The head kinds trained per fold, in order of preference on a tie.
HEAD_KINDS = ("linear", "mlp")
_EPS = 1e-7
#: Below this many rows the heads train on one thread: their small matrix products gain
#: nothing from more, and waiting threads slowed them 10-40x on a busy 2-core machine.
SINGLE_THREAD_ROWS = 20_000
#: Up to this many rows both kinds train on every fold and are compared over all of them;
#: above, they are compared on the first fold (its held-out set is then large enough) and
#: the other folds train the kept kind only, which saves most of the cost when it is linear.
COMPARE_ALL_FOLDS_ROWS = 50_000


@dataclass(frozen=True)
class HeadSettings:
    """Training of the heads (fixed defaults; not command-line options).

    Attributes
    ----------
    epochs : int
        Passes over each fold's training rows (one row of the dynamics records each).
    batch_size : int
        Largest batch; smaller data gets smaller batches so that an epoch has at least
        ``min_steps`` steps.
    min_steps : int
        Fewest optimizer steps per epoch.
    lr, weight_decay : float
        AdamW peak learning rate (linear warm-up over the first epoch, cosine decay to 0)
        and decoupled weight decay.
    hidden : int
        Width of the MLP's hidden layer.
    eval_rows : int
        Rows per chunk of the evaluation passes.
    """

    epochs: int = 12
    batch_size: int = 4096
    min_steps: int = 64
    lr: float = 5e-3
    weight_decay: float = 1e-4
    hidden: int = 256
    eval_rows: int = 65536

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class HeadRun:
    """The folds of the kept head kind.

    Attributes
    ----------
    kind : str
        The kept kind (a name of :data:`HEAD_KINDS`).
    results : list of FoldResult
        Its folds, in fold order.
    holdout_losses : dict of str to float
        Mean out-of-sample cross-entropy against the given labels of every kind, over the
        folds they were compared on (lower is better; the kept kind has the lowest).
    images_trained : int
        Training rows seen (rows x epochs x kinds).
    """

    kind: str
    results: list[FoldResult]
    holdout_losses: dict[str, float]
    images_trained: int


def build_head(kind: str, n_features: int, n_classes: int, hidden: int = 256) -> torch.nn.Module:
    """A fresh head: ``"linear"`` (D -> C) or ``"mlp"`` (D -> hidden -> GELU -> C)."""
    if kind == "linear":
        return torch.nn.Linear(n_features, n_classes)
    if kind == "mlp":
        return torch.nn.Sequential(torch.nn.Linear(n_features, hidden), torch.nn.GELU(),
                                   torch.nn.Linear(hidden, n_classes))
    raise ValueError(f"unknown head kind {kind!r}; choose one of {HEAD_KINDS}")


class _Rows:
    """The embeddings (and mirrored embeddings) as tensors, standardised batch by batch."""

    def __init__(self, features: np.ndarray, features_flip: np.ndarray | None, device: torch.device,
                 precision: str) -> None:
        self.x = _tensor(features, device)
        self.x_flip = None if features_flip is None else _tensor(features_flip, device)
        self.device, self.precision = device, precision
        self.mean = torch.zeros(self.x.shape[1], device=device)
        self.std = torch.ones(self.x.shape[1], device=device)

    def fit_standardisation(self, idx: torch.Tensor) -> None:
        sample = self.x[idx[:: max(1, len(idx) // 65536)]]
        self.mean, self.std = sample.mean(0), sample.std(0).clamp_min(1e-6)

    def batch(self, idx: torch.Tensor, *, flip: bool = False) -> torch.Tensor:
        return ((self.x_flip if flip else self.x)[idx] - self.mean) / self.std

    def autocast(self):
        return autocast(self.device, self.precision)


def _tensor(values: np.ndarray, device: torch.device) -> torch.Tensor:
    """``values`` as a float32 tensor, sharing a float32 array's memory (also a read-only memory map)."""
    with warnings.catch_warnings():  # a read-only map: the tensor is only ever read
        warnings.simplefilter("ignore", UserWarning)
        return torch.as_tensor(np.asarray(values, dtype=np.float32)).to(device)


def train_heads(features: np.ndarray, labels: np.ndarray, folds: np.ndarray, n_classes: int, *,
                features_flip: np.ndarray | None = None, seed: int = 0, device: str = "auto",
                precision: str = "auto", settings: HeadSettings | None = None, progress: bool = False) -> HeadRun:
    """Train every head kind; keep the kind with the lowest held-out loss on the given labels.

    Both kinds train on every fold up to :data:`COMPARE_ALL_FOLDS_ROWS` samples and are
    compared over all folds; above, they are compared on the first fold only.

    Parameters
    ----------
    features : numpy.ndarray of float32, shape (N, D)
        Embeddings, one row per sample.
    labels : numpy.ndarray of int64, shape (N,)
        Given labels.
    folds : numpy.ndarray of int, shape (N,)
        Fold id of each sample (its held-out fold).
    n_classes : int
        Number of classes ``C``.
    features_flip : numpy.ndarray of float32, shape (N, D), optional
        Embeddings of the mirrored images (flip records).
    seed : int
        Seed of initialisation and batch order.
    device, precision : str
        As the scan settings of the same names.
    settings : HeadSettings, optional
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    HeadRun

    Raises
    ------
    TrainingDiverged
        A head's loss or predictions became non-finite.
    """
    settings = settings or HeadSettings()
    dev = resolve_device(device)
    data = _Rows(features, features_flip, dev, resolve_precision(precision, dev))
    y = torch.as_tensor(labels, dtype=torch.long, device=dev)
    n_folds = int(folds.max()) + 1
    compared = n_folds if len(labels) <= COMPARE_ALL_FOLDS_ROWS else 1
    rows = [int((folds != k).sum()) for k in range(n_folds)]
    total = (len(HEAD_KINDS) * sum(rows[:compared]) + sum(rows[compared:])) * settings.epochs
    with torch_threads(1 if len(labels) < SINGLE_THREAD_ROWS else torch.get_num_threads()), \
            progress_bar(total=total, unit="row", unit_scale=True, enabled=progress, desc="heads") as bar:
        def fold(kind: str, k: int) -> FoldResult:
            return run_head_fold(data, y, np.flatnonzero(folds != k), np.flatnonzero(folds == k), n_classes,
                                 kind=kind, settings=settings, seed=seed * 1009 + k, fold=k, report=bar.update)

        by_kind = {kind: [fold(kind, k) for k in range(compared)] for kind in HEAD_KINDS}
        losses = {kind: holdout_loss(results, labels) for kind, results in by_kind.items()}
        kind = select_head(losses)
        results = by_kind[kind] + [fold(kind, k) for k in range(compared, n_folds)]
    return HeadRun(kind=kind, results=results, holdout_losses=losses, images_trained=total)


def holdout_loss(results: list[FoldResult], labels: np.ndarray) -> float:
    """Mean out-of-sample cross-entropy of ``results`` against the given ``labels`` (lower = better fit)."""
    total = sum(-np.log(r.records["holdout_probs"][np.arange(len(r.holdout_idx)), labels[r.holdout_idx]] + _EPS).sum()
                for r in results)
    return float(total / sum(len(r.holdout_idx) for r in results))


def select_head(losses: dict[str, float]) -> str:
    """The kind with the lowest held-out loss (the earlier of :data:`HEAD_KINDS` on a tie)."""
    return min(losses, key=lambda kind: (losses[kind], HEAD_KINDS.index(kind)))


def run_head_fold(data: _Rows, labels: torch.Tensor, train_idx: np.ndarray, holdout_idx: np.ndarray,
                  n_classes: int, *, kind: str, settings: HeadSettings, seed: int, fold: int,
                  report=None) -> FoldResult:
    """Train one head on ``train_idx`` and record what the signals need (see the module doc).

    Returns
    -------
    FoldResult
        Records ``train_margins``, ``train_losses``, ``train_correct``, ``holdout_probs``;
        with mirrored embeddings also ``view_losses``, ``view_flip_losses``,
        ``view_flip_agree`` and ``holdout_probs_flip``.
    """
    train = torch.as_tensor(train_idx, dtype=torch.long, device=data.device)
    holdout = torch.as_tensor(holdout_idx, dtype=torch.long, device=data.device)
    data.fit_standardisation(train)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = build_head(kind, data.x.shape[1], n_classes, settings.hidden).to(data.device)
    started = time.perf_counter()
    records = _train(head, data, labels, train, settings, torch.Generator().manual_seed(seed), report)
    trained = time.perf_counter()
    records["holdout_probs"] = _probs(head, data, holdout, settings, flip=False)
    if data.x_flip is not None:
        records["holdout_probs_flip"] = _probs(head, data, holdout, settings, flip=True)
    if not (np.isfinite(records["train_losses"]).all() and np.isfinite(records["holdout_probs"]).all()):
        raise TrainingDiverged(f"the {kind} head diverged in fold {fold + 1} (non-finite loss or predictions)")
    given = labels[holdout].cpu().numpy()
    accuracy = float((records["holdout_probs"].argmax(1) == given).mean()) if len(given) else math.nan
    return FoldResult(fold=fold, train_idx=np.asarray(train_idx), holdout_idx=np.asarray(holdout_idx),
                      holdout_accuracy=accuracy, records=records,
                      timings={"train_s": trained - started, "predict_s": time.perf_counter() - trained})


def _batch_size(n_train: int, settings: HeadSettings) -> int:
    return max(1, min(settings.batch_size, math.ceil(n_train / settings.min_steps)))


def _schedule(optimizer, steps_per_epoch: int, total_steps: int):
    """Linear warm-up over the first epoch, then cosine decay to 0."""
    warmup = max(1, min(steps_per_epoch, total_steps // 4))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _train(head, data: _Rows, labels, train: torch.Tensor, settings: HeadSettings, generator,
           report) -> dict[str, np.ndarray]:
    """Train ``head`` in place; the per-epoch training records and, with mirrors, the late-epoch views."""
    n = len(train)
    size = _batch_size(n, settings)
    steps = math.ceil(n / size)
    optimizer = torch.optim.AdamW(head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = _schedule(optimizer, steps, steps * settings.epochs)
    margins = torch.zeros((settings.epochs, n), device=data.device)  # on the device: no read-back per step
    losses = torch.zeros((settings.epochs, n), device=data.device)
    late = late_epochs(settings.epochs) if data.x_flip is not None else []
    views: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for epoch in range(settings.epochs):
        head.train()
        order = to_device(torch.randperm(n, generator=generator), data.device)
        for start in range(0, n, size):
            positions = order[start:start + size]
            idx = train[positions]
            y = labels[idx]
            with data.autocast():
                logits = head(data.batch(idx)).float()
            loss = F.cross_entropy(logits, y, reduction="none")
            optimizer.zero_grad(set_to_none=True)
            loss.mean().backward()
            optimizer.step()
            schedule.step()
            margins[epoch, positions] = margin(logits.detach(), y)
            losses[epoch, positions] = loss.detach()
            if report is not None:
                report(len(positions))
        if epoch in late:
            views.append(_views(head, data, labels, train, settings))
    margins, losses = margins.cpu().numpy(), losses.cpu().numpy()
    records = {"train_margins": margins, "train_losses": losses, "train_correct": margins > 0}
    if views:
        records.update(view_losses=np.stack([v[0] for v in views]), view_flip_losses=np.stack([v[1] for v in views]),
                       view_flip_agree=np.stack([v[2] for v in views]))
    return records


@torch.no_grad()
def _logits(head, data: _Rows, idx: torch.Tensor, settings: HeadSettings, *, flip: bool) -> torch.Tensor:
    head.eval()
    chunks = []
    for start in range(0, len(idx), settings.eval_rows):
        with data.autocast():
            chunks.append(head(data.batch(idx[start:start + settings.eval_rows], flip=flip)).float())
    out_features = head.out_features if isinstance(head, torch.nn.Linear) else head[-1].out_features
    return torch.cat(chunks) if chunks else torch.zeros(0, out_features, device=data.device)


def _probs(head, data: _Rows, idx: torch.Tensor, settings: HeadSettings, *, flip: bool) -> np.ndarray:
    return _logits(head, data, idx, settings, flip=flip).softmax(1).cpu().numpy()


def _views(head, data: _Rows, labels, train: torch.Tensor, settings: HeadSettings):
    """In-sample loss of the embedding and of the mirror's, and whether they agree (each (n_train,))."""
    y = labels[train]
    logits = _logits(head, data, train, settings, flip=False)
    flip_logits = _logits(head, data, train, settings, flip=True)
    loss = F.cross_entropy(logits, y, reduction="none")
    flip_loss = F.cross_entropy(flip_logits, y, reduction="none")
    return loss.cpu().numpy(), flip_loss.cpu().numpy(), (logits.argmax(1) == flip_logits.argmax(1)).cpu().numpy()
