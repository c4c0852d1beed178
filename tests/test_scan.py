"""The scan pipeline end to end on small generated datasets."""

import json
import warnings
import sqlite3

import numpy as np
import pandas as pd
import pytest
import torch
from noisy_data import FAST, make_noisy_folder

from labelaudit import scan
from labelaudit.errors import ScanError as TypedScanError
from labelaudit.errors import DatasetError, SettingsError, WeakModelsWarning
from labelaudit.review import record_decision
from labelaudit.scandir import ScanDir
from labelaudit.scandir import database as storage
from labelaudit.folds.executor import InProcessExecutor
from labelaudit.scanner import ScanError
from labelaudit.folds.training import run_fold


def test_outputs_are_complete_and_consistent(scanned):
    folder, out, scores = scanned
    for name in ["scores.csv", "skipped.csv", "noise_matrix.csv", "labelaudit.db", "scan.json",
                 "pred_probs.npy", "embeddings.npy"]:
        assert (out / name).exists(), name
    csv = pd.read_csv(out / "scores.csv")
    assert list(csv.columns[:5]) == ["path", "given_label", "suggested_label", "mislabel_score", "flagged"]
    assert len(csv) == len(folder.truth) and set(csv.path) == set(folder.truth.path)
    assert csv.mislabel_score.between(0, 1).all()
    assert {"aum", "label_quality", "flip_loss_in", "forgetting_events", "learned_epoch",
            "flip_agree_oos", "flip_loss_gap_in", "oos_flip_self_confidence"} <= set(csv.columns)
    given = csv.merge(folder.truth, on="path")
    assert (given.given_label_x == given.given_label_y).all()

    info = json.loads((out / "scan.json").read_text())
    assert info["summary"]["n_samples"] == len(csv)
    assert info["summary"]["n_flagged"] == csv.flagged.sum() > 0
    from cleanlab.count import num_label_issues

    from labelaudit.signals.confident import temper

    labels = csv.given_label.map({c: i for i, c in enumerate(sorted(csv.given_label.unique()))}).to_numpy()
    tempered, temperature = temper(labels, np.load(out / "pred_probs.npy"))
    assert info["summary"]["count_temperature"] == pytest.approx(temperature)
    assert info["summary"]["n_estimated_label_issues"] == info["summary"]["n_flagged"] == num_label_issues(
        labels, tempered, estimation_method="off_diagonal")  # the flag count is made on tempered probabilities
    assert {"torch", "cleanlab", "labelaudit"} <= set(info["versions"])
    assert ("cuda" in info["versions"]) == bool(torch.version.cuda)  # a CUDA build names its CUDA and cuDNN
    assert info["config"]["folds"] == FAST["folds"] and info["timings"]["total_s"] > 0

    nm = pd.read_csv(out / "noise_matrix.csv", index_col=0)
    assert nm.shape == (4, 4)
    np.testing.assert_allclose(nm.sum(axis=0), 1.0, atol=1e-6)
    assert np.load(out / "pred_probs.npy").shape == (len(csv), 4)
    emb = np.load(out / "embeddings.npy")
    assert emb.shape[0] == len(csv) and emb.dtype == np.float16


def test_database_holds_the_same_samples(scanned):
    _, out, scores = scanned
    conn = storage.connect(out / storage.DB_NAME, read_only=True)
    rows = pd.read_sql("SELECT * FROM samples ORDER BY sample_id", conn)
    assert rows.path.tolist() == scores.path.tolist()
    np.testing.assert_allclose(rows.mislabel_score, scores.mislabel_score)
    assert rows.score_rank.min() == 1 and rows.loc[rows.score_rank.idxmin(), "mislabel_score"] == scores.mislabel_score.max()
    top = json.loads(rows.top_classes[0])
    assert len(top) == 4 and abs(sum(p for _, p in top) - 1) < 1e-3
    assert storage.read_classes(conn) == sorted(scores.given_label.unique())
    # the summary, settings and noise matrix live in the manifest only, not again in the database; the
    # dataset folder is in both (the database's record, for when a killed re-scan removed scan.json)
    assert not {"summary", "config", "noise_matrix"} & set(storage.read_meta(conn))
    assert storage.read_meta(conn)["dataset_root"] == ScanDir(out).read_manifest().dataset_root
    # created_at identifies the scan (stale pages, the stats cache): to the microsecond, so that two scans
    # within one second (a --recipe re-score takes about one) differ
    from datetime import datetime

    created = storage.read_meta(conn)["created_at"]
    assert created == ScanDir(out).read_manifest().created_at and datetime.fromisoformat(created).microsecond >= 0
    assert len(created.split("T")[1].split("+")[0]) == len("12:34:56.123456")
    manifest = ScanDir(out).read_manifest()
    assert manifest.summary.n_samples == len(scores) and manifest.summary.to_dict() == scores.attrs["summary"]
    assert len(manifest.noise_matrix) == 4 and manifest.classes == storage.read_classes(conn)
    assert manifest.dataset_root == str(scanned[0].root.resolve())
    assert storage.read_unscored(conn).empty


