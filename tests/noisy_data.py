"""Small seeded image datasets with injected label noise and known truth, for the tests.

Imported as ``noisy_data`` (a name no other test folder uses), never as ``conftest``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

CLASSES = ("disc", "hstripes", "ring", "vstripes")


def draw(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A (size, size, 3) uint8 image of a left-right symmetric pattern of class ``kind``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    cy, cx = size / 2 + rng.uniform(-1.5, 1.5), size / 2 - 0.5
    r = np.hypot(yy - cy, xx - cx)
    period = rng.uniform(3.5, 5.0)
    shape = {
        "disc": r < size * 0.3,
        "ring": (r > size * 0.22) & (r < size * 0.38),
        "hstripes": np.sin(2 * np.pi * yy / period) > 0,
        "vstripes": np.sin(2 * np.pi * (xx - cx) / period) > 0,
    }[kind]
    fg, bg = rng.uniform(150, 255, 3), rng.uniform(0, 90, 3)
    img = np.where(shape[..., None], fg, bg) + rng.normal(0, 12, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


@dataclass
class NoisyFolder:
    root: Path
    truth: pd.DataFrame  # path, true_label, given_label, is_noisy

    @property
    def noisy_paths(self) -> set[str]:
        return set(self.truth.loc[self.truth.is_noisy, "path"])


def make_noisy_folder(root: Path, *, n_per_class: int = 40, noise_rate: float = 0.15, seed: int = 0,
                      size: int = 16, classes=CLASSES, layout: str = "folders") -> NoisyFolder:
    """Write PNGs of ``classes`` with a ``noise_rate`` fraction of labels moved to another class.

    ``layout="folders"`` puts each image in its given class's folder; ``"csv"`` writes all
    images into ``images/`` and the given labels into ``root/labels.csv``.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for c, kind in enumerate(classes):
        for i in range(n_per_class):
            rows.append((kind, c, draw(kind, size, rng), f"{kind}_{i:03d}.png"))
    n = len(rows)
    noisy = rng.choice(n, size=int(round(noise_rate * n)), replace=False)
    given = [c for _, c, _, _ in rows]
    for i in noisy:
        given[i] = (given[i] + rng.integers(1, len(classes))) % len(classes)
    records = []
    for (kind, c, img, name), g in zip(rows, given):
        rel = f"{classes[g]}/{name}" if layout == "folders" else f"images/{name}"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / rel)
        records.append((rel, kind, classes[g], g != c))
    truth = pd.DataFrame(records, columns=["path", "true_label", "given_label", "is_noisy"])
    if layout == "csv":
        truth.rename(columns={"given_label": "label"})[["path", "label"]].to_csv(root / "labels.csv", index=False)
    return NoisyFolder(root, truth)


#: Settings small enough for a scan of ~160 16-px images to take a few seconds on 2 cores.
FAST = dict(image_size=16, folds=3, epochs=8, width=8, batch_size=16, lr=0.05)


def scan_on_one_thread(root: Path, out: Path, **settings) -> pd.DataFrame:
    """A local scan on one PyTorch thread, to compare with 1-CPU Ray folds (which train on one
    thread: PyTorch's CPU reductions, hence the scores, depend on the thread count)."""
    import torch

    from labelaudit import scan

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return scan(root, out=out, progress=False, **settings)
    finally:
        torch.set_num_threads(threads)


def assert_same_scores(expected: pd.DataFrame, actual: pd.DataFrame) -> None:
    """Two scans' scores frames equal to floating-point tolerance."""
    pd.testing.assert_frame_equal(expected, actual, check_exact=False, rtol=1e-6, atol=1e-6)
