"""Scan with your own model: its out-of-sample probabilities and embeddings instead of labelaudit's CNNs.

    python examples/scan_with_your_model.py IMAGES_DIR     # class folders
    python examples/scan_with_your_model.py                # no arguments: writes a digits example

"Your model" here is a scikit-learn pipeline on the pixels (standardise, PCA to 32
dimensions, logistic regression); swap in CLIP / DINOv2 embeddings or your fine-tuned
network's held-out predictions. What matters is the contract:

* ``pred_probs`` (N, C): out-of-sample probabilities (each row from a model that did not
  train on that image: cross-validation), columns in sorted class-name order;
* ``features`` (N, D): one embedding per image (kNN label agreement, the review app's
  neighbours and map);
* row i belongs to the i-th path of ``index`` (a CSV with a ``path`` column).

Then review and export as after any scan::

    labelaudit review example-byom-scan
    labelaudit export example-byom-scan -o cleaned_labels.csv
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import labelaudit
from labelaudit.data.loading import list_dataset
from labelaudit.scandir import other_scan_reason
from labelaudit.demo import write_digits_dataset

parser = argparse.ArgumentParser()
parser.add_argument("images_dir", nargs="?", type=Path)
parser.add_argument("--out", type=Path, default=Path("example-byom-scan"))
parser.add_argument("--folds", type=int, default=5)
args = parser.parse_args()

truth = None
if args.images_dir is None:  # the digits as class folders, 10% of the labels wrong
    args.images_dir = Path("example-byom-data")
    truth = write_digits_dataset(args.images_dir, rate=0.1, seed=2)

# 1. Your data: the files labelaudit lists (its file order, its rules for hidden files and links),
#    each labelled by its class folder.
listed = list_dataset(args.images_dir, skip_folder=other_scan_reason)  # as the scan lists them
paths, labels = listed.paths, np.array(listed.label_names)
pixels = np.stack([np.asarray(Image.open(args.images_dir / p).convert("L").resize((16, 16)), dtype=np.float32).ravel()
                   for p in paths])

# 2. Your model: embeddings, and out-of-sample probabilities from K-fold cross-validation.
embed = make_pipeline(StandardScaler(), PCA(n_components=32, random_state=0))
features = embed.fit_transform(pixels)
classifier = LogisticRegression(max_iter=2000)
folds = StratifiedKFold(n_splits=args.folds, shuffle=True, random_state=0)
# Its columns follow classifier.classes_, the sorted class names: the column order labelaudit wants.
pred_probs = cross_val_predict(classifier, features, labels, cv=folds, method="predict_proba")

# 3. The scan: nothing is trained; the scoring, scan directory, review app and export are the usual ones.
index_csv = args.out.with_name(args.out.name + "-index.csv")
pd.DataFrame({"path": paths}).to_csv(index_csv, index=False)
scores = labelaudit.scan(args.images_dir, out=args.out, pred_probs=pred_probs, features=features, index=index_csv)

flagged = scores[scores.flagged].sort_values("mislabel_score", ascending=False)
print(f"{len(flagged)} of {len(scores)} labels flagged; the first ten:")
print(flagged[["path", "given_label", "suggested_label", "mislabel_score"]].head(10).to_string(index=False))
if truth is not None:  # the example's own data: how many flags are wrong labels
    wrong = set(truth.path[truth.is_noisy])
    hits = flagged.path.isin(wrong).sum()
    print(f"{hits} of the {len(flagged)} flagged labels are wrong; {hits} of the {len(wrong)} wrong labels flagged")