def test_injected_errors_rank_high(scanned):
    folder, _, scores = scanned
    from sklearn.metrics import roc_auc_score

    merged = scores.merge(folder.truth[["path", "is_noisy"]], on="path")
    assert roc_auc_score(merged.is_noisy, merged.mislabel_score) > 0.85
    assert merged[merged.flagged].is_noisy.mean() > 0.5  # most flagged samples are real errors


def test_same_seed_same_scores(tmp_path):
    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    a = scan(folder.root, out=tmp_path / "a", progress=False, **FAST)
    b = scan(folder.root, out=tmp_path / "b", progress=False, **FAST)
    pd.testing.assert_frame_equal(a, b)


def test_labels_csv_layout(tmp_path):
    folder = make_noisy_folder(tmp_path / "data", n_per_class=20, layout="csv")
    scores = scan(folder.root, labels_csv=folder.root / "labels.csv", out=tmp_path / "scan", progress=False, **FAST)
    assert set(scores.path) == set(folder.truth.path)
    assert all(p.startswith("images/") for p in scores.path)


def test_bad_files_and_tiny_classes_are_reported_not_fatal(tmp_path):
    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    (folder.root / "disc" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder.root / "disc" / "empty.jpg").write_bytes(b"")
    (folder.root / "rare").mkdir()
    for i in range(2):  # 2 samples < 3 folds
        (folder.root / "rare" / f"r{i}.png").write_bytes((folder.root / folder.truth.path[i]).read_bytes())
    scores = scan(folder.root, out=tmp_path / "scan", progress=False, **FAST)
    skipped = pd.read_csv(tmp_path / "scan" / "skipped.csv")
    assert {"disc/broken.png", "disc/empty.jpg", "rare/r0.png", "rare/r1.png"} <= set(skipped.path)
    assert skipped.set_index("path").loc["rare/r0.png", "reason"].startswith("class 'rare' has only 2")
    assert "rare" not in set(scores.given_label)
    summary = scores.attrs["summary"]
    assert summary["small_classes"] == ["rare"] and summary["n_skipped"] == 4


def test_one_usable_class_is_a_clear_error(tmp_path):
    folder = make_noisy_folder(tmp_path / "data", n_per_class=10, classes=("disc",), noise_rate=0)
    with pytest.raises(ScanError, match="at least 2 classes"):
        scan(folder.root, out=tmp_path / "scan", progress=False, **FAST)


def test_no_flip_leaves_flip_signals_out(tmp_path):
    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    scores = scan(folder.root, out=tmp_path / "scan", progress=False, flip=False, **FAST)
    assert not [c for c in scores.columns if "flip" in c]
    info = json.loads((tmp_path / "scan" / "scan.json").read_text())
    assert "flip_loss_in" not in info["signals"] and info["config"]["flip"] is False


class _Killed(Exception):
    pass


def test_interrupted_scan_resumes_from_finished_folds(tmp_path):
    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    calls = []

    def counting(job, report=None):
        calls.append(job.fold)
        return run_fold(job, report=report)

    def dies_in_second_fold(job, report=None):
        if job.fold == 1:
            raise _Killed
        return counting(job, report)

    with pytest.raises(_Killed):
        scan(folder.root, out=tmp_path / "scan", progress=False,
             executor=InProcessExecutor(dies_in_second_fold), **FAST)
    assert (tmp_path / "scan" / "folds" / "fold-0.npz").exists()
    assert not (tmp_path / "scan" / "scores.csv").exists()
    (tmp_path / "scan" / "folds" / "fold-1.tmp.npz").write_bytes(b"half-written")  # killed during a save

    calls.clear()
    resumed = scan(folder.root, out=tmp_path / "scan", progress=False, executor=InProcessExecutor(counting), **FAST)
    assert calls == [1, 2]  # fold 0 came from disk
    assert resumed.attrs["summary"]["folds_resumed"] == [0]
    fresh = scan(folder.root, out=tmp_path / "fresh", progress=False, **FAST)
    pd.testing.assert_frame_equal(resumed, fresh)  # resuming changes nothing


def test_corrupt_fold_file_is_retrained(tmp_path):
    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    scan(folder.root, out=tmp_path / "scan", progress=False, **FAST)
    (tmp_path / "scan" / "folds" / "fold-2.npz").write_bytes(b"garbage")
    again = scan(folder.root, out=tmp_path / "scan", progress=False, **FAST)
    assert again.attrs["summary"]["folds_resumed"] == [0, 1]


def test_changed_settings_retrain_instead_of_mixing(tmp_path):
    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    scan(folder.root, out=tmp_path / "scan", progress=False, **FAST)
    again = scan(folder.root, out=tmp_path / "scan", progress=False, **{**FAST, "epochs": 3})
    assert again.attrs["summary"]["folds_resumed"] == []
    same = scan(folder.root, out=tmp_path / "scan", progress=False, **{**FAST, "epochs": 3})
    assert same.attrs["summary"]["folds_resumed"] == [0, 1, 2]


