"""Seeded label-noise injection with known truth, for the demo, benchmarks and tests.

Three kinds of noise, each flipping a known set of samples:

- ``symmetric``: a ``rate`` fraction of all samples, each moved to a class drawn
  uniformly from the other classes.
- ``asymmetric``: a ``rate`` fraction of each source class of ``pairs`` moved to its
  paired class (the classic CIFAR-10 pairs by default), so the overall rate is lower.
- ``instance``: instance-dependent noise, as human noise is: a weak model (logistic
  regression on down-sampled pixels, cross-validated) picks for each sample the wrong
  class it finds most likely; the ``rate`` fraction of samples for which that wrong class
  is most plausible are moved to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["NOISE_KINDS", "CIFAR10_PAIRS", "inject_noise"]

NOISE_KINDS = ("symmetric", "asymmetric", "instance")

#: Source -> target pairs of the usual CIFAR-10 asymmetric-noise benchmark.
CIFAR10_PAIRS: Mapping[str, str] = {
    "truck": "automobile", "bird": "airplane", "deer": "horse", "cat": "dog", "dog": "cat",
}


def inject_noise(
    labels: np.ndarray,
    *,
    kind: str,
    rate: float,
    n_classes: int,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    pairs: Mapping[str, str] | None = None,
    images: np.ndarray | None = None,
) -> np.ndarray:
    """Return a noisy copy of ``labels``.

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (N,)
        True class ids in ``[0, n_classes)``.
    kind : {"symmetric", "asymmetric", "instance"}
        Noise model, see the module docstring.
    rate : float
        Fraction in ``[0, 1)`` of samples (of each source class, for ``asymmetric``) to flip.
    n_classes : int
        Number of classes.
    seed : int
        Seed; the same arguments give the same noisy labels.
    class_names : sequence of str, optional
        Names of the class ids; needed for ``asymmetric``.
    pairs : mapping of str to str, optional
        Source -> target class names for ``asymmetric``; default :data:`CIFAR10_PAIRS`
        restricted to the classes present.
    images : numpy.ndarray of uint8, shape (N, H, W, 3), optional
        Needed for ``instance``.

    Returns
    -------
    numpy.ndarray of int64, shape (N,)
        Noisy labels; ``noisy != labels`` marks exactly the flipped samples.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if not 0 <= rate < 1:
        raise ValueError(f"rate must be in [0, 1), got {rate}")
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; expected one of {NOISE_KINDS}")
    rng = np.random.default_rng(seed)
    if kind == "symmetric":
        return _symmetric(labels, rate, n_classes, rng)
    if kind == "asymmetric":
        if class_names is None:
            raise ValueError("asymmetric noise needs class_names")
        return _asymmetric(labels, rate, list(class_names), pairs, rng)
    if images is None:
        raise ValueError("instance-dependent noise needs images")
    return _instance(labels, rate, n_classes, images, seed)


def _symmetric(labels: np.ndarray, rate: float, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    noisy = labels.copy()
    flip = rng.choice(len(labels), size=int(round(rate * len(labels))), replace=False)
    offsets = rng.integers(1, n_classes, size=len(flip))
    noisy[flip] = (labels[flip] + offsets) % n_classes
    return noisy


def _asymmetric(
    labels: np.ndarray,
    rate: float,
    class_names: list[str],
    pairs: Mapping[str, str] | None,
    rng: np.random.Generator,
) -> np.ndarray:
    index = {name: i for i, name in enumerate(class_names)}
    pairs = {s: t for s, t in (pairs or CIFAR10_PAIRS).items() if s in index and t in index}
    if not pairs:
        raise ValueError("no asymmetric pair has both classes in the data")
    noisy = labels.copy()
    for source, target in pairs.items():
        members = np.flatnonzero(labels == index[source])
        flip = rng.choice(members, size=int(round(rate * len(members))), replace=False)
        noisy[flip] = index[target]
    return noisy


def _instance(labels: np.ndarray, rate: float, n_classes: int, images: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = _downsample(images, 8).reshape(len(images), -1).astype(np.float32) / 255.0
    weak = make_pipeline(
        StandardScaler(), PCA(n_components=min(32, features.shape[1]), random_state=seed),
        LogisticRegression(max_iter=300),
    )
    probs = cross_val_predict(weak, features, labels, cv=3, method="predict_proba")
    probs[np.arange(len(labels)), labels] = -1.0  # best *wrong* class
    wrong = probs.argmax(axis=1)
    plausibility = probs.max(axis=1)
    flip = np.argsort(-plausibility, kind="stable")[: int(round(rate * len(labels)))]
    noisy = labels.copy()
    noisy[flip] = wrong[flip]
    return noisy


def _downsample(images: np.ndarray, size: int) -> np.ndarray:
    """Average-pool ``(N, H, W, 3)`` images to ``(N, size, size, 3)`` (H, W multiples of size)."""
    n, h, w, c = images.shape
    fh, fw = max(1, h // size), max(1, w // size)
    cropped = images[:, : fh * size, : fw * size].astype(np.float32)
    return cropped.reshape(n, size, fh, size, fw, c).mean(axis=(2, 4))
