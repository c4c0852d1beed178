"""Scan a class-folder dataset from Python and look at the most suspicious labels.

    python examples/scan_folder.py path/to/dataset          # your data: one sub-folder per class
    python examples/scan_folder.py                          # no argument: a digits dataset with 10% wrong labels

The results table has one row per image; ``mislabel_score`` is in [0, 1], higher = more
likely mislabeled, and ``flagged`` marks the images proposed for review.
"""

import argparse
from pathlib import Path

import labelaudit
from labelaudit.demo import write_digits_dataset

parser = argparse.ArgumentParser()
parser.add_argument("data_dir", nargs="?", type=Path)
parser.add_argument("--out", type=Path, default=Path("example-scan"))
parser.add_argument("--epochs", type=int, default=8)
parser.add_argument("--folds", type=int, default=5)
args = parser.parse_args()

if args.data_dir is None:  # build a small dataset with known wrong labels
    args.data_dir = Path("example-digits")
    write_digits_dataset(args.data_dir, noise="symmetric", rate=0.1, seed=0)

scores = labelaudit.scan(args.data_dir, out=args.out, epochs=args.epochs, folds=args.folds, image_size=16,
                         flip=False)  # digits change meaning when mirrored: no flip signals

summary = scores.attrs["summary"]
print(f"{summary['n_samples']} images, estimated noise rate {summary['estimated_noise_rate']:.1%}, "
      f"{summary['n_flagged']} flagged")
top = scores.sort_values("mislabel_score", ascending=False).head(10)
print(top[["path", "given_label", "suggested_label", "mislabel_score"]].to_string(index=False))
print("\nFlagged per given class:")
print(scores.groupby("given_label").flagged.sum().to_string())
print(f"\nReview them with: labelaudit review {args.out}")