def test_rescan_keeps_review_decisions(tmp_path):
    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    scores = scan(folder.root, out=tmp_path / "scan", progress=False, **FAST)
    conn = storage.connect(tmp_path / "scan" / storage.DB_NAME)
    record_decision(conn, scores.path[0], "relabel", label="ring", reviewer="ann")
    conn.close()
    scan(folder.root, out=tmp_path / "scan", progress=False, **{**FAST, "epochs": 2})
    with sqlite3.connect(tmp_path / "scan" / storage.DB_NAME) as raw:
        assert raw.execute("SELECT path, label, reviewer FROM decisions").fetchall() == [(scores.path[0], "ring", "ann")]


def test_decisions_of_one_dataset_never_pass_silently_to_another(tmp_path):
    """A scan of other data into a scan directory with decisions is refused before anything is read;
    the same data (moved or copied) keeps them with keep_decisions; without decisions nothing is refused."""
    import shutil

    from labelaudit.errors import OtherDataset

    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    other = make_noisy_folder(tmp_path / "other", n_per_class=20, seed=5)  # same file names, other images
    undecided = scan(folder.root, out=tmp_path / "fresh", progress=False, **FAST)
    scan(other.root, out=tmp_path / "fresh", progress=False, **FAST)  # no decision there: nothing to protect

    out = tmp_path / "scan"
    scan(folder.root, out=out, progress=False, **FAST)
    conn = storage.connect(out / storage.DB_NAME)
    record_decision(conn, undecided.path[0], "unusable", reviewer="ann")
    conn.close()
    before = (out / "scores.csv").read_bytes()
    with pytest.raises(OtherDataset, match=r"holds 1 review decision\(s\) made on the images of .*--keep-decisions"):
        scan(other.root, out=out, progress=False, **FAST)
    assert (out / "scores.csv").read_bytes() == before  # refused before anything was written
    assert not (out / "labelaudit.db-wal").exists() and not (out / "labelaudit.db-shm").exists()  # and closed

    moved = tmp_path / "moved"
    shutil.copytree(folder.root, moved)
    with pytest.raises(OtherDataset):
        scan(moved, out=out, progress=False, **FAST)
    scan(moved, out=out, progress=False, keep_decisions=True, **FAST)
    with sqlite3.connect(out / storage.DB_NAME) as raw:
        assert raw.execute("SELECT path, action FROM decisions").fetchall() == [(undecided.path[0], "unusable")]
    scan(moved, out=out, progress=False, **FAST)  # now the scan of record: its own re-scan needs nothing


def test_a_killed_rescan_does_not_let_other_data_take_the_decisions(tmp_path):
    """A re-scan killed while writing its outputs has removed scan.json (the record of the folder the
    decisions were made on): the database's own record keeps the refusal; with neither record the scan
    cannot tell, so it refuses too (``keep_decisions`` goes on)."""
    from labelaudit.errors import OtherDataset

    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    other = make_noisy_folder(tmp_path / "other", n_per_class=20, seed=5)  # same file names, other images
    out = tmp_path / "scan"
    scores = scan(folder.root, out=out, progress=False, **FAST)
    conn = storage.connect(out / storage.DB_NAME)
    record_decision(conn, scores.path[0], "relabel", label="ring", reviewer="ann")
    conn.close()
    (out / "scan.json").unlink()  # where write_outputs stands until its last step
    with pytest.raises(OtherDataset, match=r"made on the images of .*data"):
        scan(other.root, out=out, progress=False, **FAST)
    scan(folder.root, out=out, progress=False, **FAST)  # the same folder finishes its scan

    with sqlite3.connect(out / storage.DB_NAME) as raw:  # a database written before it kept the record
        raw.execute("DELETE FROM meta WHERE key = 'dataset_root'")
    (out / "scan.json").unlink()
    with pytest.raises(OtherDataset, match="no record of the folder"):
        scan(other.root, out=out, progress=False, **FAST)
    scan(folder.root, out=out, progress=False, keep_decisions=True, **FAST)
    with sqlite3.connect(out / storage.DB_NAME) as raw:
        assert raw.execute("SELECT path, label FROM decisions").fetchall() == [(scores.path[0], "ring")]


def test_scan_dir_inside_the_dataset_is_not_scanned(tmp_path):
    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    out = folder.root / "my-scan"
    scan(folder.root, out=out, progress=False, **FAST)
    again = scan(folder.root, out=out, progress=False, **FAST)
    assert len(again) == 80 and "my-scan" not in set(again.given_label)
    assert pd.read_csv(out / "skipped.csv").empty
    assert again.attrs["summary"]["folds_resumed"] == [0, 1, 2]  # same files, same cache key
    assert len(list((out / "cache").glob("decoded-*.npy"))) == 1


