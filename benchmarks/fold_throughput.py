"""Single-fold training throughput: the figure the README's cluster table is derived from.

Trains one fold (:func:`labelaudit.folds.training.run_fold`) of seeded random 32 px images
at the default settings (width 16, depth 1, batch 128) for ``--epochs`` epochs, with
``--threads`` PyTorch threads (a Ray fold task with ``--cpus-per-fold N`` uses N), on
``--device`` (``cpu`` or ``cuda``), and prints one JSON line: training images per second
(``train_s``: the training steps and the in-sample image/mirror evaluations of the last
third of epochs, which run inside the training loop; ``predict_s``: the held-out
predictions) and the host. A warm-up fold (two epochs, one at each image size, of at most 1,024
images) runs first, so that one-time costs (CUDA context, cuDNN/cuBLAS handles, kernel
loading, ``torch.compile``'s compilation; on the CPU, oneDNN primitives) do not count as
training time; its wall time is ``warmup_s``. ``--no-warmup`` times the first fold instead.

Random pixels train at the speed real images do (the same tensor shapes and steps); the
figure says nothing about accuracy. Example::

    python benchmarks/fold_throughput.py --images 2000 --epochs 2 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from labelaudit.config import BUDGETS, ScanConfig  # noqa: E402
from labelaudit.folds import training  # noqa: E402
from labelaudit.folds.training import FoldJob, run_fold  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print (and return) its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="dataset size N (the fold trains on N/2)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--budget", default="small", choices=sorted(BUDGETS),
                        help="the net, batch and learning rate of a training budget (labelaudit.config.BUDGETS)")
    parser.add_argument("--compile", default="off", help="torch.compile mode of the fold model (off = eager); "
                        "train_s then includes the compilation")
    parser.add_argument("--stream", action="store_true", help="keep the images on the host and copy each batch "
                        "over, as for a data set larger than the GPU's memory (CUDA only)")
    parser.add_argument("--no-warmup", action="store_true", help="time the first fold of the process, one-time "
                        "set-up included")
    args = parser.parse_args(argv)
    if args.stream and not args.device.startswith("cuda"):
        parser.error("--stream needs --device cuda (on the CPU the images are always where the model is)")

    torch.set_num_threads(args.threads)
    if args.stream:  # the decision "fits on the device" sees no free memory
        training._free_cuda_bytes = lambda device: 0
    cuda = args.device.startswith("cuda")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, args.image_size, args.image_size, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, args.images).astype(np.int64)
    preset = {k: v for k, v in BUDGETS[args.budget].items() if k != "epochs"}
    cfg = ScanConfig(epochs=args.epochs, device=args.device, image_size=args.image_size, compile=args.compile, **preset)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "images.npy")
        np.save(path, images)
        job = FoldJob(fold=0, train_idx=np.arange(0, args.images, 2), holdout_idx=np.arange(1, args.images, 2),
                      images_path=path, labels=labels, n_classes=10, config=cfg.to_dict())
        warmup_s = None if args.no_warmup else _warm_up(path, labels, cfg, min(args.images, 1024))
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        result = run_fold(job)
    trained = len(job.train_idx) * args.epochs
    line = {"benchmark": "fold_throughput", "images": args.images, "epochs": args.epochs, "threads": args.threads,
            "device": args.device, "image_size": args.image_size,
            "budget": args.budget, "width": cfg.width, "batch_size": cfg.batch_size, "compile": cfg.compile,
            "warmup_s": warmup_s, "train_s": round(result.timings["train_s"], 2),
            "predict_s": round(result.timings["predict_s"], 2),
            "train_images_per_s": round(trained / result.timings["train_s"], 1),
            "stream": args.stream, "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "cuda_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20) if cuda else None,
            "host": f"{platform.machine()}, {os.cpu_count()} cpus", "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name() if cuda else None, "cuda_version": torch.version.cuda}
    print(json.dumps(line))
    return line


def _warm_up(path: str, labels: np.ndarray, cfg: ScanConfig, n: int) -> float:
    """Train an untimed fold of ``n`` images for two epochs (early size, then full size); its wall seconds."""
    started = time.perf_counter()
    run_fold(FoldJob(fold=0, train_idx=np.arange(0, n, 2), holdout_idx=np.arange(1, n, 2), images_path=path,
                     labels=labels, n_classes=10, config=ScanConfig(**{**cfg.to_dict(), "epochs": 2}).to_dict()))
    return round(time.perf_counter() - started, 2)


if __name__ == "__main__":
    main()
