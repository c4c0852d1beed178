"""The scripts in examples/ run as a user would run them."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("script", ["scan_folder.py", "scan_with_labels_csv.py"])
def test_example_runs_without_arguments(script, tmp_path):
    result = subprocess.run([sys.executable, str(EXAMPLES / script), "--epochs", "4", "--folds", "3"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "flagged" in result.stdout
    scan_dir = next(p for p in tmp_path.iterdir() if p.name.endswith("scan"))
    assert len(pd.read_csv(scan_dir / "scores.csv")) == 1797


def test_example_on_a_given_folder(tmp_path):
    from noisy_data import make_noisy_folder

    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    result = subprocess.run([sys.executable, str(EXAMPLES / "scan_folder.py"), str(folder.root), "--out",
                             str(tmp_path / "s"), "--epochs", "4", "--folds", "3"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(pd.read_csv(tmp_path / "s" / "scores.csv")) == 80


def test_your_model_example_scans_from_probabilities_and_embeddings(tmp_path):
    """examples/scan_with_your_model.py: scikit-learn's cross-validated probabilities in, no CNN trained."""
    import json
    import re

    result = subprocess.run([sys.executable, str(EXAMPLES / "scan_with_your_model.py"), "--folds", "3"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    hits, flagged, _, wrong = map(int, re.search(r"(\d+) of the (\d+) flagged labels are wrong; (\d+) of the (\d+)",
                                                 result.stdout).groups())
    assert wrong == 180 and flagged > 100 and hits / flagged > 0.8  # the digits' 10% wrong labels, mostly found
    manifest = json.loads((tmp_path / "example-byom-scan" / "scan.json").read_text())
    assert manifest["summary"]["n_samples"] == 1797 and manifest["inputs"]["pred_probs"]