def test_files_rewritten_with_the_same_pixels_resume_their_folds(tmp_path):
    """New file times (a copy without them, a dataset written again) make a new decode cache, but the
    folds are fingerprinted by the decoded pixels, so they resume; other pixels train again."""
    import os

    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    out = tmp_path / "scan"
    scan(folder.root, out=out, progress=False, **FAST)
    images = sorted(p for p in folder.root.rglob("*.png"))
    for path in images:
        os.utime(path, ns=(10**18, 10**18))
    again = scan(folder.root, out=out, progress=False, **FAST)
    assert again.attrs["summary"]["folds_resumed"] == [0, 1, 2]
    assert len(list((out / "cache").glob("decoded-*.npy"))) == 2
    # the digest is kept beside each images file (a re-scan does not read the pixels again); a stale
    # one (the file rewritten since) is not taken
    sidecars = sorted((out / "cache").glob("decoded-*.npy.sha256"))
    assert len(sidecars) == 2
    from labelaudit.scanner import _content_digest

    newest = max((out / "cache").glob("decoded-*.npy"), key=lambda p: p.stat().st_mtime_ns)
    right = _content_digest(newest)
    side = newest.with_name(newest.name + ".sha256")
    side.write_text(side.read_text().rsplit(" ", 1)[0] + " " + "0" * 64)
    assert _content_digest(newest) == "0" * 64  # taken while the stamp matches ...
    os.utime(newest, ns=(1, 1))
    assert _content_digest(newest) == right  # ... not once the file changed
    images[0].write_bytes(images[1].read_bytes())  # one image's pixels change
    with pytest.warns(UserWarning, match="stored fold"):
        changed = scan(folder.root, out=out, progress=False, **FAST)
    assert changed.attrs["summary"]["folds_resumed"] == []


@pytest.mark.filterwarnings("ignore::labelaudit.errors.WeakModelsWarning")  # 2 epochs: only the files matter
def test_scan_dir_in_a_class_folder_or_the_dataset_folder_loses_no_image(tmp_path):
    """--out DATA/<class> used to leave that whole class out silently, and --out DATA made the second
    scan read its own folds/ as a class: only the scan's own files are left out of the dataset."""
    for in_class in (True, False):
        folder = make_noisy_folder(tmp_path / f"data-{in_class}", n_per_class=20)
        out = folder.root / folder.truth.path[0].split("/")[0] if in_class else folder.root
        for _ in range(2):  # the second scan meets the first one's files
            scores = scan(folder.root, out=out, progress=False, **{**FAST, "epochs": 2})
            assert len(scores) == 80 and set(scores.path) == set(folder.truth.path)
            assert pd.read_csv(out / "skipped.csv").empty
            assert scores.attrs["summary"]["empty_classes"] == [] and scores.attrs["summary"]["n_unscored"] == 0


def test_class_names_with_quotes_are_reported(tmp_path):
    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    (folder.root / "don't").mkdir()
    (folder.root / "don't" / "a.png").write_bytes((folder.root / folder.truth.path[0]).read_bytes())
    scores = scan(folder.root, out=tmp_path / "scan", progress=False, **FAST)
    assert scores.attrs["summary"]["small_classes"] == ["don't"]


def test_unknown_setting_names_the_valid_ones(tmp_path):
    with pytest.raises(TypeError, match="unknown setting.*labels.*labels_csv="):
        scan(tmp_path, out=tmp_path / "s", labels="x.csv")


def test_one_class_error_says_what_to_do(tmp_path):
    folder = make_noisy_folder(tmp_path / "data", n_per_class=10, classes=("disc",), noise_rate=0)
    with pytest.raises(ScanError, match="at least two classes"):
        scan(folder.root, out=tmp_path / "scan", progress=False, **FAST)


def test_models_that_learned_nothing_are_reported_as_weak(tmp_path, scanned):
    assert scanned[2].attrs["summary"]["weak_models"] is False
    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    with pytest.warns(WeakModelsWarning, match="barely better than chance"):  # the Python API says it too
        scores = scan(folder.root, out=tmp_path / "scan", progress=False, **{**FAST, "lr": 1e-7, "epochs": 1})
    assert scores.attrs["summary"]["weak_models"] is True


def test_images_without_class_folders_are_named_and_leave_no_folder(tmp_path):
    folder = make_noisy_folder(tmp_path / "data", n_per_class=4)
    loose = tmp_path / "loose"
    loose.mkdir()
    for i, path in enumerate(folder.truth.path[:5]):
        (loose / f"img_{i}.png").write_bytes((folder.root / path).read_bytes())
    with pytest.raises(DatasetError, match="5 image files in .* but no class folders"):
        scan(loose, out=tmp_path / "out" / "scan", progress=False, **FAST)
    assert not (tmp_path / "out" / "scan").exists()  # the failed scan removed the folder it made


def test_a_scan_failing_after_decoding_removes_the_folder_it_made(tmp_path):
    """"need at least 2 classes" comes after the images are decoded: the new scan folder kept cache/ (and
    the folders made for it); a folder that was there before keeps everything it held."""
    folder = make_noisy_folder(tmp_path / "data", n_per_class=10, classes=("disc",), noise_rate=0)
    with pytest.raises(ScanError, match="at least 2 classes"):
        scan(folder.root, out=tmp_path / "new" / "scan", progress=False, **FAST)
    assert not (tmp_path / "new").exists()
    old = tmp_path / "old"
    (old / "folds").mkdir(parents=True)
    (old / "notes.txt").write_text("mine")
    with pytest.raises(ScanError, match="at least 2 classes"):
        scan(folder.root, out=old, progress=False, **FAST)
    assert (old / "notes.txt").read_text() == "mine" and (old / "folds").is_dir()


