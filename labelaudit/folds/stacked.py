"""All folds of a scan trained at once, as one stacked network (``--executor stacked``).

On a GPU a small fold model leaves the device idle: its kernels are too small to fill it,
and the time goes into launching them. Stacking the K fold models side by side
(:class:`~labelaudit.folds.models.StackedResNet`: grouped convolutions, one batch norm over
all members' channels, one batched head) trains them with the kernel launches of one
model. Each member is exactly its fold's model: initialised from the fold's seed, fed its
own training images in its own order with its own augmentation draws (the same random
streams as :func:`~labelaudit.folds.training.run_fold`), normalised by its own statistics,
with its own loss; nothing crosses between members, so no fold's model sees its held-out
labels. When fold sizes differ (stratified folds may differ by a few images), the smaller
folds' last batch of each epoch is topped up with some of their own images, which get no
weight in the loss, no entry in the records and no augmentation draws. They do enter that
batch's batch-norm statistics (and the running ones), and where the fold sizes straddle a
multiple of the batch size a smaller fold's last batch is cut differently (or is a step of
top-up only, which momentum and weight decay still act on) under the largest fold's
schedule: such a fold's model is then close to, not exactly, its ``run_fold`` model.

On the CPU the grouped convolutions are slower than separate ones (README, "What a scan
does"), so this is a GPU option; the CPU runs it correctly, which the tests check.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from labelaudit.config import ScanConfig
from labelaudit.errors import SettingsError, TrainingDiverged
from labelaudit.folds.compiled import maybe_compile
from labelaudit.folds.models import StackedResNet
from labelaudit.folds.records import FoldResult
from labelaudit.folds.training import (
    TTA_SHIFTS,
    FoldJob,
    ProgressReport,
    _batch_bounds,
    _DeviceData,
    _early_resize,
    _fold_seed,
    _seeded_model,
    _translate,
    autocast,
    deterministic_cudnn,
    fold_result,
    late_epochs,
    load_images,
    margin,
    mirror_draws,
    mirror_where,
    resolve_device,
    resolve_precision,
    sgd_one_cycle,
    shift_each,
    training_losses,
    translation_draws,
)
from labelaudit.folds.transfer import Readback, to_device

__all__ = ["run_folds_stacked", "iter_folds_stacked"]


def run_folds_stacked(jobs: Sequence[FoldJob], *, report: ProgressReport | None = None) -> list[FoldResult]:
    """Train the folds of ``jobs`` together as one :class:`StackedResNet`; one result per job, in order.

    The list form of :func:`iter_folds_stacked` (same parameters and errors); a diverged
    fold raises before anything is returned.
    """
    return list(iter_folds_stacked(jobs, report=report))


def iter_folds_stacked(jobs: Sequence[FoldJob], *, report: ProgressReport | None = None) -> Iterator[FoldResult]:
    """Train the folds of ``jobs`` together as one :class:`StackedResNet`; yield their results in job order.

    Parameters
    ----------
    jobs : sequence of FoldJob
        Folds of one scan: the same images, labels, classes and settings, different
        ``fold`` numbers and index arrays.
    report : callable, optional
        :data:`~labelaudit.folds.training.ProgressReport`, called for every fold after
        every training batch.

    Yields
    ------
    FoldResult
        The records :func:`~labelaudit.folds.training.run_fold` makes for each job, once
        all are trained. The timings are those of the whole stack (shared by its folds).

    Raises
    ------
    SettingsError
        The jobs are not folds of one scan (before anything is trained).
    TrainingDiverged
        A fold's training loss or held-out predictions became non-finite (the first such
        fold is named). The members are independent, so the healthy folds' results are
        yielded first and a caller that stores each result keeps them.
    """
    if not jobs:
        return
    _check_one_scan(jobs)
    cfg = ScanConfig(**jobs[0].config)
    device = resolve_device(cfg.device)
    with deterministic_cudnn():
        outcomes = _run(jobs, cfg, device, report)
    diverged = [outcome for outcome in outcomes if isinstance(outcome, TrainingDiverged)]
    yield from (outcome for outcome in outcomes if not isinstance(outcome, TrainingDiverged))
    if diverged:
        raise diverged[0]


def _check_one_scan(jobs: Sequence[FoldJob]) -> None:
    first = jobs[0]
    for job in jobs[1:]:
        same = (job.config == first.config and job.images_path == first.images_path
                and job.n_classes == first.n_classes and np.array_equal(job.labels, first.labels))
        if not same:
            raise SettingsError("stacked folds must come from one scan (same images, labels and settings)")


@dataclass
class _Member:
    """One fold inside the stack: its samples (on ``_DeviceData.index_device``), its random stream and normalisation."""

    job: FoldJob
    train_idx: torch.Tensor  # (n_train,)
    holdout_idx: torch.Tensor  # (n_holdout,)
    generator: torch.Generator
    mean: torch.Tensor  # (1, 3, 1, 1)
    std: torch.Tensor

    @property
    def n_train(self) -> int:
        return len(self.train_idx)


def _members(jobs, data: _DeviceData, cfg: ScanConfig, device) -> list[_Member]:
    members = []
    for job in jobs:
        train_idx = torch.as_tensor(job.train_idx, dtype=torch.long, device=data.index_device)
        mean, std = data.channel_statistics(train_idx)
        members.append(_Member(job, train_idx, torch.as_tensor(job.holdout_idx, dtype=torch.long,
                                                               device=data.index_device),
                               torch.Generator().manual_seed(_fold_seed(cfg, job.fold)), mean, std))
    return members


def _run(jobs, cfg: ScanConfig, device, report) -> list[FoldResult | TrainingDiverged]:
    """Each job's result, or the :class:`TrainingDiverged` error of a member whose training diverged."""
    images = load_images(jobs[0])
    data = _DeviceData(images, device, resolve_precision(cfg.precision, device))
    labels = torch.as_tensor(np.asarray(jobs[0].labels), dtype=torch.long, device=device)
    members = _members(jobs, data, cfg, device)
    fold_models = [_seeded_model(jobs[0].n_classes, cfg, _fold_seed(cfg, job.fold)) for job in jobs]
    model = StackedResNet(fold_models).to(device).to(memory_format=torch.channels_last)
    model = maybe_compile(model, cfg.compile)
    stack = _Stack(model, data, members, cfg)
    started = time.perf_counter()
    records = _train(stack, labels, report)
    trained = time.perf_counter()
    for member_records, holdout in zip(records, _holdout_records(stack)):
        member_records.update(holdout)
    if any(job.embed_all for job in jobs):
        features = stack.features(torch.arange(len(images), device=data.index_device))
        for k, job in enumerate(jobs):
            if job.embed_all:
                records[k]["all_features"] = features[k]
    timings = {"train_s": trained - started, "predict_s": time.perf_counter() - trained}
    return [_outcome(member.job, member_records, cfg, timings) for member, member_records in zip(members, records)]


