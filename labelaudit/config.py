"""The one block of scan settings: every hyper-parameter of a scan lives here."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["ScanConfig", "TRAINING_FIELDS"]


@dataclass(frozen=True)
class ScanConfig:
    """Settings of one scan.

    The defaults are chosen for speed on a laptop CPU and need no ground truth:
    a width-16 ResNet-style net at 32x32 px reaches ~800 training images/s on two
    CPU cores, so 10,000 images x 5 folds x 12 epochs take about a quarter of an hour.

    Attributes
    ----------
    image_size : int
        Images are resized to ``image_size x image_size`` RGB (aspect ratio is not kept,
        so no part of the object is cropped away).
    folds : int
        Number of stratified cross-validation folds (``K``); each sample is held out once.
    epochs : int
        Training epochs per fold.
    batch_size : int
        Training batch size.
    lr, momentum, weight_decay : float
        SGD with Nesterov momentum; the learning rate follows a one-cycle schedule
        (linear warm-up over the first ``warmup`` fraction, then linear decay to 0).
    warmup : float
        Fraction of training spent warming the learning rate up.
    label_smoothing : float
        Cross-entropy label smoothing; off by default because it blurs the margins
        the loss-dynamics signals are computed from.
    width, depth : int
        Model width (stem channels) and residual blocks per stage.
    crop_padding : int
        Random-crop augmentation: images are translated by up to this many pixels
        (reflection padding).
    flip : bool
        Use the horizontal mirror as a held-out view (flip signals). When False the
        flip signals are absent. With flips on, mirroring is never a training
        augmentation, so the mirrored image stays a view the model has not been fitted on.
    flip_augment : bool
        Randomly mirror half of each training batch (standard augmentation). Only
        allowed with ``flip=False``, since a mirror the model trains on is no held-out
        view; used by the benchmark's plain-cleanlab baseline.
    seed : int
        Seed of the fold split, initialisation and augmentation.
    device : str
        ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
    flag_threshold : float or None
        Flag samples whose ``mislabel_score`` is at least this value. None (default):
        flag as many top-ranked samples as confident learning estimates to be
        mislabeled.
    workers : int
        Image decoding workers (0 = one per CPU core).
    recipe : str
        Signals combined into ``mislabel_score`` (a key of
        :data:`labelaudit.scoring.RECIPES`; ``"default"`` = the benchmarked default).
        Changing it re-uses finished folds.
    """

    image_size: int = 32
    folds: int = 5
    epochs: int = 12
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup: float = 0.2
    label_smoothing: float = 0.0
    width: int = 16
    depth: int = 1
    crop_padding: int = 2
    flip: bool = True
    flip_augment: bool = False
    seed: int = 0
    device: str = "auto"
    flag_threshold: float | None = None
    workers: int = 0
    recipe: str = "default"

    def __post_init__(self) -> None:
        checks = {
            "image_size": self.image_size >= 8,
            "folds": self.folds >= 2,
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 2,
            "lr": self.lr > 0,
            "width": self.width >= 1,
            "depth": self.depth >= 0,
            "crop_padding": self.crop_padding >= 0,
            "warmup": 0 <= self.warmup < 1,
            "label_smoothing": 0 <= self.label_smoothing < 1,
            "device": self.device in {"auto", "cpu", "cuda"} or self.device.startswith("cuda:"),
            "flag_threshold": self.flag_threshold is None or 0 <= self.flag_threshold <= 1,
            "workers": self.workers >= 0,
            "flip_augment": not (self.flip_augment and self.flip),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(f"invalid scan setting(s): {values}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def training_fingerprint(self) -> str:
        """Hash of the settings that change what a fold's training produces."""
        payload = json.dumps({k: getattr(self, k) for k in TRAINING_FIELDS}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


TRAINING_FIELDS: tuple[str, ...] = (
    "image_size", "folds", "epochs", "batch_size", "lr", "momentum", "weight_decay",
    "warmup", "label_smoothing", "width", "depth", "crop_padding", "flip", "flip_augment", "seed",
)
