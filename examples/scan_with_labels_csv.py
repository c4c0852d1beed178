"""Scan images whose labels are in a CSV (columns ``path,label``, paths relative to the image folder).

    python examples/scan_with_labels_csv.py IMAGES_DIR LABELS_CSV
    python examples/scan_with_labels_csv.py                    # no arguments: writes a digits example

Then write the cleaned labels once the flagged images are reviewed::

    labelaudit review example-csv-scan
    labelaudit export example-csv-scan -o cleaned_labels.csv
"""

import argparse
import shutil
from pathlib import Path

import pandas as pd

import labelaudit
from labelaudit.demo import write_digits_dataset

parser = argparse.ArgumentParser()
parser.add_argument("images_dir", nargs="?", type=Path)
parser.add_argument("labels_csv", nargs="?", type=Path)
parser.add_argument("--out", type=Path, default=Path("example-csv-scan"))
parser.add_argument("--epochs", type=int, default=8)
parser.add_argument("--folds", type=int, default=5)
args = parser.parse_args()

if args.images_dir is None:  # flat image folder + labels.csv, built from the digits with 10% wrong labels
    args.images_dir = Path("example-csv-data")
    truth = write_digits_dataset(args.images_dir / "by-class", rate=0.1, seed=1)
    flat = args.images_dir / "images"
    flat.mkdir(exist_ok=True)
    for rel in truth.path:
        shutil.move(args.images_dir / "by-class" / rel, flat / Path(rel).name)
    shutil.rmtree(args.images_dir / "by-class")
    args.labels_csv = args.images_dir / "labels.csv"
    pd.DataFrame({"path": "images/" + truth.path.str.split("/").str[-1], "label": truth.given_label}).to_csv(
        args.labels_csv, index=False)

scores = labelaudit.scan(args.images_dir, labels_csv=args.labels_csv, out=args.out, epochs=args.epochs,
                         folds=args.folds, image_size=16, flip=False)
flagged = scores[scores.flagged].sort_values("mislabel_score", ascending=False)
print(f"{len(flagged)} of {len(scores)} labels flagged; the first ten:")
print(flagged[["path", "given_label", "suggested_label", "mislabel_score"]].head(10).to_string(index=False))
