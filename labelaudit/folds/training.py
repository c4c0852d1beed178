"""Training one cross-validation fold and recording what the signals need.

A fold is an independent job: :class:`FoldJob` in, :class:`FoldResult` out, so an
executor may run it in this process (see :mod:`labelaudit.folds.executor`) or elsewhere.
The result carries named records (declared in :mod:`labelaudit.folds.records`).

The loop follows airbench: the whole uint8 dataset sits on the device, augmentation
(random translation) is done there in batches, the learning rate follows a one-cycle
schedule, mixed precision (bfloat16) and channels-last are used on CUDA, and no step waits
for the device (:mod:`labelaudit.folds.transfer`). Horizontal flips are *not* an
augmentation: the mirrored image is kept as a view the model is never fitted on, so its
loss resists memorisation of a wrong label.

Training leaves the caller's process as it found it: the model is initialised under
:func:`torch.random.fork_rng` (the global RNG state is restored afterwards), augmentation
and batch order draw from a private :class:`torch.Generator`, and the cuDNN flags that
make CUDA runs reproducible are set only for the duration of the fold.

Several folds may train at once in threads of one process
(:class:`labelaudit.folds.executor.ThreadedExecutor`): the seeding of the global generator
is serialised by a lock, and an executor that runs folds concurrently holds
:func:`deterministic_cudnn` around all of them, so that no fold restores the flags while
another one is still training.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from labelaudit.config import ScanConfig
from labelaudit.errors import DeviceUnavailable, TrainingDiverged
from labelaudit.folds.compiled import maybe_compile
from labelaudit.folds.models import build_model
from labelaudit.folds.records import FoldResult
from labelaudit.folds.transfer import Readback, to_device

__all__ = ["FoldJob", "FoldResult", "TrainingDiverged", "TRAINING_VERSION", "ProgressReport", "run_fold",
           "resolve_device", "resolve_precision", "deterministic_cudnn", "cpu_has_native_bf16", "late_epochs",
           "load_images", "autocast", "margin", "fold_result"]

#: Bump when a change to the training code changes what a fold produces; stored folds
#: made by another version are retrained instead of resumed.
TRAINING_VERSION = 2

#: ``report(n_images, fold, epoch, loss, accuracy)``, called after every training batch.
ProgressReport = Callable[[int, int, int, float, float], None]


@dataclass
class FoldJob:
    """Inputs of one fold.

    Attributes
    ----------
    fold : int
        0-based fold number.
    train_idx, holdout_idx : numpy.ndarray of int64, shapes (n_train,) and (n_holdout,)
        Rows of ``images`` to train on and to predict out of sample.
    images_path : str
        ``.npy`` file holding the uint8 images, shape (N, S, S, 3); memory-mapped by
        :func:`load_images` unless ``images`` is given.
    labels : numpy.ndarray of int64, shape (N,)
        Given labels of all N samples.
    n_classes : int
        Number of classes.
    config : dict
        :meth:`ScanConfig.to_dict` of the scan.
    embed_all : bool
        Also return features of all N samples from this fold's model (one shared feature
        space for nearest-neighbour look-ups).
    images : numpy.ndarray of uint8, shape (N, S, S, 3), optional
        The images themselves, already in memory (e.g. a read-only view of Ray's object
        store, see :mod:`labelaudit.folds.ray_executor`); ``images_path`` is then not read.
    """

    fold: int
    train_idx: np.ndarray
    holdout_idx: np.ndarray
    images_path: str
    labels: np.ndarray
    n_classes: int
    config: dict[str, Any]
    embed_all: bool = False
    images: np.ndarray | None = None


def resolve_device(name: str) -> torch.device:
    """The torch device for a ``device`` setting.

    Parameters
    ----------
    name : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Raises
    ------
    DeviceUnavailable
        CUDA was asked for but PyTorch sees no CUDA device.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceUnavailable("--device cuda was asked for but PyTorch sees no CUDA device")
    return torch.device(name)