def test_a_failing_scan_removes_no_folder_another_process_made(tmp_path, monkeypatch):
    """The scan folder was taken as this run's when it was missing at the start; made meanwhile by
    another process (a second scan into the same new folder), it was removed with that scan's files
    when this run failed. Only a folder this run's own mkdir made is removed."""
    import os

    folder = make_noisy_folder(tmp_path / "data", n_per_class=10, classes=("disc",), noise_rate=0)
    out = tmp_path / "new" / "scan"
    real_mkdir = os.mkdir

    def raced_mkdir(path, *args, **kwargs):
        if os.path.abspath(path) == str(out):  # the other process is first
            real_mkdir(path, *args, **kwargs)
            (out / "other.txt").write_text("the other scan's")
            raise FileExistsError(17, "File exists", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", raced_mkdir)
    with pytest.raises(ScanError, match="at least 2 classes"):
        scan(folder.root, out=out, progress=False, **FAST)
    assert (out / "other.txt").read_text() == "the other scan's"


def test_decoded_images_are_stored_once(scanned, tmp_path):
    _, out, _ = scanned
    assert list((out / "cache").glob("decoded-*.npy")) and not list((out / "cache").glob("scan-images-*.npy"))
    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    (folder.root / "rare").mkdir()
    (folder.root / "rare" / "r.png").write_bytes((folder.root / folder.truth.path[0]).read_bytes())
    scan(folder.root, out=tmp_path / "scan", progress=False, **FAST)  # a dropped class: a subset file
    assert len(list((tmp_path / "scan" / "cache").glob("scan-images-*.npy"))) == 1


def test_scan_error_is_the_typed_one():
    assert ScanError is TypedScanError


def test_invalid_setting_is_a_settings_error(tmp_path):
    with pytest.raises(SettingsError):
        scan(tmp_path, out=tmp_path / "s", epochs=0)


def test_images_not_scored_are_recorded_with_their_labels(tmp_path):
    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    (folder.root / "rare").mkdir()
    (folder.root / "rare" / "r.png").write_bytes((folder.root / folder.truth.path[0]).read_bytes())
    (folder.root / "disc" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder.root / "loose.png").write_bytes(b"not in a class folder")
    (folder.root / "nothing-here").mkdir()
    scores = scan(folder.root, out=tmp_path / "scan", progress=False, **FAST)
    summary = scores.attrs["summary"]
    assert summary["n_unscored"] == 2 and summary["n_skipped"] == 3
    assert summary["empty_classes"] == ["nothing-here"]
    conn = storage.connect(tmp_path / "scan" / storage.DB_NAME, read_only=True)
    unscored = storage.read_unscored(conn)
    conn.close()
    assert unscored.path.tolist() == ["disc/broken.png", "rare/r.png"]
    assert unscored.given_label.tolist() == ["disc", "rare"] and unscored.readable.tolist() == [0, 1]
    assert unscored.reason[1].startswith("class 'rare' has only 1")
    assert ScanDir(tmp_path / "scan").read_manifest().summary.n_unscored == 2


def test_an_image_too_large_to_decode_is_kept_in_the_export(tmp_path):
    """A well-formed 90-megapixel image (a panorama, a microscopy scan) is not decoded (a possible
    decompression bomb) and so not scored, but it is an image with a label: it was reported as "could not
    be decoded" and left out of the export. It is now unscored but readable: exported with its given
    label, and counted apart in the summary and its report lines."""
    from PIL import Image

    from labelaudit.cli import _not_scored_lines
    from labelaudit.export import cleaned_labels, export_summary

    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    Image.new("L", (10_000, 9_000), 128).save(folder.root / "disc" / "panorama.png")  # 90 Mpx > 89,478,485
    (folder.root / "disc" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    scores = scan(folder.root, out=tmp_path / "scan", progress=False, **FAST)
    files = ScanDir(tmp_path / "scan")
    summary = files.read_manifest().summary
    assert (summary.n_unscored, summary.n_too_large, summary.n_skipped) == (2, 1, 2)
    assert summary.skipped_by_kind() == {"unreadable": 1, "too_large": 1, "linked": 0, "missing": 0, "small_classes": 0,
                                         "other": 0}
    conn = storage.connect(files.database, read_only=True)
    try:
        unscored = storage.read_unscored(conn).set_index("path")
        exported = cleaned_labels(conn).set_index("path")
        counts = export_summary(conn)
    finally:
        conn.close()
    assert unscored.readable.to_dict() == {"disc/broken.png": 0, "disc/panorama.png": 1}
    assert unscored.reason["disc/panorama.png"].startswith("image too large to decode (10000x9000 px")
    assert exported.label["disc/panorama.png"] == "disc" and "disc/broken.png" not in exported.index
    assert len(exported) == len(scores) + 1 and (counts["n_unscored"], counts["n_unreadable"]) == (1, 1)
    lines = " ".join(_not_scored_lines(summary, files))
    assert "1 unreadable, 1 too large to decode (exported with their label)" in lines
    assert "1 too large to decode (exported with their given label); 1 that could not be decoded" in lines


def test_a_linked_class_folder_is_a_notice_and_every_file_a_skipped_row(tmp_path):
    """`ln -s /data/rings DATA/ring`: the link is not followed (images stay inside the dataset folder,
    where the review app serves them from); the scan says so, naming the folder and its file count, and
    counts each file as skipped instead of one row."""
    import shutil

    from labelaudit.errors import LinkedFolders

    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    real = tmp_path / "rings"
    shutil.move(str(folder.root / "ring"), real)
    (folder.root / "ring").symlink_to(real, target_is_directory=True)
    n = sum(1 for p in real.rglob("*") if p.is_file())
    assert n >= 20
    with pytest.warns(LinkedFolders, match=rf"{n} file\(s\) in folders reached through a symbolic link.*ring/ \({n} files\)"):
        scores = scan(folder.root, out=tmp_path / "scan", progress=False, **FAST)
    assert "ring" not in set(scores.given_label)
    assert scores.attrs["summary"]["n_skipped"] == scores.attrs["summary"]["n_in_linked_folders"] == n
    from labelaudit.cli import _not_scored_lines

    files = ScanDir(tmp_path / "scan")
    summary = files.read_manifest().summary
    assert summary.skipped_by_kind()["linked"] == n and summary.skipped_by_kind()["other"] == 0
    assert f"{n} in folders reached through a symbolic link" in " ".join(_not_scored_lines(summary, files))
    from click.testing import CliRunner

    from labelaudit.cli import main

    r = CliRunner().invoke(main, ["export", str(tmp_path / "scan"), "-o", str(tmp_path / "labels.csv")])
    assert r.exit_code == 0 and f"{n} file(s) in folders reached through a symbolic link were not scanned" in r.output
    assert "other row(s)" not in r.output, r.output
    skipped = pd.read_csv(tmp_path / "scan" / "skipped.csv")
    assert len(skipped) == n and skipped.path.str.startswith("ring/").all()


def test_manifest_is_written_last(tmp_path, monkeypatch):
    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    out = ScanDir(tmp_path / "scan")
    scan(folder.root, out=out.path, progress=False, **FAST)
    assert out.manifest_path.is_file()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage, "write_scan", disk_full)  # a re-scan dies while writing its outputs
    with pytest.raises(OSError):
        scan(folder.root, out=out.path, progress=False, **FAST)
    assert not out.manifest_path.exists()  # not mistaken for a complete scan
    monkeypatch.undo()
    scan(folder.root, out=out.path, progress=False, **FAST)
    assert out.read_manifest().summary.folds_resumed == [0, 1, 2]


def test_skipped_csv_writes_control_characters_of_every_row_escaped(tmp_path):
    """Undecodable files and images of too-small classes too, not only rows skipped while listing:
    one CSV line per row; the unscored image keeps its real path for the export."""
    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    (folder.root / "disc" / "bad\tname\x01.png").write_bytes(b"not an image")
    (folder.root / "rare\x02").mkdir()
    (folder.root / "rare\x02" / "r\x03.png").write_bytes((folder.root / folder.truth.path[0]).read_bytes())
    scan(folder.root, out=tmp_path / "scan", progress=False, **{**FAST, "epochs": 2})
    lines = (tmp_path / "scan" / "skipped.csv").read_text().splitlines()
    assert not any(ch in line for line in lines for ch in "\t\x01\x02\x03")
    skipped = pd.read_csv(tmp_path / "scan" / "skipped.csv").set_index("path")
    assert set(skipped.index) == {"disc/bad\\x09name\\x01.png", "rare\\x02/r\\x03.png"}
    assert skipped.loc["rare\\x02/r\\x03.png", "reason"].startswith("class 'rare\\x02' has only 1")
    with storage.connect(tmp_path / "scan" / "labelaudit.db", read_only=True) as conn:
        unscored = storage.read_unscored(conn)
    assert "rare\x02/r\x03.png" in set(unscored.path)


def test_progressive_resizing_never_goes_below_the_smallest_image_the_net_takes(tmp_path):
    from labelaudit.config import MIN_IMAGE_SIZE, ScanConfig

    assert ScanConfig(image_size=10, early_scale=0.25).early_size == MIN_IMAGE_SIZE == 8
    assert ScanConfig(image_size=32, early_scale=0.75).early_size == 24  # the default is unchanged
    folder = make_noisy_folder(tmp_path / "data", n_per_class=12)
    scores = scan(folder.root, out=tmp_path / "scan", progress=False,
                  **{**FAST, "image_size": 10, "early_scale": 0.25, "epochs": 2})  # 2 px early epochs crashed
    assert len(scores) == len(folder.truth)


def test_same_folder_knows_a_folder_under_any_spelling(tmp_path, monkeypatch):
    """`scan("~/data")` of the folder the scan recorded as /home/.../data is the same dataset."""
    from labelaudit.fsutil import same_folder as _same_folder

    (tmp_path / "data").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "data")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    for spelling in ("~/data", "data", "./link", str(tmp_path / "link"), str(tmp_path / "data" / ".")):
        assert _same_folder(tmp_path / "data", spelling), spelling
    assert not _same_folder(tmp_path / "data", tmp_path)
    assert not _same_folder(tmp_path / "gone", tmp_path / "data")


