"""The one block of scan settings: every hyper-parameter of a scan lives here, declared once.

Each :class:`ScanConfig` field carries a :class:`Setting` in its metadata: the allowed
range or choices, the help text, whether it is a command-line option, and whether it
changes what a fold's training produces. From that one declaration come

* the validation in :class:`ScanConfig` (:class:`~labelaudit.errors.SettingsError`),
* the ``labelaudit scan`` / ``demo`` options (types, ranges, help: ``cli._scan_options``)
  and the benchmark's command line,
* the fold fingerprint (:meth:`ScanConfig.training_fingerprint`): *every* field, except
  those explicitly declared with ``training=False`` (and a field at its declared ``neutral``
  value, which trains as before the field existed), so a new hyper-parameter can never be
  left out of it and silently resume stale folds.

This module imports nothing heavy (the CLI's ``--help`` loads it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import numbers
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from labelaudit.errors import SettingsError

__all__ = ["Setting", "ScanConfig", "MIN_IMAGE_SIZE", "TRAINING_FIELDS", "NOT_TRAINING_FIELDS", "BUDGETS", "settings",
           "parse_setting", "default_of", "resolve_budget", "resolve_epochs", "MAX_EPOCH_FACTOR"]


@dataclass(frozen=True)
class Setting:
    """Declaration of one :class:`ScanConfig` field.

    Attributes
    ----------
    kind : {int, float, bool, str}
        Value type (float fields accept ints; ``None`` is allowed only when the default is None).
    help : str
        One line for ``--help`` and the docs.
    min, max : float, optional
        Inclusive bounds, unless ``min_open`` / ``max_open``.
    min_open, max_open : bool
        Exclude the bound itself.
    pattern : str, optional
        Regular expression a string value must match in full.
    training : bool
        The value changes what a fold's training produces, so it is part of the fold
        fingerprint. False only for settings that are handled elsewhere (``device``: the
        scan hashes the device kind) or act after training (flagging, scoring, decoding).
    cli : bool
        Offered as a ``labelaudit scan`` / ``demo`` option (``--name-with-dashes``).
    neutral : optional
        The value that leaves training as it was before the setting existed (None: no such
        value); a field at it is left out of :meth:`ScanConfig.training_fingerprint`.
    """

    kind: type
    help: str
    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False
    pattern: str | None = None
    training: bool = True
    cli: bool = True
    #: The value at which the setting changes nothing (how training ran before it existed): left out of
    #: the fold fingerprint then, so that adding a setting does not make stored folds stale.
    neutral: Any = None

    def check(self, name: str, value: Any, default: Any) -> None:
        """Raise :class:`SettingsError` unless ``value`` is allowed for field ``name``."""
        if value is None and default is None:
            return
        if not (_has_kind(value, self.kind) and self._in_range(value)):
            raise SettingsError(f"invalid scan setting(s): {name}={value!r} ({self.describe()})")

    def _in_range(self, value: Any) -> bool:
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            return False
        low_ok = self.min is None or (value > self.min if self.min_open else value >= self.min)
        high_ok = self.max is None or (value < self.max if self.max_open else value <= self.max)
        return low_ok and high_ok

    def describe(self) -> str:
        """The allowed values in words, e.g. ``"an int in [2, 50]"``."""
        text = f"{'an' if self.kind is int else 'a'} {self.kind.__name__}"
        if self.min is not None or self.max is not None:
            low = "(-inf" if self.min is None else f"{'(' if self.min_open else '['}{self.min:g}"
            high = "inf)" if self.max is None else f"{self.max:g}{')' if self.max_open else ']'}"
            text += f" in {low}, {high}"
        if self.pattern is not None:
            text += f" matching {self.pattern}"
        return text


def _has_kind(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    return isinstance(value, kind)


def _field(default: Any, kind: type, help: str, **spec: Any) -> Any:
    """A dataclass field whose metadata declares it (see :class:`Setting`)."""
    return dataclasses.field(default=default, metadata={"setting": Setting(kind=kind, help=help, **spec)})


#: Smallest image side the fold network takes (three stages, each halving the resolution): the
#: least ``image_size``, and the floor of the progressive-resizing epochs' size.
MIN_IMAGE_SIZE = 8


@dataclass(frozen=True)
class ScanConfig:
    """Settings of one scan.

    The defaults are chosen for speed on a laptop CPU and need no ground truth:
    a width-16 ResNet-style net at 32x32 px reaches ~1,000 training images/s on two
    CPU cores (bfloat16), so 10,000 images x 5 folds x 16 epochs (the first 8 on 24 px
    images, ~1.7x cheaper) take 4.5 to 8.2 minutes (README, "Budget").
    ``budget="large"`` (or ``"auto"`` on a GPU) trades them for a stronger model.
    Allowed values are declared per field (:func:`settings`); an invalid value raises
    :class:`~labelaudit.errors.SettingsError`.

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
    gce_q : float
        Exponent of the generalised cross-entropy ``(1 - p_y ** q) / q`` the gradient is taken
        of (Zhang & Sabuncu, 2018; 0 = the cross-entropy, its limit). Its gradient is the
        cross-entropy's times ``p_y ** q``: samples the model finds unlikely for their label
        (often wrong labels) pull it less. The recorded training losses stay cross-entropies.
        Off by default: on the development slice q = 0.3 fitted the truth better at 40% wrong
        labels (the score level) and cost at 9% (docs/detection-research.md, ninth round).
    width, depth : int
        Model width (stem channels) and residual blocks per stage.
    early_fraction, early_scale : float
        Progressive resizing: the first ``early_fraction`` of the epochs train on images
        downscaled to ``early_scale`` of ``image_size`` (24 px for 32: steps ~1.7x cheaper);
        held-out predictions and mirror views always use the full size. Chosen on the
        development slice (README, "Detection engine"); ``early_fraction=0`` turns it off.
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
    compile : str
        ``"off"`` (default) or a :func:`torch.compile` mode for the fold models
        (:mod:`labelaudit.folds.compiled`); a compiler failure falls back to eager execution
        with a :class:`~labelaudit.folds.compiled.CompileFallback` warning. An execution
        detail like ``device``: not part of the fold fingerprint.
    seed : int
        Seed of the fold split, initialisation and augmentation.
    device : str
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    flag_threshold : float or None
        Flag samples whose ``mislabel_score`` is at least this value. None (default):
        flag as many top-ranked samples as confident learning estimates to be
        mislabeled.
    workers : int
        Image decoding workers (0 = one per CPU core).
    recipe : str
        Signals combined into ``mislabel_score`` (a key of
        :data:`labelaudit.scoring.RECIPES`; ``"default"`` = the benchmarked default;
        checked by the scan). Changing it re-uses finished folds.
    min_fold_images : int
        Small datasets, ``small`` budget: the epochs are raised, up to :data:`MAX_EPOCH_FACTOR`
        times, until each fold trains on at least this many images (epochs x the fold's
        training images; :func:`resolve_epochs`). The default, 64,000, is what the folds of a
        5-fold 5,000-image scan train on at 16 epochs, so larger 5-fold scans are unchanged;
        0 = off. Epochs given by name (``--epochs``, ``scan(epochs=...)``) or set to another
        value than the default in a ``ScanConfig`` are kept (an epoch count left at its
        default in a config is not "given", as for the budget). Not fingerprinted itself: the
        epochs it resolves to are.
    budget : str
        Training budget (:data:`BUDGETS`): ``"small"`` (the defaults above, sized for a CPU),
        ``"large"`` (a wider net trained longer, for a GPU) or ``"auto"`` (large on CUDA,
        small on the CPU). It sets the fields the scan does not set itself
        (:func:`resolve_budget`); the resolved values are what the folds are fingerprinted with.
    """

    image_size: int = _field(32, int, "Images are resized to this square size.", min=MIN_IMAGE_SIZE, max=512)
    folds: int = _field(5, int, "Cross-validation folds.", min=2, max=50)
    epochs: int = _field(16, int, "Training epochs per fold.", min=1, max=1000)
    batch_size: int = _field(128, int, "Training batch size.", min=2, max=65536)
    lr: float = _field(0.1, float, "Peak learning rate.", min=0, min_open=True)
    momentum: float = _field(0.9, float, "SGD (Nesterov) momentum.", min=0, max=1, max_open=True, cli=False)
    weight_decay: float = _field(5e-4, float, "SGD weight decay.", min=0, cli=False)
    warmup: float = _field(0.2, float, "Fraction of training warming the learning rate up.", min=0, max=1,
                           max_open=True, cli=False)
    label_smoothing: float = _field(0.0, float, "Cross-entropy label smoothing.", min=0, max=1, max_open=True,
                                    cli=False)
    gce_q: float = _field(0.0, float, "Generalised cross-entropy (1 - p^q) / q as the training loss (0 = "
                          "cross-entropy): a wrong label pulls the model less; 0.3 for data believed 30-40% wrong.", min=0, max=1,
                          neutral=0.0)
    width: int = _field(16, int, "Model width (stem channels).", min=1, max=512)
    depth: int = _field(1, int, "Residual blocks per stage.", min=0, max=16)
    early_fraction: float = _field(0.5, float, "Progressive resizing: this fraction of the epochs (the first) "
                                   "trains on images downscaled by --early-scale (0 = off).", min=0, max=1, max_open=True)
    early_scale: float = _field(0.75, float, "Downscaling of the early epochs' images.", min=0.25, max=1)
    crop_padding: int = _field(2, int, "Random translation of up to this many pixels.", min=0, cli=False)
    flip: bool = _field(True, bool, "Mirror images as a held-out view (flip signals).", cli=False)
    flip_augment: bool = _field(False, bool, "Mirror half of each training batch (only without flip).", cli=False)
    tta: bool = _field(False, bool, "Held-out predictions averaged over the image and its four one-pixel "
                       "translations (test-time augmentation).")
    precision: str = _field("auto", str, "Arithmetic of the forward passes: auto (bfloat16 on CUDA and on CPUs "
                            "with native bfloat16, else float32), bf16 or fp32.", pattern=r"auto|bf16|fp32")
    compile: str = _field("off", str, "torch.compile the fold models: off, default, reduce-overhead (CUDA graphs) or "
                          "max-autotune; falls back to eager with a warning if compiling fails.",
                          pattern=r"off|default|reduce-overhead|max-autotune", training=False)
    seed: int = _field(0, int, "Seed of the fold split, initialisation and augmentation.")
    device: str = _field("auto", str, "auto (CUDA when present), cpu, cuda or cuda:N.",
                         pattern=r"auto|cpu|cuda(:\d+)?", training=False)
    flag_threshold: float | None = _field(
        None, float, "Flag samples with mislabel_score >= this instead of the confident-learning count.",
        min=0, max=1, training=False)
    workers: int = _field(0, int, "Decoding threads (0 = per core).", min=0, max=256, training=False)
    recipe: str = _field("default", str, "Signals combined into mislabel_score: default = margin+aum+flip "
                         "(margin+aum with --no-flip; cleanlab+aum for --features / --pred-probs), or a name "
                         "of labelaudit.scoring.RECIPES (see README). On an existing scan directory with the "
                         "same training settings it re-scores without training.", training=False)
    min_fold_images: int = _field(64000, int, "Small datasets: more epochs (up to 4x) until each fold trains on "
                                  "this many images (epochs x training images); not with --epochs or --budget "
                                  "large; 0 = off.",
                                  min=0, training=False)
    budget: str = _field("small", str, "Training budget: small (the defaults, CPU-sized), large (wider net, more "
                         "epochs: GPU-sized) or auto (large on CUDA, small on the CPU); options you give win.",
                         pattern=r"auto|small|large", training=False)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            f.metadata["setting"].check(f.name, getattr(self, f.name), f.default)
        if self.gce_q and self.label_smoothing:
            raise SettingsError("invalid scan setting(s): gce_q replaces the cross-entropy, label_smoothing "
                                "smooths it: set one of them")
        if self.flip_augment and self.flip:
            raise SettingsError("invalid scan setting(s): flip_augment=True needs flip=False "
                                "(a mirror the model trains on is no held-out view)")

    @property
    def early_epochs(self) -> int:
        """Number of first epochs trained on downscaled images (progressive resizing)."""
        return int(self.early_fraction * self.epochs)

    @property
    def early_size(self) -> int:
        """Image side of the early epochs, in pixels: never below :data:`MIN_IMAGE_SIZE`, the smallest the network takes."""
        return max(MIN_IMAGE_SIZE, round(self.early_scale * self.image_size))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def training_fingerprint(self) -> str:
        """Hash of every setting that changes what a fold's training produces (all but :data:`NOT_TRAINING_FIELDS`)."""
        fields = settings()
        payload = json.dumps({k: getattr(self, k) for k in TRAINING_FIELDS
                              if fields[k][0].neutral is None or getattr(self, k) != fields[k][0].neutral},
                             sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def settings() -> dict[str, tuple[Setting, Any]]:
    """Every :class:`ScanConfig` field: name -> (its :class:`Setting`, its default), in field order."""
    return {f.name: (f.metadata["setting"], f.default) for f in dataclasses.fields(ScanConfig)}


def default_of(name: str) -> Any:
    """The declared default of :class:`ScanConfig` field ``name``."""
    return ScanConfig.__dataclass_fields__[name].default


def parse_setting(name: str, text: str) -> Any:
    """The value of setting ``name`` written as ``text`` (a command-line word), checked.

    Raises
    ------
    SettingsError
        ``text`` is not a valid value of ``name`` (a ValueError, as argparse expects).
    """
    spec, default = settings()[name]
    try:
        value = _parse_bool(text) if spec.kind is bool else spec.kind(text)
    except ValueError:
        raise SettingsError(f"invalid scan setting(s): {name}={text!r} ({spec.describe()})") from None
    spec.check(name, value, default)
    return value


def _parse_bool(text: str) -> bool:
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    if text.lower() not in words:
        raise ValueError(text)
    return words[text.lower()]


#: Training budgets (``--budget``): the settings each gives the fields a scan leaves unset. ``small``
#: is the field defaults (a 10,000-image scan in 4.5 to 8.2 minutes on two CPU cores); ``large`` is
#: a 4x wider net (about 2M parameters, airbench's size) trained 1.5x as long with 4x larger
#: batches, meant for a GPU and not yet measured on one (README, "GPU").
BUDGETS: dict[str, dict[str, Any]] = {
    "small": {},
    "large": {"width": 32, "epochs": 24, "batch_size": 512, "lr": 0.2},
}


def resolve_budget(cfg: "ScanConfig", device_type: str, explicit: Collection[str] = ()) -> "ScanConfig":
    """``cfg`` with its budget applied for a device of kind ``device_type`` (``"cpu"``, ``"cuda"``).

    ``auto`` becomes ``large`` on CUDA and ``small`` elsewhere. A field takes the budget's
    value unless it is in ``explicit`` (settings the caller gave by name) or differs from its
    declared default (a value set in a :class:`ScanConfig`); so ``--budget large --epochs 12``
    trains 12 epochs of the large net.

    Returns
    -------
    ScanConfig
        With ``budget`` resolved to ``"small"`` or ``"large"``.
    """
    name = cfg.budget if cfg.budget != "auto" else ("large" if device_type == "cuda" else "small")
    preset = {field: value for field, value in BUDGETS[name].items()
              if field not in explicit and getattr(cfg, field) == default_of(field)}
    return dataclasses.replace(cfg, budget=name, **preset)


#: The most :func:`resolve_epochs` multiplies the epochs by.
MAX_EPOCH_FACTOR = 4


def resolve_epochs(cfg: "ScanConfig", n_fold_train: int) -> "ScanConfig":
    """``cfg`` with more epochs for a small dataset, so each fold trains on ``cfg.min_fold_images`` images.

    The epochs become ``ceil(min_fold_images / n_fold_train)``, between ``cfg.epochs`` and
    :data:`MAX_EPOCH_FACTOR` times it. The schedule's parts scale with them: progressive
    resizing and the warm-up are fractions of the epochs, and the loss-dynamics views are
    read over the last third. Call it only when the epochs were not given by name.

    Parameters
    ----------
    cfg : ScanConfig
    n_fold_train : int
        Training images of the smallest fold (the scanned images less the largest held-out fold).

    Returns
    -------
    ScanConfig
        ``cfg`` itself when its folds already train on enough images or ``min_fold_images`` is 0.
    """
    if cfg.min_fold_images <= 0 or n_fold_train <= 0:
        return cfg
    needed = -(-cfg.min_fold_images // n_fold_train)  # ceil
    epochs = min(max(cfg.epochs, needed), MAX_EPOCH_FACTOR * cfg.epochs)
    return cfg if epochs == cfg.epochs else dataclasses.replace(cfg, epochs=epochs)


#: Fields hashed into the fold fingerprint: all fields but :data:`NOT_TRAINING_FIELDS`.
TRAINING_FIELDS: tuple[str, ...] = tuple(name for name, (spec, _) in settings().items() if spec.training)
#: Fields explicitly declared ``training=False`` (not part of the fold fingerprint).
NOT_TRAINING_FIELDS: tuple[str, ...] = tuple(name for name, (spec, _) in settings().items() if not spec.training)
