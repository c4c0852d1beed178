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
