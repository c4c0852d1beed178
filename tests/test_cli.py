"""The command line: CliRunner for the commands, a real process for ``python -m`` and a kill."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
from click.testing import CliRunner
from noisy_data import FAST, make_noisy_folder

from labelaudit.cli import main

FAST_ARGS = [f"--{k.replace('_', '-')}={v}" for k, v in FAST.items()]


def test_scan_command_writes_results_and_prints_summary(tmp_path):
    folder = make_noisy_folder(tmp_path / "my data", n_per_class=20)
    out = tmp_path / "scan out"
    result = CliRunner().invoke(main, ["scan", str(folder.root), "--out", str(out), "-q", *FAST_ARGS])
    assert result.exit_code == 0, result.output
    assert "Scanned 80 images in 4 classes" in result.output
    assert "Estimated noise rate:" in result.output and "Flagged for review:" in result.output
    assert f"labelaudit review {out}" in result.output
    assert len(pd.read_csv(out / "scores.csv")) == 80


def test_budget_options_given_on_the_command_line_win(tmp_path):
    import json

    folder = make_noisy_folder(tmp_path / "data", n_per_class=10)
    out = tmp_path / "scan"
    args = ["scan", str(folder.root), "--out", str(out), "-q", "--budget", "large", "--epochs", "12", "--width", "4",
            "--image-size", "16"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "scan.json").read_text())["config"]
    assert (config["budget"], config["epochs"], config["width"]) == ("large", 12, 4)  # given (12 = default): kept
    assert (config["batch_size"], config["lr"]) == (512, 0.2)  # not given: the large budget's


def test_scan_with_labels_csv_and_no_flip(tmp_path):
    folder = make_noisy_folder(tmp_path / "data", n_per_class=20, layout="csv")
    out = tmp_path / "scan"
    result = CliRunner().invoke(main, ["scan", str(folder.root), "--labels", str(folder.root / "labels.csv"),
                                       "--out", str(out), "--no-flip", "-q", *FAST_ARGS])
    assert result.exit_code == 0, result.output
    assert "flip_loss_in" not in pd.read_csv(out / "scores.csv").columns


def test_scan_errors_are_messages_not_tracebacks(tmp_path):
    folder = make_noisy_folder(tmp_path / "data", n_per_class=10, classes=("disc",), noise_rate=0)
    result = CliRunner().invoke(main, ["scan", str(folder.root), "--out", str(tmp_path / "s"), "-q", *FAST_ARGS])
    assert result.exit_code == 1 and "Error: need at least 2 classes" in result.output
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["scan", str(tmp_path / "empty"), "--out", str(tmp_path / "s2"), "-q"])
    assert result.exit_code == 1 and "Error:" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["scan", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = CliRunner().invoke(main, ["scan", str(folder.root), "--folds", "1"])
    assert result.exit_code == 2


def test_demo_catches_injected_errors(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo"), "-q", "--folds=3", "--epochs=6",
                                       "--width=8", "--batch-size=64"])
    assert result.exit_code == 0, result.output
    line = next(text for text in result.output.splitlines() if text.startswith("Injected"))
    caught, injected = map(int, line.split("caught ")[1].split(" ")[0].split("/"))
    assert injected == 180 and caught >= 0.8 * injected
    truth = pd.read_csv(tmp_path / "demo" / "truth.csv")
    assert truth.is_noisy.sum() == 180
    # run again: the demo writes its dataset anew (new file times, so a new decode cache), but the pixels
    # are the same, so the folds resume; notices are `Warning: ...` lines, not Python's warning dump
    again = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo"), "-q", "--folds=3", "--epochs=6",
                                      "--width=8", "--batch-size=64"])
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "demo" / "scan" / "scan.json").read_text())["summary"]["folds_resumed"] == [0, 1, 2]
    assert "Notice:" not in again.output and "callback(" not in again.output, again.output


def test_demo_never_deletes_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "precious.txt").write_text("keep me")
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path), "-q", "--epochs=1"])
    assert result.exit_code == 1 and "not written by labelaudit demo" in result.output
    assert (tmp_path / "data" / "precious.txt").read_text() == "keep me"


def test_bad_settings_are_messages(tmp_path):
    folder = make_noisy_folder(tmp_path / "data", n_per_class=10)
    result = CliRunner().invoke(main, ["scan", str(folder.root), "--out", str(tmp_path / "s"), "-q",
                                       "--recipe", "nope", *FAST_ARGS])
    assert result.exit_code == 1 and "unknown score recipe 'nope'" in result.output
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "d"), "-q", "--recipe", "nope"])
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_python_dash_m_runs():
    out = subprocess.run([sys.executable, "-m", "labelaudit", "--version"], capture_output=True, text=True, check=True)
    assert "labelaudit" in out.stdout


def test_killed_scan_process_resumes(tmp_path):
    """SIGKILL a real scan after its first fold is saved; the rerun loads that fold from disk."""
    folder = make_noisy_folder(tmp_path / "data", n_per_class=40)
    out = tmp_path / "scan"
    args = [sys.executable, "-m", "labelaudit", "scan", str(folder.root), "--out", str(out), "-q",
            *FAST_ARGS, "--epochs=30"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600  # generous: a loaded CI machine trains slowly
    while not (out / "folds" / "fold-0.npz").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (out / "folds" / "fold-0.npz").exists() and not (out / "scores.csv").exists()
    rerun = subprocess.run(args, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    import json

    assert 0 in json.loads((out / "scan.json").read_text())["summary"]["folds_resumed"]


def test_weak_models_warning_is_printed(tmp_path):
    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    result = CliRunner().invoke(main, ["scan", str(folder.root), "--out", str(tmp_path / "s"), "-q",
                                       *FAST_ARGS, "--lr=1e-7", "--epochs=1"])
    assert result.exit_code == 0 and "Warning: the models are barely better than chance" in result.output


def test_export_refuses_a_busy_folder_before_writing_anything(scanned, tmp_path):
    _, scan_dir, _ = scanned
    busy = tmp_path / "cleaned"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    out = tmp_path / "labels.csv"
    result = CliRunner().invoke(main, ["export", str(scan_dir), "-o", str(out), "--to-folder", str(busy)])
    assert result.exit_code == 1 and "not empty" in result.output and not out.exists()
    old = os.umask(0o022)
    try:
        result = CliRunner().invoke(main, ["export", str(scan_dir), "-o", str(out)])
    finally:
        os.umask(old)
    assert result.exit_code == 0 and (out.stat().st_mode & 0o777) == 0o644


def test_export_keeps_every_readable_image(tmp_path):
    """Images of a class too small for the folds are not scored but exported with their label."""
    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    (folder.root / "rare").mkdir()
    (folder.root / "rare" / "r.png").write_bytes((folder.root / folder.truth.path[0]).read_bytes())
    (folder.root / "disc" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder.root / "empty-class").mkdir()
    out = tmp_path / "scan"
    result = CliRunner().invoke(main, ["scan", str(folder.root), "--out", str(out), "-q", *FAST_ARGS])
    assert result.exit_code == 0, result.output
    assert "Not scored: 2 labelled image(s): 1 in classes too small" in result.output
    assert "1 that could not be decoded" in result.output
    assert "Empty class folder(s), no image: empty-class." in result.output

    result = CliRunner().invoke(main, ["export", str(out), "-o", str(tmp_path / "labels.csv")])
    assert result.exit_code == 0, result.output
    assert "1 image(s) the scan did not score" in result.output
    assert "1 labelled file(s) that could not be decoded are left out" in result.output
    assert str(out / "skipped.csv") in result.output
    labels = pd.read_csv(tmp_path / "labels.csv", keep_default_na=False)
    assert len(labels) == 81 and labels.set_index("path").label["rare/r.png"] == "rare"
    assert "disc/broken.png" not in set(labels.path)

    result = CliRunner().invoke(main, ["export", str(out), "-o", str(tmp_path / "full.csv"), "--full",
                                       "--include-unusable"])
    assert result.exit_code == 0, result.output
    assert "1 labelled file(s) that could not be decoded are listed with an empty label" in result.output
    assert "are left out" not in result.output  # they are in this CSV
    full = pd.read_csv(tmp_path / "full.csv", keep_default_na=False).set_index("path")
    assert len(full) == 82
    assert (full.loc["rare/r.png", "decision"], full.loc["rare/r.png", "label"]) == ("unscored", "rare")
    assert full.loc["rare/r.png", "note"].startswith("class 'rare' has only 1 sample")
    assert (full.loc["disc/broken.png", "decision"], full.loc["disc/broken.png", "label"]) == ("unreadable", "")
    assert full.loc["disc/broken.png", "original_label"] == "disc"


def test_export_report_counts_csv_rows_whose_file_is_missing(tmp_path):
    """Rows of the labels CSV whose file does not exist are left out of the export like undecodable
    files; the report said nothing of them (only skipped.csv and the scan's summary did)."""
    folder = make_noisy_folder(tmp_path / "data", n_per_class=8, layout="csv")
    labels_csv = folder.root / "labels.csv"
    (folder.root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with labels_csv.open("a", encoding="utf-8") as fh:
        fh.write("images/gone_1.png,disc\nimages/gone_2.png,ring\nimages/broken.png,disc\n")
    out = tmp_path / "scan"
    result = CliRunner().invoke(main, ["scan", str(folder.root), "--labels", str(labels_csv), "--out", str(out),
                                       "-q", *FAST_ARGS, "--folds=2", "--epochs=2"])
    assert result.exit_code == 0, result.output
    # the closing summary tells the missing files from the undecodable one (it said "Skipped 3 ...")
    assert f"Skipped 3 file(s) or CSV row(s): 1 unreadable, 2 missing file(s); see {out / 'skipped.csv'}." in (
        result.output), result.output
    result = CliRunner().invoke(main, ["export", str(out), "-o", str(tmp_path / "labels.csv")])
    assert result.exit_code == 0, result.output
    assert f"2 labels-CSV row(s) whose file is missing are left out; see {out / 'skipped.csv'}" in result.output
    assert len(pd.read_csv(tmp_path / "labels.csv")) == 32


def test_user_errors_are_matched_by_type_not_text():
    import click
    import pytest

    from labelaudit.cli import _user_errors
    from labelaudit.errors import DeviceUnavailable

    with pytest.raises(click.ClickException, match="no GPU here"):
        with _user_errors():
            raise DeviceUnavailable("no GPU here")
    with pytest.raises(RuntimeError, match="CUDA kernel crashed"):  # a bug, not a user error: not hidden
        with _user_errors():
            raise RuntimeError("CUDA kernel crashed")


def test_scan_says_when_it_retrains_stored_folds_and_when_a_recipe_lacks_a_signal(tmp_path):
    """A user re-scoring with --recipe but other settings used to retrain silently (replacing the
    stored folds), and a recipe naming a mirror signal on a --no-flip scan silently lost it."""
    import json

    folder = make_noisy_folder(tmp_path / "data", n_per_class=12)
    out = tmp_path / "scan"
    base = ["scan", str(folder.root), "--out", str(out), "-q", *FAST_ARGS]

    first = CliRunner().invoke(main, [*base, "--no-flip", "--recipe", "margin+aum+flip"])
    assert first.exit_code == 0, first.output
    assert "Warning: recipe 'margin+aum+flip' uses flip_loss_in, which this scan does not have" in first.stderr
    assert json.loads((out / "scan.json").read_text())["score_components"] == ["oos_margin", "aum"]

    second = CliRunner().invoke(main, base)  # flips on now: the stored folds cannot be reused
    assert second.exit_code == 0, second.output
    assert "stored fold(s)" in second.stderr and "flip False -> True" in second.stderr
    assert "training again" in second.stderr

    third = CliRunner().invoke(main, [*base, "--recipe", "cleanlab"])  # same training: re-scored quietly
    assert third.exit_code == 0, third.output
    assert "Warning" not in third.stderr
    assert json.loads((out / "scan.json").read_text())["summary"]["folds_resumed"] == [0, 1, 2]
    assert json.loads((out / "scan.json").read_text())["score_components"] == ["label_quality"]


def test_recipe_help_names_the_current_defaults():
    """The --recipe help spells the default recipes out; it must follow labelaudit.scoring."""
    from labelaudit.config import settings
    from labelaudit.scoring import DEFAULT_RECIPE, DEFAULT_RECIPE_ARRAYS, DEFAULT_RECIPE_NO_FLIP

    text = settings()["recipe"][0].help
    assert f"default = {DEFAULT_RECIPE} ({DEFAULT_RECIPE_NO_FLIP} with --no-flip; {DEFAULT_RECIPE_ARRAYS} for" in text


def test_the_scan_report_writes_control_characters_in_class_names_escaped():
    """A label with a newline broke the summary's one-line report of small and empty classes."""
    from labelaudit.cli import _not_scored_lines
    from labelaudit.scandir import ScanDir, ScanSummary

    summary = ScanSummary.from_dict({"n_samples": 10, "n_classes": 2, "n_skipped": 1, "n_unscored": 1,
                                     "n_dropped_small_classes": 1, "small_classes": ["two\nlines"],
                                     "empty_classes": ["tab\there"]})
    lines = _not_scored_lines(summary, ScanDir("scan"))
    assert all("\n" not in line and "\t" not in line for line in lines)
    assert "two\\x0alines" in lines[0] and "tab\\x09here" in lines[-1]


def test_ctrl_c_is_one_line_and_the_shell_status_of_an_interrupt(tmp_path, monkeypatch):
    """Ctrl+C during a scan: one line that says how to resume, and exit status 130 (128 + SIGINT), as
    shells and job runners expect of an interrupted command (it was 1, as for any error)."""
    from labelaudit import scanner

    folder = make_noisy_folder(tmp_path / "data", n_per_class=6)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(scanner, "scan", interrupted)
    result = CliRunner().invoke(main, ["scan", str(folder.root), "--out", str(tmp_path / "scan"), "-q"])
    assert result.exit_code == 130 and "Traceback" not in result.output, result.output
    assert result.output == "Error: interrupted; run the same command again to resume from the finished folds\n"