def test_a_second_scan_into_a_folder_a_scan_is_writing_to_is_refused(tmp_path):
    """Two scans into one --out both ended "successfully", leaving one's database beside the other's scores.csv."""
    import filelock

    from labelaudit.errors import ScanDirBusy

    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    out = tmp_path / "scan"
    out.mkdir()
    with filelock.FileLock(ScanDir(out).lock, timeout=0):  # what a running scan holds
        with pytest.raises(ScanDirBusy, match="another labelaudit scan is writing to"):
            scan(folder.root, out=out, progress=False, **FAST)
    assert sorted(p.name for p in out.iterdir()) == [".labelaudit.lock"]  # nothing written
    assert len(scan(folder.root, out=out, progress=False, **FAST)) == 80  # free again


def test_a_refused_scan_releases_its_lock_and_a_busy_one_deletes_nothing(tmp_path):
    """A scan refused after taking the lock kept it (a retry in the same process was 'busy'); a scan refused as
    busy removed the folder it had made, under the scan that held it."""
    import filelock

    from labelaudit.errors import OtherDataset, ScanDirBusy

    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    other = make_noisy_folder(tmp_path / "other", n_per_class=20, seed=5)
    out = tmp_path / "scan"
    scores = scan(folder.root, out=out, progress=False, **FAST)
    conn = storage.connect(out / storage.DB_NAME)
    record_decision(conn, scores.path[0], "unusable", reviewer="ann")
    conn.close()
    with pytest.raises(OtherDataset):
        scan(other.root, out=out, progress=False, **FAST)
    assert len(scan(other.root, out=out, progress=False, keep_decisions=True, **FAST)) == 80  # not "busy"
    new = tmp_path / "new" / "scan"
    new.mkdir(parents=True)
    with filelock.FileLock(ScanDir(new).lock, timeout=0):  # another scan made it and holds it
        with pytest.raises(ScanDirBusy):
            scan(folder.root, out=new, progress=False, **FAST)
        assert new.is_dir()


