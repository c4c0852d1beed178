"""``labelaudit demo``: a dataset with known wrong labels built from scikit-learn's digits.

scikit-learn ships the 1,797 8x8 handwritten digits of the UCI set, so the demo needs
no download. They are upscaled to 32x32 PNG files in class folders, a seeded fraction
of them is put into the wrong folder, and the folder is scanned.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from labelaudit.config import ScanConfig
from labelaudit.data.noise import inject_noise
from labelaudit.fsutil import atomic_write
from labelaudit.scandir import ScanDir

__all__ = ["DIGIT_NAMES", "write_digits_dataset", "run_demo"]

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: Confusable digit pairs used for ``--noise asymmetric``.
DIGIT_PAIRS = {"7": "1", "1": "7", "3": "8", "5": "6", "9": "4"}
#: A folder holding this file was written by the demo and may be replaced by it.
MARKER = ".labelaudit-demo"


def write_digits_dataset(root: Path, *, noise: str = "symmetric", rate: float = 0.1, seed: int = 0,
                         size: int = 32) -> pd.DataFrame:
    """Write the digits as ``root/<given class>/digit_NNNN.png`` with injected label noise.

    Raises
    ------
    FileExistsError
        If ``root`` is a non-empty folder the demo did not write.

    Returns
    -------
    pandas.DataFrame, shape (1797, 4)
        ``path`` (relative to ``root``), ``true_label``, ``given_label``, ``is_noisy``.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    gray = (digits.images / 16.0 * 255).round().astype(np.uint8)  # (N, 8, 8), ink = bright
    rgb = np.repeat(255 - gray[..., None], 3, axis=-1)              # dark ink on white paper
    given = inject_noise(digits.target, kind=noise, rate=rate, n_classes=10, seed=seed,
                         class_names=[str(d) for d in range(10)], pairs=DIGIT_PAIRS,
                         images=np.stack([np.asarray(Image.fromarray(im).resize((32, 32))) for im in rgb]))
    root = Path(root)
    if root.exists():
        if not (root / MARKER).exists() and any(root.iterdir()):
            raise FileExistsError(f"{root} exists and was not written by labelaudit demo; "
                                  "choose another --out (the demo replaces its own data folder only)")
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / MARKER).write_text("written by labelaudit demo; replaced on the next run\n")
    rows = []
    for i, (image, true, label) in enumerate(zip(rgb, digits.target, given)):
        rel = f"{DIGIT_NAMES[label]}/digit_{i:04d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC).save(root / rel)
        rows.append((rel, DIGIT_NAMES[true], DIGIT_NAMES[label], true != label))
    return pd.DataFrame(rows, columns=["path", "true_label", "given_label", "is_noisy"])


def run_demo(out: Path, *, noise: str = "symmetric", rate: float = 0.1, noise_seed: int = 0,
             config: ScanConfig | None = None, progress: bool = True) -> dict[str, Any]:
    """Write the digits dataset into ``out/data``, scan it into ``out/scan``, score against the truth."""
    from sklearn.metrics import roc_auc_score

    from labelaudit.scanner import scan

    out = Path(out)
    scan_dir = ScanDir(out / "scan")
    truth = write_digits_dataset(out / "data", noise=noise, rate=rate, seed=noise_seed)
    atomic_write(out / "truth.csv", lambda fh: truth.to_csv(fh, index=False))
    config = config or ScanConfig(flip=False, image_size=16, min_fold_images=0)  # a quick demo: 16 epochs
    scores = scan(out / "data", out=scan_dir.path, config=config, progress=progress)
    merged = scores.merge(truth[["path", "is_noisy"]], on="path", validate="one_to_one")
    caught = int((merged.flagged & merged.is_noisy).sum())
    n_flagged = int(merged.flagged.sum())
    n_injected = int(merged.is_noisy.sum())
    return {
        "summary": scores.attrs["summary"], "scan_dir": scan_dir.path, "truth_csv": out / "truth.csv",
        "n_injected": n_injected, "n_flagged": n_flagged, "n_caught": caught,
        "recall": caught / max(n_injected, 1), "precision": caught / max(n_flagged, 1),
        "auroc": (roc_auc_score(merged.is_noisy, merged.mislabel_score)
                  if 0 < n_injected < len(merged) else float("nan")),
    }
