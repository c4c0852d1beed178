"""Generated data for scans from embeddings: class folders of small text files, separable Gaussian
embeddings of the true classes, planted label flips with known truth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass
class ByomData:
    """A dataset root, embeddings (rows in ``index`` order), the index CSV and the planted errors.

    Attributes
    ----------
    root : Path
        ``root/<given class>/<name>.txt``.
    features, features_flip : numpy.ndarray of float32, shape (N, D)
        Rows in the order of ``paths`` (shuffled, not the sorted file order).
    paths : list of str
        Relative path of each row.
    index : Path
        CSV with the ``path`` column (``paths``).
    true_labels, given_labels : numpy.ndarray of int, shape (N,)
        By row.
    flipped : set of str
        Paths whose given label is wrong.
    """

    root: Path
    features: np.ndarray
    features_flip: np.ndarray
    paths: list[str]
    index: Path
    true_labels: np.ndarray
    given_labels: np.ndarray
    flipped: set[str]

    def sorted_rows(self) -> np.ndarray:
        """Row order that lists the rows in the scan's file order (paths sorted)."""
        return np.argsort(np.asarray(self.paths, dtype=object), kind="stable")

    def probabilities(self, sharpness: float = 0.9) -> np.ndarray:
        """Out-of-sample-like probabilities (N, C) that put ``sharpness`` on each row's true class."""
        c = int(self.true_labels.max()) + 1
        probs = np.full((len(self.paths), c), (1 - sharpness) / (c - 1), np.float32)
        probs[np.arange(len(self.paths)), self.true_labels] = sharpness
        return probs


def make_byom_data(root: Path, *, n_per_class: int = 40, n_classes: int = 4, dim: int = 16, flip_rate: float = 0.1,
                   separation: float = 8.0, seed: int = 0) -> ByomData:
    """Write the dataset under ``root`` and return it with its embeddings (see :class:`ByomData`)."""
    rng = np.random.default_rng(seed)
    n = n_per_class * n_classes
    true = np.repeat(np.arange(n_classes), n_per_class)
    centres = np.eye(n_classes, dim) * separation
    features = (centres[true] + rng.normal(size=(n, dim))).astype(np.float32)
    flip = (features + 0.05 * rng.normal(size=features.shape)).astype(np.float32)
    given = true.copy()
    wrong = rng.choice(n, int(round(flip_rate * n)), replace=False)
    given[wrong] = (true[wrong] + rng.integers(1, n_classes, len(wrong))) % n_classes
    paths = []
    for i in range(n):
        rel = f"c{given[i]}/item{i:04d}.txt"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"sample {i}\n")
        paths.append(rel)
    order = rng.permutation(n)  # rows in an order of their own, named by the index
    index = root.parent / f"{root.name}-index.csv"
    pd.DataFrame({"path": [paths[i] for i in order]}).to_csv(index, index=False)
    return ByomData(root=root, features=features[order], features_flip=flip[order], paths=[paths[i] for i in order],
                    index=index, true_labels=true[order], given_labels=given[order],
                    flipped={paths[i] for i in wrong})