def test_a_scan_that_cannot_start_leaves_no_folder_behind(tmp_path, monkeypatch):
    """`--device cuda` without CUDA left the --out folder and its parents behind."""
    from labelaudit.errors import DeviceUnavailable

    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceUnavailable):
        scan(folder.root, out=tmp_path / "deep" / "er" / "scan", progress=False, **{**FAST, "device": "cuda"})
    assert not (tmp_path / "deep").exists()


@pytest.mark.filterwarnings("ignore::labelaudit.errors.WeakModelsWarning")
def test_scan_folders_inside_the_dataset_lose_no_class_and_are_no_class(tmp_path):
    """--out DATA with a class folder named cache dropped the whole class silently; --out DATA/scan made the
    new scan folder an "empty class"; an older scan folder inside DATA was read as a class of unreadable files."""
    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    first_class = sorted(p.name for p in folder.root.iterdir())[0]
    (folder.root / first_class).rename(folder.root / "cache")
    with pytest.raises(TypedScanError, match="holds files of the dataset"):
        scan(folder.root, out=folder.root, progress=False, **FAST)
    (folder.root / "cache").rename(folder.root / first_class)

    first = scan(folder.root, out=folder.root / "scan", progress=False, **FAST)
    assert first.attrs["summary"]["empty_classes"] == [] and len(first) == 80
    other = scan(folder.root, out=tmp_path / "elsewhere", progress=False, **FAST)
    assert len(other) == 80 and "scan" not in set(other.given_label)
    skipped = pd.read_csv(tmp_path / "elsewhere" / "skipped.csv")
    assert skipped.to_dict("records") == [{"path": "scan/", "reason": "a labelaudit scan folder: not scanned"}]
    (folder.root / "scan" / "labelaudit.db").unlink()  # an unfinished scan's folder (lock, cache, folds) too
    (folder.root / "scan" / "scan.json").unlink()
    again = scan(folder.root, out=tmp_path / "elsewhere", progress=False, **FAST)
    assert len(again) == 80 and "scan" not in set(again.given_label)


def test_class_names_that_differ_only_in_case_or_normalisation_are_named(tmp_path):
    """NFC and NFD 'café' became two classes, one "too small", with no hint that they look alike."""
    import unicodedata

    from labelaudit.errors import LookAlikeClasses

    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    paths = sorted(p.relative_to(folder.root).as_posix() for p in folder.root.rglob("*.png"))
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    labels = [nfc if i % 4 == 0 else nfd if i % 4 == 1 else "Cat" if i % 4 == 2 else "cat" for i in range(len(paths))]
    csv = tmp_path / "labels.csv"
    pd.DataFrame({"path": paths, "label": labels}).to_csv(csv, index=False)
    with pytest.warns(LookAlikeClasses, match=r"2 group\(s\) of class names differ only in case") as caught:
        scores = scan(folder.root, labels_csv=csv, out=tmp_path / "scan", progress=False, **FAST)
    assert scores.given_label.nunique() == 4  # kept apart, as given
    assert r"'caf\xe9'" in str(caught[0].message) and r"'cafe\u0301'" in str(caught[0].message)  # told apart