def _outcome(job: FoldJob, records: dict[str, np.ndarray], cfg: ScanConfig,
             timings: dict[str, float]) -> FoldResult | TrainingDiverged:
    try:
        return fold_result(job, records, cfg, timings)
    except TrainingDiverged as error:
        return error


class _Stack:
    """The stacked model with the members' data: batches in, per-member logits out."""

    def __init__(self, model: StackedResNet, data: _DeviceData, members: list[_Member], cfg: ScanConfig) -> None:
        self.model, self.data, self.members, self.cfg = model, data, members, cfg
        self.mean = torch.stack([m.mean[0] for m in members])[None]  # (1, K, 3, 1, 1)
        self.std = torch.stack([m.std[0] for m in members])[None]

    @property
    def k(self) -> int:
        return len(self.members)

    def normalised(self, x: torch.Tensor) -> torch.Tensor:
        """Images (K * B, 3, S, S), member-major, as the stack's input (B, K * 3, S, S)."""
        kb, c, s, _ = x.shape
        x = x.reshape(self.k, kb // self.k, c, s, s).transpose(0, 1)  # (B, K, 3, S, S)
        x = (x - self.mean) / self.std
        return x.reshape(kb // self.k, self.k * c, s, s).contiguous(memory_format=torch.channels_last)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Float logits (K, B, C) of images (K * B, 3, S, S), member-major."""
        with autocast(self.data.device, self.data.precision):
            return self.model(self.normalised(x)).float().transpose(0, 1)

    @torch.no_grad()
    def eval_logits(self, idx: Sequence[torch.Tensor], *, flip: bool, shift=(0, 0)) -> list[torch.Tensor]:
        """Eval-mode logits (n_k, C) of each member's images ``idx[k]``, mirrored and/or translated."""
        self.model.eval()
        n = max(len(i) for i in idx)
        padded = torch.stack([_pad_to(i, n) for i in idx])  # (K, n)
        out = []
        for start in range(0, n, 4 * self.cfg.batch_size):
            chunk = padded[:, start: start + 4 * self.cfg.batch_size].reshape(-1)
            out.append(self.logits(_translate(self.data.batch(chunk, flip=flip), shift)))
        logits = torch.cat(out, dim=1) if out else torch.zeros(self.k, 0, self.model.num_classes,
                                                                device=self.data.device)
        return [logits[k, : len(i)] for k, i in enumerate(idx)]

    @torch.no_grad()
    def features(self, idx: torch.Tensor) -> list[np.ndarray]:
        """Every member's unit-norm features (n, D), float16, of the images ``idx``."""
        self.model.eval()
        out = []
        for start in range(0, len(idx), 4 * self.cfg.batch_size):
            chunk = idx[start: start + 4 * self.cfg.batch_size]
            x = self.normalised(self.data.batch(chunk.repeat(self.k)))
            with autocast(self.data.device, self.data.precision):
                out.append(F.normalize(self.model.features(x).float(), dim=2).cpu())  # (b, K, D)
        features = torch.cat(out).numpy().astype(np.float16)
        return [features[:, k] for k in range(self.k)]


def _pad_to(idx: torch.Tensor, n: int) -> torch.Tensor:
    """``idx`` (m,) lengthened to (n,) by repeating its own entries (a stand-in, cut off again after)."""
    if len(idx) == n:
        return idx
    if len(idx) == 0:
        return torch.zeros(n, dtype=idx.dtype, device=idx.device)
    return torch.cat([idx, idx.repeat(math.ceil(n / len(idx)))[: n - len(idx)]])


def _epoch_order(member: _Member, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This epoch's training order of ``member``, lengthened to ``n`` positions.

    Returns ``(sample, record)``, each (n,): the position in the member's training set of
    the image to use, and where its records go (``n``, a spare column, for the top-up).
    """
    order = torch.randperm(member.n_train, generator=member.generator)
    order = to_device(order, member.train_idx.device)
    top_up = n - member.n_train
    spare = torch.full((top_up,), n, dtype=order.dtype, device=order.device)
    return _pad_to(order, n), torch.cat([order, spare])


def _train(stack: _Stack, labels: torch.Tensor, report: ProgressReport | None) -> list[dict[str, np.ndarray]]:
    """Train the stack in place; the training records of each member (see :func:`run_fold`).

    As in :func:`~labelaudit.folds.training.run_fold`, nothing in a step waits for the
    device: orders and augmentation are drawn at the start of each epoch and sent at once.
    """
    cfg, members, model = stack.cfg, stack.members, stack.model
    n = max(m.n_train for m in members)
    batches = _batch_bounds(n, cfg.batch_size)
    optimizer, schedule = sgd_one_cycle(model.parameters(), cfg, cfg.epochs * len(batches))
    dev = labels.device
    train_idx = torch.stack([_pad_to(m.train_idx, n) for m in members])  # (K, n), on the index device
    margins = torch.zeros((stack.k, cfg.epochs, n + 1), device=dev)  # column n: the top-up's records
    losses = torch.zeros_like(margins)
    late = late_epochs(cfg.epochs) if cfg.flip else []
    views = []
    rows = torch.arange(stack.k, device=dev)[:, None]
    stats = Readback()
    for epoch in range(cfg.epochs):
        model.train()
        sample, record = (torch.stack(t) for t in zip(*(_epoch_order(m, n) for m in members)))
        record = to_device(record, dev)  # (K, n + top-up); its column slices are not dense: sent whole
        shifts, mirrors = _epoch_draws(stack, batches)
        for step, (start, stop) in enumerate(batches):
            idx = train_idx.gather(1, sample[:, start:stop])
            x = _augmented(stack, idx, epoch, (shifts, mirrors), (start * stack.k, stop * stack.k))
            logits, y = stack.logits(x), labels[to_device(idx, dev)]
            positions = record[:, start:stop]  # (K, B)
            sample_loss, fitted = (loss.view_as(y) for loss in
                                   training_losses(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), cfg))
            weight = (positions < n).float()
            optimizer.zero_grad(set_to_none=True)
            ((fitted * weight).sum(1) / weight.sum(1).clamp_min(1)).sum().backward()
            optimizer.step()
            schedule.step()
            batch_margins = margin(logits.detach().reshape(-1, logits.shape[-1]), y.reshape(-1)).view_as(y)
            margins[rows, epoch, positions] = batch_margins
            losses[rows, epoch, positions] = sample_loss.detach()
            if report is not None:
                _report(report, members, stats, epoch, step, start, stop, sample_loss.detach(), batch_margins, weight)
        if epoch in late:
            views.append(_in_sample_views(stack, labels))
    return [_member_records(k, m, margins, losses, views) for k, m in enumerate(members)]


def _epoch_draws(stack: _Stack, batches: list[tuple[int, int]]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Every member's augmentation of one epoch, drawn on the CPU batch by batch, sent to the device at once.

    Returns
    -------
    shifts : torch.Tensor of int64, shape (2, K * n), or None
        :func:`shift_each` offsets; batch ``(start, stop)`` owns columns ``K * start`` to
        ``K * stop``, member-major within it (None without ``crop_padding``).
    mirrors : torch.Tensor of bool, shape (K * n,), or None
        Which images are mirrored, laid out as ``shifts`` (None without ``flip_augment``).

    In each batch every member draws its translations, then its mirrors, from its own
    generator, in the order :func:`~labelaudit.folds.training.run_fold` draws them, and only
    for its own images of the batch (positions ``start`` on): its top-up is neither shifted
    nor mirrored and takes nothing from its stream, so the next epoch's order is run_fold's.
    """
    cfg = stack.cfg
    shifts, mirrors = [], []
    for start, stop in batches:
        b = stop - start
        for member in stack.members:
            real = max(0, min(b, member.n_train - start))
            if cfg.crop_padding:
                shift = translation_draws(real, cfg.crop_padding, member.generator)
                shifts.append(torch.cat([shift, torch.full((2, b - real), cfg.crop_padding, dtype=shift.dtype)], dim=1))
            if cfg.flip_augment:
                mirrors.append(torch.cat([mirror_draws(real, member.generator), torch.zeros(b - real, dtype=torch.bool)]))
    device = stack.data.device
    return (to_device(torch.cat(shifts, dim=1), device) if shifts else None,
            to_device(torch.cat(mirrors), device) if mirrors else None)


def _augmented(stack: _Stack, idx: torch.Tensor, epoch: int, draws, columns: tuple[int, int]) -> torch.Tensor:
    """Training images (K * B, 3, S, S) of each member's ``idx`` (K, B), augmented by ``draws[..., columns]``."""
    shifts, mirrors = draws
    first, last = columns
    x = stack.data.batch(idx.reshape(-1))
    if shifts is not None:
        x = shift_each(x, stack.cfg.crop_padding, shifts[:, first:last])
    x = _early_resize(x, epoch, stack.cfg)
    if mirrors is not None:
        x = mirror_where(x, mirrors[first:last])
    return x


def _report(report, members, stats: Readback, epoch, step, start, stop, sample_loss, batch_margins, weight) -> None:
    """One :data:`ProgressReport` call per member; figures of every 16th step, read back once the device got there."""
    if step % 16 == 0:
        counts = weight.sum(1).clamp_min(1)
        loss = (sample_loss * weight).sum(1) / counts
        acc = ((batch_margins > 0).float() * weight).sum(1) / counts
        stats.push(torch.stack([loss, acc], 1))
    figures = stats.pop() or [(math.nan, math.nan)] * len(members)
    for member, (loss, acc) in zip(members, figures):
        images = max(0, min(stop, member.n_train) - start)
        report(images, member.job.fold, epoch, loss, acc)


def _in_sample_views(stack: _Stack, labels: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each member's eval-mode loss of its training images and their mirrors, and whether they agree."""
    idx = [m.train_idx for m in stack.members]
    logits = stack.eval_logits(idx, flip=False)
    flip_logits = stack.eval_logits(idx, flip=True)
    views = []
    for i, plain, mirrored in zip(idx, logits, flip_logits):
        y = labels[to_device(i, labels.device)]
        views.append((F.cross_entropy(plain, y, reduction="none").cpu().numpy(),
                      F.cross_entropy(mirrored, y, reduction="none").cpu().numpy(),
                      (plain.argmax(1) == mirrored.argmax(1)).cpu().numpy()))
    return views


def _member_records(k: int, member: _Member, margins, losses, views) -> dict[str, np.ndarray]:
    margins_k = margins[k, :, : member.n_train].cpu().numpy()
    records = {"train_margins": margins_k, "train_losses": losses[k, :, : member.n_train].cpu().numpy(),
               "train_correct": margins_k > 0}
    if views:
        records.update(view_losses=np.stack([v[k][0] for v in views]),
                       view_flip_losses=np.stack([v[k][1] for v in views]),
                       view_flip_agree=np.stack([v[k][2] for v in views]))
    return records


def _holdout_records(stack: _Stack) -> list[dict[str, np.ndarray]]:
    """Each member's ``holdout_probs`` (n_holdout, C) and, with flips on, ``holdout_probs_flip``."""
    cfg = stack.cfg
    idx = [m.holdout_idx for m in stack.members]
    shifts = TTA_SHIFTS if cfg.tta else TTA_SHIFTS[:1]
    records: list[dict[str, np.ndarray]] = [{} for _ in stack.members]
    for name, flip in (("holdout_probs", False), ("holdout_probs_flip", True)):
        if flip and not cfg.flip:
            continue
        views = [stack.eval_logits(idx, flip=flip, shift=s) for s in shifts]
        for k, member_records in enumerate(records):
            probs = sum(view[k].softmax(1) for view in views) / len(shifts)
            member_records[name] = probs.cpu().numpy()
    return records