def load_images(job: FoldJob) -> np.ndarray:
    """The uint8 images (N, S, S, 3) of ``job``: ``job.images`` when given, else ``job.images_path`` memory-mapped."""
    if job.images is not None:
        return job.images
    return np.load(job.images_path, mmap_mode="r")


def late_epochs(epochs: int) -> list[int]:
    """0-based epochs after which the in-sample image/mirror views are evaluated: the last third."""
    n_late = max(1, epochs // 3)
    return list(range(epochs - n_late, epochs))


def run_fold(job: FoldJob, *, report: ProgressReport | None = None) -> FoldResult:
    """Train a fresh model on ``job.train_idx`` and record what the signals need.

    Parameters
    ----------
    job : FoldJob
        The fold's samples, data file, labels and settings.
    report : callable, optional
        :data:`ProgressReport`, called after every training batch.

    Returns
    -------
    FoldResult
        Records ``train_margins``, ``train_losses``, ``train_correct`` and
        ``holdout_probs``; with flips on also ``view_losses``, ``view_flip_losses``,
        ``view_flip_agree`` and ``holdout_probs_flip``; with ``job.embed_all`` also
        ``all_features`` (see :data:`labelaudit.folds.records.RECORDS`).

    Raises
    ------
    TrainingDiverged
        The training loss or the held-out predictions became non-finite.
    DeviceUnavailable
        The config asks for CUDA and there is none.
    """
    cfg = ScanConfig(**job.config)
    device = resolve_device(cfg.device)
    with deterministic_cudnn():
        return _run_fold(job, cfg, device, report)


def _run_fold(job: FoldJob, cfg: ScanConfig, device: torch.device, report: ProgressReport | None) -> FoldResult:
    seed = _fold_seed(cfg, job.fold)
    images = load_images(job)
    data = _DeviceData(images, device, resolve_precision(cfg.precision, device))
    labels = torch.as_tensor(np.asarray(job.labels), dtype=torch.long, device=device)
    train_idx = torch.as_tensor(job.train_idx, dtype=torch.long, device=data.index_device)
    holdout_idx = torch.as_tensor(job.holdout_idx, dtype=torch.long, device=data.index_device)
    data.fit_normalisation(train_idx)

    model = _seeded_model(job.n_classes, cfg, seed).to(device)
    model = model.to(memory_format=torch.channels_last)
    model = maybe_compile(model, cfg.compile)
    started = time.perf_counter()
    records = _train(model, data, labels, train_idx, cfg, seed, job.fold, report)
    trained = time.perf_counter()
    records.update(_predict_probs(model, data, holdout_idx, cfg))
    if job.embed_all:
        records["all_features"] = _features(model, data, torch.arange(len(images), device=data.index_device), cfg)
    return fold_result(job, records, cfg, {"train_s": trained - started, "predict_s": time.perf_counter() - trained})


def fold_result(job: FoldJob, records: dict[str, np.ndarray], cfg: ScanConfig, timings: dict[str, float]) -> FoldResult:
    """The :class:`FoldResult` of ``job`` from its finished records, with its held-out accuracy.

    Raises
    ------
    TrainingDiverged
        The training losses or held-out probabilities hold a non-finite value.
    """
    probs = records["holdout_probs"]
    if not (np.isfinite(records["train_losses"]).all() and np.isfinite(probs).all()):
        raise TrainingDiverged(
            f"training diverged in fold {job.fold + 1} (non-finite loss or predictions); "
            f"lower the learning rate (--lr, now {cfg.lr})")
    holdout_accuracy = float((probs.argmax(1) == job.labels[job.holdout_idx]).mean()) if len(probs) else math.nan
    return FoldResult(fold=job.fold, train_idx=np.asarray(job.train_idx), holdout_idx=np.asarray(job.holdout_idx),
                      holdout_accuracy=holdout_accuracy, records=records, timings=dict(timings))


def _fold_seed(cfg: ScanConfig, fold: int) -> int:
    """Seed of one fold's initialisation and augmentation streams."""
    return cfg.seed * 1009 + fold


#: Serialises the seeding of PyTorch's global CPU generator (module initialisation has no
#: generator argument), so that folds built in concurrent threads each get their own seed's weights.
_GLOBAL_RNG_LOCK = threading.Lock()


def _seeded_model(n_classes: int, cfg: ScanConfig, seed: int) -> torch.nn.Module:
    """A fresh model, initialised on the CPU from ``seed`` without touching the global RNG state.

    ``fork_rng`` saves and restores the CPU generator around the seeding, so the caller's
    stream of random numbers is unchanged; no CUDA generator is seeded or consumed. The
    lock keeps a fold training in another thread from seeding the generator in between.
    """
    with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        return build_model(n_classes, width=cfg.width, depth=cfg.depth)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """PyTorch's intra-op thread count set to ``n`` inside, the caller's restored after.

    The count is the process's (PyTorch has no other): folds trained at once in threads share it.
    """
    saved = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(saved)


@contextlib.contextmanager
def deterministic_cudnn() -> Iterator[None]:
    """cuDNN without autotuning and with deterministic kernels inside, the caller's flags restored after.

    Reproducible CUDA runs with ``--seed`` at some cost in speed; no effect on the CPU. The
    flags are process-wide: code running folds in several threads enters this once around
    all of them (each fold's own entry then saves and restores the same values).
    """
    cudnn = torch.backends.cudnn
    saved = cudnn.benchmark, cudnn.deterministic
    cudnn.benchmark, cudnn.deterministic = False, True
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.deterministic = saved


class _DeviceData:
    """The uint8 images on the device (NCHW), normalised and augmented batch by batch.

    The images stay on the host only when they would take more than half of the free
    CUDA memory; batches are then gathered there and copied over one at a time through
    pinned memory, without waiting for the device. Sample indices then live on the host
    too (:attr:`index_device`), so that gathering a batch never reads them back from the
    GPU. ``precision`` (``"bf16"`` or ``"fp32"``, resolved) is the arithmetic of every
    forward pass on this data.
    """

    def __init__(self, images: np.ndarray, device: torch.device, precision: str = "fp32") -> None:
        host = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2)  # NCHW view of NHWC memory
        self.device = device
        self.precision = precision
        self.on_device = device.type == "cpu" or host.numel() < 0.5 * _free_cuda_bytes(device)
        self.images = host.to(device) if self.on_device else host
        #: Where sample indices for :meth:`batch` live: with the images.
        self.index_device = device if self.on_device else torch.device("cpu")
        self.mean = torch.zeros(1, 3, 1, 1, device=device)
        self.std = torch.ones(1, 3, 1, 1, device=device)

    def fit_normalisation(self, idx: torch.Tensor) -> None:
        """Normalise by the channel mean and standard deviation of the images ``idx`` (a fold's training set)."""
        self.mean, self.std = self.channel_statistics(idx)

    def channel_statistics(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation (1, 3, 1, 1) of the images ``idx`` (every n-th, at most ~5,000)."""
        sample = self.batch(idx[:: max(1, len(idx) // 5000)])
        return sample.mean(dim=(0, 2, 3), keepdim=True), sample.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-3)

    def batch(self, idx: torch.Tensor, *, flip: bool = False) -> torch.Tensor:
        """Float batch of shape (B, 3, S, S), values in [0, 1] before normalisation."""
        if self.on_device:
            x = self.images[to_device(idx, self.device)]
        else:  # only this batch crosses to the device; `idx` is on the host (index_device): no sync
            x = to_device(self.images[idx.cpu()], self.device)
        x = x.float().div_(255)
        return x.flip(3) if flip else x

    def normalised(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)


def _free_cuda_bytes(device: torch.device) -> int:
    """Free CUDA memory, counting what PyTorch caches but does not use (e.g. a previous fold's)."""
    torch.cuda.empty_cache()
    return torch.cuda.mem_get_info(device)[0]


def _random_translate(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image of (B, C, S, S) by up to ``pad`` pixels (reflection padding).

    A batch at a time, for training variants (``benchmarks/dev_screen.py``); the fold loop
    draws a whole epoch at once (:func:`_epoch_draws`).
    """
    if pad == 0:
        return x
    return shift_each(x, pad, to_device(translation_draws(len(x), pad, generator), x.device))


def translation_draws(n: int, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Random offsets (2, n) in ``[0, 2 * pad]`` (rows, columns) of :func:`shift_each`, drawn on the CPU."""
    return torch.randint(0, 2 * pad + 1, (2, n), generator=generator, device="cpu")


def shift_each(x: torch.Tensor, pad: int, shifts: torch.Tensor) -> torch.Tensor:
    """Image ``i`` of (B, C, S, S) moved by ``shifts[:, i] - pad`` pixels (reflection padding)."""
    b, _, s, _ = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    ar = torch.arange(s, device=x.device)
    rows = (shifts[0][:, None] + ar)[:, None, :, None]  # (B, 1, S, 1)
    cols = (shifts[1][:, None] + ar)[:, None, None, :]  # (B, 1, 1, S)
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def _early_resize(x: torch.Tensor, epoch: int, cfg: ScanConfig) -> torch.Tensor:
    """The training batch (B, C, S, S) downscaled to ``cfg.early_size`` during the first ``cfg.early_epochs``."""
    if epoch >= cfg.early_epochs or cfg.early_size >= x.shape[-1]:
        return x
    size = (cfg.early_size, cfg.early_size)
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def _random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the batch (B, C, S, S) (a batch at a time, as :func:`_random_translate`)."""
    return mirror_where(x, to_device(mirror_draws(len(x), generator), x.device))


def mirror_draws(n: int, generator: torch.Generator) -> torch.Tensor:
    """Which of ``n`` images to mirror (bool, (n,)), each with probability 1/2, drawn on the CPU."""
    return torch.rand(n, generator=generator) < 0.5


def mirror_where(x: torch.Tensor, mirror: torch.Tensor) -> torch.Tensor:
    """``x`` (B, C, S, S) with the images where ``mirror`` (B,) is True mirrored left-right."""
    return torch.where(mirror[:, None, None, None], x.flip(3), x)


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (x86 AVX512-BF16 or AMX; read from /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            flags = fh.read()
    except OSError:  # not Linux: stay with float32 on the CPU
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"bf16"`` or ``"fp32"`` for a ``precision`` setting on ``device``.

    ``"auto"`` is bfloat16 on CUDA and on CPUs with native bfloat16 (1.5-1.9x faster
    training there, same detection quality: see the README's benchmarks), else float32.
    """
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" or cpu_has_native_bf16() else "fp32"


def autocast(device: torch.device, precision: str):
    """bfloat16 autocast of the forward pass when ``precision`` (resolved) is ``"bf16"``."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _train(model, data: _DeviceData, labels, train_idx, cfg: ScanConfig, seed: int, fold: int,
           report) -> dict[str, np.ndarray]:
    """Train ``model`` in place; return the training records (see :func:`run_fold`).

    ``train_idx`` lives on ``data.index_device``; ``labels`` and the records on the device.
    Nothing in a step waits for the device (see :mod:`labelaudit.folds.transfer`): the
    epoch's order and augmentation are drawn on the CPU at its start and sent over at once.
    """
    n_train = len(train_idx)
    batches = _batch_bounds(n_train, cfg.batch_size)
    optimizer, schedule = sgd_one_cycle(model.parameters(), cfg, cfg.epochs * len(batches))
    generator = torch.Generator().manual_seed(seed)
    late = late_epochs(cfg.epochs) if cfg.flip else []
    dev = data.device
    margins = torch.zeros((cfg.epochs, n_train), device=dev)
    losses = torch.zeros((cfg.epochs, n_train), device=dev)
    view_losses, view_flip_losses, view_flip_agree = [], [], []
    stats = Readback()
    for epoch in range(cfg.epochs):
        model.train()
        order = to_device(torch.randperm(n_train, generator=generator), train_idx.device)
        shifts, mirrors = _epoch_draws(batches, cfg, generator, dev)
        for step, (start, stop) in enumerate(batches):
            positions = order[start:stop]
            idx = train_idx[positions]
            x = data.batch(idx)
            if shifts is not None:
                x = shift_each(x, cfg.crop_padding, shifts[:, start:stop])
            x = _early_resize(x, epoch, cfg)
            if mirrors is not None:
                x = mirror_where(x, mirrors[start:stop])
            positions, idx = to_device(positions, dev), to_device(idx, dev)
            y = labels[idx]
            with autocast(data.device, data.precision):
                logits = model(data.normalised(x))
            sample_loss, fitted = training_losses(logits, y, cfg)
            optimizer.zero_grad(set_to_none=True)
            fitted.mean().backward()
            optimizer.step()
            schedule.step()
            margins[epoch, positions] = margin(logits.detach().float(), y)
            losses[epoch, positions] = sample_loss.detach()
            if report is not None:  # figures of every 16th step, read back once the device got there
                if step % 16 == 0:
                    stats.push(torch.stack([sample_loss.detach().mean(), (margins[epoch, positions] > 0).float().mean()]))
                loss, accuracy = stats.pop() or (math.nan, math.nan)
                report(len(positions), fold, epoch, loss, accuracy)
        if epoch in late:
            loss, flip_loss, agree = _in_sample_views(model, data, labels, train_idx, cfg)
            view_losses.append(loss)
            view_flip_losses.append(flip_loss)
            view_flip_agree.append(agree)
    margins, losses = margins.cpu().numpy(), losses.cpu().numpy()
    records = {"train_margins": margins, "train_losses": losses, "train_correct": margins > 0}
    if late:  # mirror views only with flips on: absent otherwise, not empty
        records.update(view_losses=np.stack(view_losses), view_flip_losses=np.stack(view_flip_losses),
                       view_flip_agree=np.stack(view_flip_agree))
    return records


def training_losses(logits: torch.Tensor, y: torch.Tensor, cfg: ScanConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample losses of a training step: ``(recorded, fitted)``, each of shape (B,).

    ``recorded`` is the cross-entropy (label-smoothed with ``cfg.label_smoothing``), what the
    training records and the loss signals read; ``fitted`` is what the gradient is taken of:
    the same, or the generalised cross-entropy ``(1 - p_y ** q) / q`` with ``q = cfg.gce_q``.
    ``logits`` (B, C) of any float type; ``y`` (B,) class ids.
    """
    logits = logits.float()
    recorded = F.cross_entropy(logits, y, reduction="none", label_smoothing=cfg.label_smoothing)
    if not cfg.gce_q:
        return recorded, recorded
    log_p = -F.cross_entropy(logits, y, reduction="none")
    return recorded, -torch.expm1(cfg.gce_q * log_p) / cfg.gce_q  # 1 - p^q, exact also for a small q


def _epoch_draws(batches: list[tuple[int, int]], cfg: ScanConfig, generator: torch.Generator,
                 device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """One epoch's augmentation, drawn on the CPU batch by batch and sent to ``device`` at once.

    Returns
    -------
    shifts : torch.Tensor of int64, shape (2, n_train), or None
        Offsets of :func:`shift_each` for the epoch's sample positions (None without ``crop_padding``).
    mirrors : torch.Tensor of bool, shape (n_train,), or None
        Which positions are mirrored (None without ``flip_augment``).

    Each batch draws its translations, then its mirrors, so the stream of ``generator`` is
    the one that drawing them step by step would consume.
    """
    shifts, mirrors = [], []
    for start, stop in batches:
        if cfg.crop_padding:
            shifts.append(translation_draws(stop - start, cfg.crop_padding, generator))
        if cfg.flip_augment:
            mirrors.append(mirror_draws(stop - start, generator))
    return (to_device(torch.cat(shifts, dim=1), device) if shifts else None,
            to_device(torch.cat(mirrors), device) if mirrors else None)


def sgd_one_cycle(parameters, cfg: ScanConfig, total_steps: int):
    """Nesterov SGD and its one-cycle schedule (linear warm-up over ``cfg.warmup``, then linear decay to 0).

    Returns ``(optimizer, scheduler)``; the scheduler is stepped after every optimizer step.
    """
    optimizer = torch.optim.SGD(parameters, lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                                weight_decay=cfg.weight_decay)
    warmup_steps = max(1, int(cfg.warmup * total_steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (step + 1) / warmup_steps if step < warmup_steps
        else max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps)),
    )
    return optimizer, schedule


def _batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each batch; a last batch of one sample joins the previous one (batch norm)."""
    bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """AUM margin ``z_y - max_{j != y} z_j`` of logits (B, C); > 0 exactly when ``argmax == y``."""
    given = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return given - others


@torch.no_grad()
def _eval_logits(model, data: _DeviceData, idx: torch.Tensor, cfg: ScanConfig, *, flip: bool,
                 shift: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Eval-mode logits (n, C) of ``idx``, mirrored and/or translated by ``shift`` = (dy, dx) pixels."""
    model.eval()
    out = []
    for start in range(0, len(idx), 4 * cfg.batch_size):
        x = _translate(data.batch(idx[start : start + 4 * cfg.batch_size], flip=flip), shift)
        with autocast(data.device, data.precision):
            out.append(model(data.normalised(x)).float())
    return torch.cat(out) if out else torch.zeros(0, model.head.out_features, device=data.device)


def _translate(x: torch.Tensor, shift: tuple[int, int]) -> torch.Tensor:
    """``x`` (B, C, S, S) moved by ``shift`` = (dy, dx) pixels, edges reflected."""
    dy, dx = shift
    if dy == 0 and dx == 0:
        return x
    pad = max(abs(dy), abs(dx))
    s = x.shape[-1]
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    return padded[..., pad - dy: pad - dy + s, pad - dx: pad - dx + s]


#: Views averaged by test-time augmentation: the image and its four one-pixel translations.
TTA_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def _holdout_probs(model, data, idx, cfg, *, flip: bool) -> np.ndarray:
    """Held-out softmax (n, C), averaged over :data:`TTA_SHIFTS` when ``cfg.tta``."""
    shifts = TTA_SHIFTS if cfg.tta else TTA_SHIFTS[:1]
    probs = sum(_eval_logits(model, data, idx, cfg, flip=flip, shift=s).softmax(1) for s in shifts)
    return (probs / len(shifts)).cpu().numpy()


def _in_sample_views(model, data, labels, train_idx, cfg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = labels[to_device(train_idx, labels.device)]
    logits = _eval_logits(model, data, train_idx, cfg, flip=False)
    flip_logits = _eval_logits(model, data, train_idx, cfg, flip=True)
    loss = F.cross_entropy(logits, y, reduction="none")
    flip_loss = F.cross_entropy(flip_logits, y, reduction="none")
    agree = logits.argmax(1) == flip_logits.argmax(1)
    return loss.cpu().numpy(), flip_loss.cpu().numpy(), agree.cpu().numpy()


def _predict_probs(model, data, idx, cfg) -> dict[str, np.ndarray]:
    """Held-out records: ``holdout_probs`` (n_holdout, C), and ``holdout_probs_flip`` with flips on."""
    records = {"holdout_probs": _holdout_probs(model, data, idx, cfg, flip=False)}
    if cfg.flip:
        records["holdout_probs_flip"] = _holdout_probs(model, data, idx, cfg, flip=True)
    return records


@torch.no_grad()
def _features(model, data, idx, cfg) -> np.ndarray:
    model.eval()
    out = []
    for start in range(0, len(idx), 4 * cfg.batch_size):
        x = data.normalised(data.batch(idx[start : start + 4 * cfg.batch_size]))
        with autocast(data.device, data.precision):
            out.append(F.normalize(model.features(x).float(), dim=1).cpu())
    return torch.cat(out).numpy().astype(np.float16)