def test_a_folder_with_files_of_a_scan_s_names_but_no_scan_is_not_written_over(tmp_path):
    """--out a folder of the user's holding its own scores.csv replaced it silently."""
    import shutil

    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    mine = tmp_path / "results"
    mine.mkdir()
    (mine / "scores.csv").write_text("my,own\n1,2\n")
    with pytest.raises(TypedScanError, match=r"holds scores.csv but no labelaudit scan"):
        scan(folder.root, out=mine, progress=False, **FAST)
    assert (mine / "scores.csv").read_text() == "my,own\n1,2\n"
    out = tmp_path / "scan"  # a scan killed after its CSVs, before its database, is finished by the same command
    scan(folder.root, out=out, progress=False, **FAST)
    (out / "labelaudit.db").unlink()
    (out / "scan.json").unlink()
    shutil.rmtree(out / "folds")
    shutil.rmtree(out / "cache")  # as a scan from probabilities leaves it: no folds, no decode cache
    assert len(scan(folder.root, out=out, progress=False, **FAST)) == 80


def test_scan_warnings_name_the_caller_s_line_for_scans_from_images_and_arrays(tmp_path):
    """The notices came from different depths (images, arrays): a fixed stacklevel pointed inside labelaudit."""
    import warnings

    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    paths = sorted(p.relative_to(folder.root).as_posix() for p in folder.root.rglob("*.png"))
    labels = ["Cat" if i % 2 else "cat" for i in range(len(paths))]
    csv = tmp_path / "labels.csv"
    pd.DataFrame({"path": paths, "label": labels}).to_csv(csv, index=False)
    probs = np.full((len(paths), 2), 0.5)
    for kwargs in ({}, {"pred_probs": probs}):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            scan(folder.root, labels_csv=csv, out=tmp_path / f"scan-{len(kwargs)}", progress=False, **kwargs,
                 **({} if kwargs else FAST))  # the CNN's settings are refused by a scan from probabilities
        ours = [w for w in caught if w.category.__module__ == "labelaudit.errors"]
        assert ours and all(w.filename == __file__ for w in ours), [(w.category, w.filename) for w in ours]


def test_a_small_dataset_trains_more_epochs_unless_they_are_given(tmp_path):
    """Few images x few epochs train weak models: the epochs rise (with a notice) to min_fold_images per fold."""
    from labelaudit.config import ScanConfig
    from labelaudit.errors import MoreEpochsNotice, StaleFoldsNotice

    folder = make_noisy_folder(tmp_path / "data", n_per_class=12)  # 48 images, 3 folds: 32 training images each
    fast = {k: v for k, v in FAST.items() if k != "epochs"}
    with pytest.warns(MoreEpochsNotice, match=r"48 images: each fold trains 20 epochs instead of 16 \(640 training"):
        scan(folder.root, out=tmp_path / "raised", progress=False, min_fold_images=640, **fast)
    assert json.loads((tmp_path / "raised" / "scan.json").read_text())["config"]["epochs"] == 20
    with warnings.catch_warnings():  # the same scan again: the raised epochs are the stored folds' epochs
        warnings.simplefilter("error", StaleFoldsNotice)
        warnings.simplefilter("ignore", MoreEpochsNotice)
        again = scan(folder.root, out=tmp_path / "raised", progress=False, min_fold_images=640, **fast)
    assert again.attrs["summary"]["folds_resumed"] == [0, 1, 2]
    with pytest.warns(MoreEpochsNotice, match="20 epochs instead of 16"):  # a default left in a config is not given
        scan(folder.root, out=tmp_path / "config", progress=False,
             config=ScanConfig(**fast, epochs=16, min_fold_images=640))
    with warnings.catch_warnings():
        warnings.simplefilter("error", MoreEpochsNotice)
        scan(folder.root, out=tmp_path / "given", progress=False, min_fold_images=640, epochs=16, **fast)
        scan(folder.root, out=tmp_path / "off", progress=False, min_fold_images=0, **fast)
        scan(folder.root, out=tmp_path / "other", progress=False, config=ScanConfig(**fast, epochs=6,
                                                                                   min_fold_images=640))
        scan(folder.root, out=tmp_path / "large", progress=False, min_fold_images=640, budget="large",
             **{**fast, "batch_size": 16})  # measured with the small budget only
    for name, epochs in (("given", 16), ("off", 16), ("other", 6), ("large", 24)):
        assert json.loads((tmp_path / name / "scan.json").read_text())["config"]["epochs"] == epochs, name


def test_a_summary_written_before_the_tempered_count_reads_without_a_temperature():
    from labelaudit.scandir import ScanSummary

    old = ScanSummary(n_samples=10, n_classes=2).to_dict()
    del old["count_temperature"]
    assert ScanSummary.from_dict(old).count_temperature is None
