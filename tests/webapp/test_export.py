"""Cleaned-label export: the pure function, the writer, `labelaudit export`, the web download."""

from __future__ import annotations

import errno
import io
import os

import pandas as pd
import pytest
from click.testing import CliRunner
from fakescan import XSS_CLASS

from labelaudit import export, review
from labelaudit.errors import UnsafePath
from labelaudit.scandir import database as storage
from labelaudit.cli import main
from labelaudit.export import (
    cleaned_labels,
    copy_to_folder,
    label_folders,
    export_summary,
    resolve_image,
    safe_folder_name,
    write_cleaned_labels,
)


def decide_some(scan):
    """Four decisions on flagged samples: suggestion, unusable, relabel, accept (then changed)."""
    f = scan.flagged()
    ids = [int(i) for i in f.sample_id[:4]]
    conn = storage.connect(scan.db_path)
    p = scan.scores.path
    review.record_decision(conn, p[ids[0]], "suggested", label=scan.scores.suggested_label[ids[0]], reviewer="ann")
    review.record_decision(conn, p[ids[1]], "unusable", reviewer="ann", note="blurry")
    review.record_decision(conn, p[ids[2]], "relabel", label=XSS_CLASS, reviewer="bob")
    review.record_decision(conn, p[ids[3]], "accept", label=scan.scores.given_label[ids[3]], reviewer="ann")
    review.record_decision(conn, p[ids[3]], "clear", reviewer="ann")
    conn.close()
    return ids


def test_cleaned_labels_without_decisions_are_the_given_labels(scan):
    conn = storage.connect(scan.db_path)
    df = cleaned_labels(conn)
    assert list(df.columns) == ["path", "label"]
    assert df.path.tolist() == scan.scores.path.tolist()
    assert df.label.tolist() == scan.scores.given_label.tolist()


def test_cleaned_labels_apply_decisions(scan):
    ids = decide_some(scan)
    conn = storage.connect(scan.db_path)
    df = cleaned_labels(conn).set_index("path")
    p = scan.scores.path
    assert len(df) == len(scan.scores) - 1
    assert p[ids[1]] not in df.index  # unusable: dropped
    assert df.label[p[ids[0]]] == scan.scores.suggested_label[ids[0]]
    assert df.label[p[ids[2]]] == XSS_CLASS
    assert df.label[p[ids[3]]] == scan.scores.given_label[ids[3]]  # cleared: back to given
    untouched = [i for i in range(len(p)) if i not in ids]
    assert (df.label[p[untouched]].to_numpy() == scan.scores.given_label[untouched].to_numpy()).all()

    full = cleaned_labels(conn, full=True).set_index("path")
    assert list(full.columns) == ["label", "original_label", "decision", "reviewer", "decided_at",
                                  "mislabel_score", "suggested_label", "note"]
    row = full.loc[p[ids[2]]]
    assert (row.decision, row.reviewer, row.original_label) == ("relabel", "bob", scan.scores.given_label[ids[2]])
    assert row.decided_at.endswith("+00:00")
    assert full.loc[p[ids[3]]].decision == "" and full.loc[p[ids[3]]].reviewer == ""
    audit = cleaned_labels(conn, full=True, include_unusable=True).set_index("path")
    assert audit.loc[p[ids[1]]].decision == "unusable" and audit.loc[p[ids[1]]].label == ""
    assert audit.loc[p[ids[1]]].note == "blurry"


def test_auto_accept_above_only_touches_unreviewed(scan):
    ids = decide_some(scan)
    conn = storage.connect(scan.db_path)
    df = cleaned_labels(conn, full=True, auto_accept_above=0.8).set_index("path")
    s = scan.scores
    auto = s[(s.mislabel_score > 0.8) & (s.suggested_label != s.given_label)
             & ~s.index.isin(ids[:3])]  # ids[3] was cleared: unreviewed again
    assert set(df.index[df.decision == "auto"]) == set(auto.path)
    for path, sugg in zip(auto.path, auto.suggested_label):
        assert df.label[path] == sugg
    assert df.label[s.path[ids[2]]] == XSS_CLASS  # a decision wins over the suggestion


def test_writer_never_overwrites_without_force(tmp_path):
    df = pd.DataFrame({"path": ["a.png"], "label": ["x"]})
    out = tmp_path / "sub" / "labels.csv"
    write_cleaned_labels(df, out, parents=True)
    assert out.read_text() == "path,label\na.png,x\n"
    with pytest.raises(FileExistsError):
        write_cleaned_labels(df.assign(label="y"), out)
    assert out.read_text() == "path,label\na.png,x\n"
    write_cleaned_labels(df.assign(label="y"), out, force=True)
    assert out.read_text() == "path,label\na.png,y\n"
    assert sorted(os.listdir(out.parent)) == ["labels.csv"]  # no temporary files left


def test_cli_export(scan, tmp_path):
    ids = decide_some(scan)
    runner = CliRunner()
    out = tmp_path / "cleaned_labels.csv"
    r = runner.invoke(main, ["export", str(scan.scan_dir), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "1 dropped as unusable" in r.output
    df = pd.read_csv(out, keep_default_na=False)
    assert list(df.columns) == ["path", "label"] and len(df) == len(scan.scores) - 1
    assert df.set_index("path").label[scan.scores.path[ids[2]]] == XSS_CLASS
    r = runner.invoke(main, ["export", str(scan.scan_dir), "-o", str(out), "--full"])
    assert r.exit_code != 0 and "exists" in r.output and "--force" in r.output
    r = runner.invoke(main, ["export", str(scan.scan_dir), "-o", str(out), "--full", "--force",
                             "--auto-accept-above", "0.9"])
    assert r.exit_code == 0, r.output
    full = pd.read_csv(out, keep_default_na=False)
    assert "decision" in full.columns and (full.decision == "auto").any()
    # default output goes into the scan directory; '-' writes to stdout
    r = runner.invoke(main, ["export", str(scan.scan_dir)])
    assert r.exit_code == 0 and (scan.scan_dir / "cleaned_labels.csv").is_file()
    r = runner.invoke(main, ["export", str(scan.scan_dir), "-o", "-"])
    assert r.exit_code == 0 and r.stdout.startswith("path,label\n")
    for name in ("/dev/stdout", "/dev/fd/1"):  # the report to stderr, the CSV alone on stdout
        r = runner.invoke(main, ["export", str(scan.scan_dir), "-o", name])
        assert r.exit_code == 0 and r.stdout.startswith("path,label\n") and "Wrote" not in r.stdout
    assert runner.invoke(main, ["export", str(tmp_path)]).exit_code != 0  # not a scan


@pytest.mark.parametrize("name", ["labelaudit.db", "scan.json", "scores.csv", "pred_probs.npy"])
def test_cli_export_never_writes_over_the_scan_itself(scan, name):
    """`-o SCAN/labelaudit.db --force` (a tab completion away from cleaned_labels.csv) replaced the
    database, every decision with it, by the CSV."""
    target = scan.scan_dir / name
    before = target.read_bytes()
    r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(target), "--force"])
    assert r.exit_code != 0 and "Traceback" not in r.output and "scan's own" in r.output, r.output
    assert target.read_bytes() == before


@pytest.mark.parametrize("folder", ["folds", "cache"])
def test_cli_export_never_writes_into_the_folds_or_the_cache(scan, folder):
    """`-o SCAN/folds/fold-0.npz --force` replaced a trained fold by the CSV: nothing inside those folders."""
    (scan.scan_dir / folder).mkdir(exist_ok=True)
    stored = scan.scan_dir / folder / "fold-0.npz"
    stored.write_bytes(b"trained")
    for target in (stored, scan.scan_dir / folder / "new.csv"):
        r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(target), "--force"])
        assert r.exit_code != 0 and "scan's own" in r.output, r.output
    assert stored.read_bytes() == b"trained" and not (scan.scan_dir / folder / "new.csv").exists()


def test_writer_writes_into_a_device_and_through_a_link(tmp_path):
    """`-o /dev/null --force` replaced the device by a regular file (as root); a link is written through."""
    import stat

    df = pd.DataFrame({"path": ["a.png"], "label": ["cat"]})
    for force in (False, True):  # nothing is replaced: no --force needed
        write_cleaned_labels(df, "/dev/null", force=force)
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = __import__("threading").Thread(target=lambda: received.append(fifo.read_text()))
    received: list[str] = []
    reader.start()
    write_cleaned_labels(df, fifo)
    reader.join(10)
    assert received == ["path,label\na.png,cat\n"] and stat.S_ISFIFO(os.stat(fifo).st_mode)
    stdout = tmp_path / "stdout"  # like /dev/stdout: a link to the process's pipe, whose name leads nowhere else
    stdout.symlink_to(fifo)
    received.clear()
    reader = __import__("threading").Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    write_cleaned_labels(df, stdout)
    reader.join(10)
    assert received == ["path,label\na.png,cat\n"] and stdout.is_symlink()
    real = tmp_path / "real.csv"
    real.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    assert write_cleaned_labels(df, link, force=True) == link
    assert link.is_symlink() and real.read_text() == "path,label\na.png,cat\n"


def test_cli_export_never_writes_over_a_dataset_image(scan, tmp_path):
    """`-o DATA/<class>/<image> --force` replaced the image, its only copy, by the CSV; through a
    symbolic link or a `..` path too. A new CSV inside the dataset folder is still fine."""
    from labelaudit.errors import ProtectedFile
    from labelaudit.export import check_csv_target
    from labelaudit.scandir import ScanDir

    root = scan.dataset_root
    first = scan.scores.path[0]
    image = root / first
    link = tmp_path / "link.png"
    link.symlink_to(image)
    before = sorted((p, p.read_bytes()) for p in root.rglob("*") if p.is_file())
    for target in (image, link, root / "square" / ".." / first):
        r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(target), "--force"])
        assert r.exit_code == 1 and "Traceback" not in r.output and r.output.count("\n") == 1, r.output
        assert "image of the scanned dataset" in r.output, r.output
    assert sorted((p, p.read_bytes()) for p in root.rglob("*") if p.is_file()) == before
    assert link.is_symlink()
    (root / "circle" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ProtectedFile, match="broken.png"):  # an image the scan did not score is one too
        check_csv_target(root / "circle" / "broken.png", ScanDir(scan.scan_dir), dataset_root=root,
                         dataset_paths=["circle/broken.png"])
    (root / "circle" / "alias.png").symlink_to(image)
    with pytest.raises(ProtectedFile, match="alias.png"):  # the file behind a dataset entry that is a link
        check_csv_target(image, ScanDir(scan.scan_dir), dataset_root=root, dataset_paths=["circle/alias.png"])
    r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(root / "cleaned.csv")])
    assert r.exit_code == 0 and len(pd.read_csv(root / "cleaned.csv")) == len(scan.scores), r.output


def test_export_refuses_an_image_spelt_in_another_case(scan, monkeypatch):
    """On a case-insensitive file system (macOS, Windows) `-o DATA/Circle/IMG.PNG` is the image
    `circle/img.png`: the names are compared case-folded. (Linux here: the other spelling is made to exist.)"""
    from labelaudit.errors import ProtectedFile
    from labelaudit.export import check_csv_target
    from labelaudit.scandir import ScanDir

    root = scan.dataset_root
    first = scan.scores.path[0]
    spelt = root / first.upper()
    lexists = os.path.lexists
    monkeypatch.setattr(os.path, "lexists", lambda p: str(p) == str(spelt) or lexists(p))
    with pytest.raises(ProtectedFile, match="image of the scanned dataset"):
        check_csv_target(spelt, ScanDir(scan.scan_dir), dataset_root=root, dataset_paths=list(scan.scores.path))
    check_csv_target(root / "cleaned.csv", ScanDir(scan.scan_dir), dataset_root=root,
                     dataset_paths=list(scan.scores.path))


def test_cli_export_never_writes_over_the_labels_csv_the_scan_read(scan, tmp_path):
    """`-o DATA/labels.csv --force`, the labels CSV the scan read, replaced the user's input (which the
    scan's decisions refer to) by the cleaned labels: refused like the dataset's images (ProtectedFile)."""
    from labelaudit.errors import ProtectedFile
    from labelaudit.export import check_csv_target
    from labelaudit.scandir import ScanDir

    files = ScanDir(scan.scan_dir)
    labels = scan.dataset_root / "labels.csv"
    labels.write_text("path,label\n" + "".join(f"{p},{g}\n" for p, g in zip(scan.scores.path, scan.scores.given_label)),
                      encoding="utf-8")
    manifest = files.read_manifest()
    manifest.labels_csv = str(labels)
    files.write_manifest(manifest)
    before = labels.read_bytes()
    link = tmp_path / "labels-link.csv"
    link.symlink_to(labels)
    for target in (labels, link, scan.dataset_root / "circle" / ".." / "labels.csv"):
        r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(target), "--force"])
        assert r.exit_code == 1 and "Traceback" not in r.output and r.output.count("\n") == 1, r.output
        assert "labels CSV the scan read" in r.output and "another name" in r.output, r.output
    assert labels.read_bytes() == before
    with pytest.raises(ProtectedFile):
        check_csv_target(labels, files, inputs=[labels])
    r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(scan.dataset_root / "cleaned.csv")])
    assert r.exit_code == 0, r.output


def test_cli_export_of_an_unfinished_scan_says_so(scan, tmp_path):
    """A re-scan killed before it wrote scan.json leaves the database of the last finished write: the
    export still works (the decisions are there) but says it may not hold the re-scan's images."""
    (scan.scan_dir / "scan.json").unlink()
    r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(tmp_path / "labels.csv")])
    assert r.exit_code == 0, r.output
    assert "Warning: " in r.output and "did not finish" in r.output and "scan.json" in r.output
    assert len(pd.read_csv(tmp_path / "labels.csv")) == len(scan.scores)


def test_cli_export_of_an_unreadable_manifest_says_so(scan, tmp_path):
    """A scan.json that cannot be read (damaged after the scan) gets the same warning as a missing one."""
    (scan.scan_dir / "scan.json").write_text('{"summary": ', encoding="utf-8")
    r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(tmp_path / "labels.csv")])
    assert r.exit_code == 0, r.output
    assert "Warning: cannot read " in r.output and "scan.json" in r.output and "run the scan again" in r.output
    assert len(pd.read_csv(tmp_path / "labels.csv")) == len(scan.scores)


@pytest.mark.parametrize("damage", ["empty file", "no scan written"])
def test_a_database_without_a_scan_is_refused_not_exported_empty(scan, tmp_path, damage):
    """A database SQLite reads but that holds no scan (a zero-byte file; the first scan killed while
    writing it, which leaves the schema only) would export an empty label list with exit code 0 and
    show an empty review app: both refuse it in one line, and the file is left as it is."""
    from webapp_support import make_client

    from labelaudit.errors import NoScanInDatabase

    db = scan.db_path
    for sidecar in ("-wal", "-shm"):
        db.with_name(db.name + sidecar).unlink(missing_ok=True)
    db.unlink()
    if damage == "empty file":
        db.write_bytes(b"")
    else:
        storage.connect(db).close()  # what connect() made before write_scan's transaction
    before = db.read_bytes()
    r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(tmp_path / "labels.csv")])
    assert r.exit_code == 1 and r.output.startswith("Error: ") and "holds no scan" in r.output, r.output
    assert not (tmp_path / "labels.csv").exists() and db.read_bytes() == before
    with pytest.raises(NoScanInDatabase, match="holds no scan"):
        make_client(scan.scan_dir)
    assert db.read_bytes() == before


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_database_is_a_message_and_is_left_alone(scan, tmp_path, damage):
    """A labelaudit.db that SQLite cannot read: export, review and a re-scan say so in one line, before
    any work, and never write over it (it may hold decisions worth recovering)."""
    from webapp_support import make_client

    from labelaudit import scan as run_scan
    from labelaudit.errors import CorruptDatabase

    db = scan.db_path
    payload = b"not a database at all" * 100 if damage == "garbage" else db.read_bytes()[:5000]
    for sidecar in ("-wal", "-shm"):
        db.with_name(db.name + sidecar).unlink(missing_ok=True)
    db.write_bytes(payload)
    r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(tmp_path / "labels.csv")])
    assert r.exit_code == 1 and "Traceback" not in r.output and ".recover" in r.output, r.output
    assert r.output.startswith("Error: ") and r.output.count("\n") == 1
    with pytest.raises(CorruptDatabase, match="labelaudit.db"):
        make_client(scan.scan_dir)
    with pytest.raises(CorruptDatabase, match="labelaudit.db"):
        run_scan(scan.dataset_root, out=scan.scan_dir, progress=False, epochs=1, folds=2)
    assert db.read_bytes() == payload and not (scan.scan_dir / "cache").exists()


def test_web_download_matches_cli(client, scan, tmp_path):
    decide_some(scan)
    r = client.get("/api/export.csv", params={"full": "true", "auto_accept_above": "0.95"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="cleaned_labels.csv"' in r.headers["content-disposition"]
    out = tmp_path / "cli.csv"
    assert CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(out), "--full",
                                     "--auto-accept-above", "0.95"]).exit_code == 0
    assert r.text == out.read_text()
    # the export page's form sends an empty threshold when none is typed
    plain = client.get("/api/export.csv", params={"auto_accept_above": ""})
    assert plain.status_code == 200
    assert pd.read_csv(io.StringIO(plain.text)).shape == (len(scan.scores) - 1, 2)
    assert client.get("/api/export.csv", params={"auto_accept_above": "2"}).status_code == 422


def test_to_folder_hard_links(scan, tmp_path):
    ids = decide_some(scan)
    dest = tmp_path / "clean"
    r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(tmp_path / "l.csv"),
                                  "--to-folder", str(dest)])
    assert r.exit_code == 0, r.output
    files = sorted(p for p in dest.rglob("*") if p.is_file())
    assert len(files) == len(scan.scores) - 1
    assert {p.parent.name for p in files} == {safe_folder_name(c) for c in scan.classes}
    relabeled = scan.scores.path[ids[2]]
    target = dest / safe_folder_name(XSS_CLASS) / relabeled.split("/")[-1]
    assert target.is_file()
    assert os.path.samefile(target, scan.dataset_root / relabeled)  # a hard link, not a copy
    assert "/" not in safe_folder_name(XSS_CLASS) and safe_folder_name("..") not in ("..", ".")
    # never into a non-empty folder without --force
    r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(tmp_path / "l2.csv"),
                                  "--to-folder", str(dest)])
    assert r.exit_code != 0 and "not empty" in r.output


def test_a_csv_that_cannot_be_written_stops_the_export_before_the_folder_is_filled(scan, tmp_path):
    """`export SCAN --to-folder DIR` after a plain export filled DIR with every image, then stopped on
    "SCAN/cleaned_labels.csv exists; use --force": half an export, though "both are checked before
    anything is written". The CSV's own checks (exists without --force, folder missing without --mkdir)
    now run first."""
    existing = tmp_path / "labels.csv"
    existing.write_text("mine\n", encoding="utf-8")
    for csv, problem in ((existing, "exists; use --force"), (tmp_path / "no" / "such" / "l.csv", "--mkdir")):
        dest = tmp_path / "clean"
        r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(csv), "--to-folder", str(dest)])
        assert r.exit_code == 1 and problem in r.output and r.output.count("\n") == 1, r.output
        assert not dest.exists() or not any(dest.iterdir())
    assert existing.read_text(encoding="utf-8") == "mine\n" and not (tmp_path / "no").exists()
    r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(existing), "--force",
                                  "--to-folder", str(tmp_path / "clean")])
    assert r.exit_code == 0, r.output
    assert len(pd.read_csv(existing)) == len(scan.scores) and any((tmp_path / "clean").iterdir())


def test_to_folder_says_when_images_are_missing_and_refuses_a_moved_dataset(scan, tmp_path):
    """A moved dataset gave exit 0, "0 hard links, 0 copies" and no folder; a deleted image an incomplete copy
    with exit 0. Now: a moved dataset is refused before anything is written, naming the remedy; missing images
    make the exit status 1 after the (complete) CSV is written."""
    gone = scan.dataset_root / scan.scores.path[0]
    gone.unlink()
    r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(tmp_path / "a.csv"),
                                  "--to-folder", str(tmp_path / "a")])
    assert r.exit_code == 1 and "1 image(s) of the export are not in" in r.output, r.output
    assert len(pd.read_csv(tmp_path / "a.csv")) == len(scan.scores)
    assert sum(1 for p in (tmp_path / "a").rglob("*") if p.is_file()) == len(scan.scores) - 1
    scan.dataset_root.rename(tmp_path / "elsewhere")
    r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(tmp_path / "b.csv"),
                                  "--to-folder", str(tmp_path / "b")])
    assert r.exit_code == 1 and "is not there" in r.output and "--keep-decisions" in r.output, r.output
    assert not (tmp_path / "b.csv").exists() and not (tmp_path / "b").exists()


def test_to_folder_copies_across_devices(scan, tmp_path, monkeypatch):
    conn = storage.connect(scan.db_path)
    df = cleaned_labels(conn)

    def no_links(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    res = copy_to_folder(df, scan.dataset_root, tmp_path / "copy")
    assert (res.n_linked, res.n_copied) == (0, len(df))
    one = tmp_path / "copy" / safe_folder_name(df.label[0]) / df.path[0].split("/")[-1]
    assert one.read_bytes() == (scan.dataset_root / df.path[0]).read_bytes()
    assert not os.path.samefile(one, scan.dataset_root / df.path[0])


def test_to_folder_name_clashes_and_missing_files(tmp_path):
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "1.png").write_bytes(b"A")
    (root / "b" / "1.png").write_bytes(b"B")
    df = pd.DataFrame({"path": ["a/1.png", "b/1.png", "a/missing.png", "../etc/passwd"], "label": ["x"] * 4})
    res = copy_to_folder(df, root, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out" / "x").iterdir()) == ["1.png", "b__1.png"]
    assert res.missing == ["a/missing.png", "../etc/passwd"]


def test_to_folder_never_writes_one_file_over_another(tmp_path):
    """Prefixed names can clash too (a/b/1.png and a__b/1.png both become a__b__1.png; a plain a__1.png
    meets the prefixed a/1.png): every file of the CSV still gets its own name in the copy."""
    root = tmp_path / "data"
    paths = ["0/1.png", "a/b/1.png", "a__b/1.png", "a/1.png", "z/a__1.png"]
    for i, rel in enumerate(paths):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(str(i).encode())
    res = copy_to_folder(pd.DataFrame({"path": paths, "label": ["x"] * len(paths)}), root, tmp_path / "out")
    copied = sorted(p.read_bytes() for p in (tmp_path / "out" / "x").iterdir())
    assert copied == [str(i).encode() for i in range(len(paths))] and res.n_linked + res.n_copied == len(paths)


def test_to_folder_names_differ_in_more_than_case(tmp_path):
    """On a case-insensitive file system (macOS, Windows) x/A.png and y/a.png, or the label folders Cat and
    cat, land on one file: the second replaced the first in the copy. Names taken are compared case-folded."""
    root = tmp_path / "data"
    paths = ["x/A.png", "y/a.png", "z/b.png"]
    for rel in paths:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(rel.encode())
    res = copy_to_folder(pd.DataFrame({"path": paths, "label": ["cat", "cat", "Cat"]}), root, tmp_path / "out")
    names = [p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")]
    assert len({n.casefold() for n in names}) == 3, names
    assert sorted(names) == ["Cat/b.png", "cat__2/A.png", "cat__2/y__a.png"]  # two classes, two folders
    assert res.renamed == {"cat": "cat__2"}


def test_to_folder_never_merges_two_labels_into_one_folder(tmp_path):
    """``a/b`` and ``a_b`` both became the folder ``a_b``: two classes merged in the copy."""
    from labelaudit.export import label_folders

    root = tmp_path / "data"
    paths = ["1.png", "2.png", "3.png", "4.png"]
    root.mkdir()
    for rel in paths:
        (root / rel).write_bytes(rel.encode())
    labels = ["a/b", "a_b", "a_b__2", ".."]
    res = copy_to_folder(pd.DataFrame({"path": paths, "label": labels}), root, tmp_path / "out")
    folders = {p.parent.name: p.name for p in (tmp_path / "out").rglob("*.png")}
    assert len(folders) == 4 and folders["a_b"] == "2.png" and folders["a_b__2"] == "3.png"
    assert res.renamed == {"a/b": "a_b__3", "..": "_.._"}
    assert folders["a_b__3"] == "1.png"
    assert len({name.casefold() for name in label_folders(["X", "x", "x__2", "X__2"]).values()}) == 4


def test_to_folder_refuses_the_dataset_folder_and_loses_no_image(scan, tmp_path):
    """--to-folder DATA --force used to unlink an image before linking it onto itself (the only copy
    gone); a copy inside the dataset, or around it, is refused too, before the CSV is written."""
    from labelaudit.errors import OverlappingFolders

    root = scan.dataset_root
    before = sorted((p, p.read_bytes()) for p in root.rglob("*") if p.is_file())
    for dest in (root, root / "cleaned", root.parent):
        out = tmp_path / "labels.csv"
        r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(out), "--to-folder", str(dest),
                                      "--force"])
        assert r.exit_code == 1 and "overlaps the dataset folder" in r.output and not out.exists(), r.output
        df = pd.DataFrame({"path": scan.scores.path, "label": scan.scores.given_label})
        with pytest.raises(OverlappingFolders):
            copy_to_folder(df, root, dest, force=True)
    assert sorted((p, p.read_bytes()) for p in root.rglob("*") if p.is_file()) == before
    assert not (root / "cleaned").exists()


def test_to_folder_refuses_a_label_folder_that_leads_into_the_dataset(scan, tmp_path):
    """--to-folder CLEAN --force, where CLEAN/circle is a symbolic link to DATA/circle: writing a file of
    the copy there unlinked the dataset image of that name (through the link) before linking it again,
    so the image, its only copy, was gone. The folder is refused like the dataset folder itself."""
    from labelaudit.errors import OverlappingFolders

    root = scan.dataset_root
    before = sorted((p, p.read_bytes()) for p in root.rglob("*") if p.is_file())
    dest = tmp_path / "clean"
    dest.mkdir()
    (dest / "circle").symlink_to(root / "circle", target_is_directory=True)
    out = tmp_path / "labels.csv"
    r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(out), "--to-folder", str(dest), "--force"])
    assert r.exit_code == 1 and "overlaps the dataset folder" in r.output and not out.exists(), r.output
    df = pd.DataFrame({"path": scan.scores.path, "label": scan.scores.given_label})
    with pytest.raises(OverlappingFolders):
        copy_to_folder(df, root, dest, force=True)
    assert sorted((p, p.read_bytes()) for p in root.rglob("*") if p.is_file()) == before


def test_to_folder_never_deletes_a_source_image(scan, tmp_path, monkeypatch):
    """Should an overlap go unnoticed (a case-insensitive file system spells the dataset folder otherwise,
    a bind mount), writing a file of the copy onto its own source keeps the image: a file of the copy
    replaces the old one only once it is complete, never by unlinking first."""
    import labelaudit.export as export_module

    root = scan.dataset_root
    before = sorted((p, p.read_bytes()) for p in root.rglob("*") if p.is_file())
    monkeypatch.setattr(export_module, "check_folder_target", lambda *a, **k: None)
    df = pd.DataFrame({"path": scan.scores.path, "label": scan.scores.given_label})
    df = df[[p.split("/")[0] == safe_folder_name(label) for p, label in zip(df.path, df.label)]]
    assert len(df) > 10
    res = copy_to_folder(df, root, root, force=True)
    assert res.n_linked == len(df)
    assert sorted((p, p.read_bytes()) for p in root.rglob("*") if p.is_file()) == before
    assert not [p for p in root.rglob(".*")]  # no temporary file left behind


def test_writer_never_creates_folders_unasked(tmp_path):
    df = pd.DataFrame({"path": ["a.png"], "label": ["x"]})
    with pytest.raises(FileNotFoundError, match="--mkdir"):
        write_cleaned_labels(df, tmp_path / "missing" / "dir" / "x.csv")
    assert not (tmp_path / "missing").exists()


def test_cli_export_refuses_a_missing_folder_unless_mkdir(scan, tmp_path):
    out = tmp_path / "missing" / "dir" / "x.csv"
    r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(out)])
    assert r.exit_code == 1 and "does not exist" in r.output and "--mkdir" in r.output
    assert not (tmp_path / "missing").exists()
    r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(out), "--mkdir"])
    assert r.exit_code == 0, r.output
    assert len(pd.read_csv(out)) == len(scan.scores)


def test_resolve_image_raises_the_typed_unsafe_path(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    assert resolve_image(tmp_path, "a.png") == (tmp_path / "a.png").resolve()
    for bad in ["../etc/passwd", "/etc/passwd", "a\x00.png"]:
        with pytest.raises(UnsafePath):
            resolve_image(tmp_path, bad)


def test_decisions_survive_a_rescan_that_leaves_their_images_unscored(scan):
    """A re-scan in which decided images are no longer scored (their class became too small for
    the folds) still exports them with their decision: relabeled, dropped, kept as decided."""
    from fakescan import SIGNALS

    s = scan.scores
    relabeled, dropped, unsure, untouched = s.path[:4]
    new = next(c for c in scan.classes if c != s.given_label[0])
    conn = storage.connect(scan.db_path)
    review.record_decision(conn, relabeled, "relabel", label=new, reviewer="ann", note="really")
    review.record_decision(conn, dropped, "unusable", reviewer="ann")
    review.record_decision(conn, unsure, "unsure", reviewer="bob")
    # the re-scan: the first four images are now in a class too small for the folds
    rest = s.iloc[4:].reset_index(drop=True)
    storage.write_scan(
        conn, rest, classes=scan.classes, class_counts=[int((rest.given_label == c).sum()) for c in scan.classes],
        top_classes=[[] for _ in range(len(rest))], signal_columns=list(SIGNALS), meta={},
        unscored=pd.DataFrame({"path": s.path[:4], "given_label": s.given_label[:4],
                               "reason": "class too small", "readable": 1}))
    df = cleaned_labels(conn).set_index("path")
    assert df.label[relabeled] == new
    assert dropped not in df.index
    assert df.label[unsure] == s.given_label[2] and df.label[untouched] == s.given_label[3]
    full = cleaned_labels(conn, full=True, include_unusable=True).set_index("path")
    assert full.loc[relabeled, ["decision", "reviewer", "note"]].tolist() == ["relabel", "ann", "really"]
    assert full.loc[dropped, ["decision", "label"]].tolist() == ["unusable", ""]
    assert full.loc[unsure, "decision"] == "unsure"
    assert full.loc[untouched, ["decision", "note"]].tolist() == ["unscored", "class too small"]
    counts = export_summary(conn)
    assert (counts["n_dropped"], counts["n_relabeled"], counts["n_unscored"], counts["n_unsure"]) == (1, 1, 1, 1)


def test_export_names_the_labels_whose_folder_is_another(capsys, tmp_path):
    from labelaudit.cli import _report_copy
    from labelaudit.export import FolderCopy

    _report_copy(FolderCopy(dest=tmp_path, n_linked=3, missing=[], renamed={"a/b": "a_b__2", "cat": "cat__2"}),
                 to_stdout=False)
    out = capsys.readouterr().out
    assert "2 label(s) cannot be their own folder name" in out and "'a/b' -> a_b__2/" in out


def test_decisions_on_images_the_scan_no_longer_has_are_named_not_silently_dropped(scan, tmp_path):
    """A renamed or removed image's decision was orphaned with no word anywhere: the export says how many,
    the overview and /api/orphaned-decisions list them; the decisions on present images still apply."""
    from webapp_support import make_client

    decide_some(scan)
    conn = storage.connect(scan.db_path)
    gone = scan.scores.path[int(scan.flagged().sample_id.iloc[5])]
    review.record_decision(conn, gone, "relabel", label=XSS_CLASS, reviewer="ann")
    conn.execute("UPDATE samples SET path = 'renamed/' || path WHERE path = ?", (gone,))  # the file's new name
    conn.close()
    r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(tmp_path / "c.csv")])
    assert r.exit_code == 0 and "1 review decision(s) name images this scan does not have" in r.output, r.output
    assert pd.read_csv(tmp_path / "c.csv", keep_default_na=False).set_index("path").label["renamed/" + gone] \
        == scan.scores.given_label[scan.scores.path == gone].iloc[0]
    with make_client(scan.scan_dir) as c:
        listed = c.get("/api/orphaned-decisions").json()
        assert [(d["path"], d["action"], d["label"]) for d in listed] == [(gone, "relabel", XSS_CLASS)]
        html = c.get("/").text
        assert "Decisions on images this scan does not have" in html and gone in html
    conn = storage.connect(scan.db_path)
    conn.execute("UPDATE samples SET path = ? WHERE path = ?", (gone, "renamed/" + gone))
    assert review.orphaned_decisions(conn).empty  # found again: applied again
    conn.close()


def test_export_report_names_the_rows_the_scan_skipped_for_other_reasons(tmp_path):
    """A link out of the dataset or a hidden image (skipped as "other") left the export without a word."""
    from labelaudit.cli import _export_report
    from labelaudit.scandir import ScanDir

    counts = {"n_kept": 5, "n_relabeled": 0, "n_auto": 0, "n_dropped": 0, "n_reviewed": 0, "n_unscored": 0,
              "n_unreadable": 0, "n_missing_files": 0, "from_labels_csv": False, "n_skipped_other": 2}
    text = _export_report(counts, ScanDir(tmp_path))
    assert "2 other row(s) the scan skipped" in text and "skipped.csv" in text
    assert "other row" not in _export_report({**counts, "n_skipped_other": 0}, ScanDir(tmp_path))


def test_to_folder_copies_files_with_the_longest_names(tmp_path):
    """A 244-byte file name failed with 'File name too long' (the temporary name added 18 bytes), and a
    prefixed name past 255 bytes too: names are cut to 255 bytes, ending and uniqueness kept."""
    root = tmp_path / "data"
    long_name = "L" * 240 + ".png"  # 244 bytes: fits, but not with a temporary name's additions
    for folder in ("a", "b" * 30):
        (root / folder).mkdir(parents=True)
        (root / folder / long_name).write_bytes(folder.encode())
    (root / "a" / ("é" * 120 + ".png")).write_bytes(b"e")  # 244 bytes of two-byte characters
    df = pd.DataFrame({"path": [f"a/{long_name}", f"{'b' * 30}/{long_name}", "a/" + "é" * 120 + ".png"],
                       "label": ["x", "x", "x"]})
    mid = "a" + "é" * 126 + ".png"  # 257 bytes: the cut falls inside an "é"
    cut = export._fit_name(mid)  # 1 + 120 x 2 bytes of the name, "~" and 8 hex digits, ".png": 254 bytes
    assert cut.startswith("a" + "é" * 120 + "~") and cut.endswith(".png") and len(cut.encode()) == 254
    res = copy_to_folder(df, root, tmp_path / "out")
    names = sorted(p.name for p in (tmp_path / "out" / "x").iterdir())
    assert res.missing == [] and len(names) == 3 and long_name in names
    assert all(len(n.encode()) <= 255 and n.endswith(".png") for n in names)
    assert {(tmp_path / "out" / "x" / n).read_bytes() for n in names} == {b"a", b"b" * 30, b"e"}
    out = write_cleaned_labels(df, tmp_path / (long_name[:-4] + ".csv"))  # the CSV's temporary name too
    assert out.is_file()


def test_to_folder_keeps_labels_apart_that_macos_would_merge():
    """NFC and NFD spellings of one label are one folder on macOS (as Cat and cat are)."""
    import unicodedata

    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    folders = label_folders([nfc, nfd, "Cat", "cat"])
    assert len({unicodedata.normalize("NFC", f).casefold() for f in folders.values()}) == 4


def _read_only_folder(monkeypatch, folder):
    """Make ``folder`` behave as on a read-only file system, also for root: no write access, and SQLite
    cannot open its WAL database but immutable (it would need to create the -shm file)."""
    import sqlite3

    real_access, real_connect = os.access, sqlite3.connect
    inside = str(folder)

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and str(path).startswith(inside):
            return False
        return real_access(path, mode, *args, **kwargs)

    def connect(database, *args, **kwargs):
        text = str(database)
        if inside in text and "immutable=1" not in text:
            if kwargs.get("uri"):
                raise sqlite3.OperationalError("unable to open database file")
            raise sqlite3.OperationalError("attempt to write a readonly database")
        return real_connect(database, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(sqlite3, "connect", connect)


def test_a_read_only_scan_folder_exports_and_is_refused_by_the_review_app(scan, tmp_path, monkeypatch):
    """A read-only scan folder gave tracebacks (sqlite3.OperationalError), even for `export -o -`."""
    from labelaudit.errors import ReadOnlyScanDir
    from labelaudit.webapp import create_app

    ids = decide_some(scan)
    expected = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", "-"]).stdout
    _read_only_folder(monkeypatch, scan.scan_dir)
    r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", "-"])
    assert r.exit_code == 0 and r.stdout == expected and "Traceback" not in r.output, r.output
    assert scan.scores.path[ids[1]] not in r.stdout  # the decisions are read: the unusable one is dropped
    with pytest.raises(ReadOnlyScanDir, match="read-only"):
        create_app(scan.scan_dir)
    (scan.scan_dir / "labelaudit.db-wal").write_bytes(b"")  # a server running, or killed: its log may hold changes
    r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", "-"])
    assert r.exit_code == 1 and "copy the scan folder somewhere writable" in r.output, r.output


def test_the_csv_may_go_into_the_folder_copy(scan, tmp_path):
    """`-o dest/c.csv --to-folder dest` failed with "dest is not empty" after writing the CSV (and with --force
    counted the CSV as a file of an earlier export)."""
    dest = tmp_path / "dest"
    r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(dest / "c.csv"), "--mkdir",
                                  "--to-folder", str(dest)])
    assert r.exit_code == 0 and "not part of this export" not in r.output, r.output
    assert (dest / "c.csv").is_file() and sum(1 for p in dest.rglob("*.png")) == len(scan.scores)
    r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(dest / "c.csv"), "--force",
                                  "--to-folder", str(dest)])
    assert r.exit_code == 0 and "not part of this export" not in r.output, r.output
    # without --mkdir too: the folder the CSV goes into is the one the export makes (it worked before the
    # CSV's checks moved ahead of the copy; a folder below it that nothing makes still needs --mkdir)
    fresh = tmp_path / "fresh"
    r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(fresh / "c.csv"), "--to-folder", str(fresh)])
    assert r.exit_code == 0 and (fresh / "c.csv").is_file(), r.output
    deeper = tmp_path / "deeper"
    r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(deeper / "x" / "c.csv"),
                                  "--to-folder", str(deeper)])
    assert r.exit_code == 1 and "--mkdir" in r.output and not deeper.exists(), r.output
    # the CSV named as the copy folder itself, or as one of its label folders: refused before the copy
    label_folder = sorted(label_folders(scan.scores.given_label).values())[0]
    for csv, folder in ((tmp_path / "same", tmp_path / "same"), (tmp_path / "lab" / label_folder, tmp_path / "lab")):
        r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(csv), "--to-folder", str(folder)])
        assert r.exit_code == 1 and "label folders" in r.output and not folder.exists(), r.output
    # a copy that places no image (every file gone) still makes its folder, so the CSV goes in
    moved = scan.dataset_root.rename(tmp_path / "moved-away")
    empty = tmp_path / "empty"
    try:
        from labelaudit.export import cleaned_labels as cleaned
        conn = storage.connect(scan.db_path)
        df = cleaned(conn)
        conn.close()
        copied = copy_to_folder(df, scan.dataset_root, empty)
        assert empty.is_dir() and len(copied.missing) == len(df) and not any(empty.iterdir())
    finally:
        moved.rename(scan.dataset_root)


def test_a_second_export_into_the_same_folder_names_the_files_it_did_not_write(scan, tmp_path):
    """Re-exporting with --force after a relabel left the old file beside the new one without a word."""
    dest = tmp_path / "clean"
    args = ["export", str(scan.scan_dir), "-o", str(tmp_path / "l.csv"), "--to-folder", str(dest), "--force"]
    assert CliRunner().invoke(main, args).exit_code == 0
    ids = decide_some(scan)  # a relabel and an unusable among them
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0 and "3 file(s) in" in r.output and "not part of this export" in r.output, r.output  # 2 relabeled, 1 dropped
    res = copy_to_folder(pd.read_csv(tmp_path / "l.csv", keep_default_na=False), scan.dataset_root, dest, force=True)
    assert len(res.others) == 3 and scan.scores.path[ids[1]].split("/")[-1] in " ".join(res.others)


def test_an_accept_of_a_label_the_labels_no_longer_have_is_named(scan, tmp_path):
    """Accepted red, then the labels CSV said green: the export gave red counted as relabeled while the app
    showed "kept"; now the export report and the overview name it."""
    from webapp_support import make_client

    sid = int(scan.flagged().sample_id.iloc[0])
    path, given = scan.scores.path[sid], scan.scores.given_label[sid]
    other = next(c for c in scan.classes if c != given)
    conn = storage.connect(scan.db_path)
    review.record_decision(conn, path, "accept", label=given, reviewer="ann")
    assert review.accepted_labels_since_changed(conn).empty
    conn.execute("UPDATE samples SET given_label = ? WHERE path = ?", (other, path))  # a re-scan read another label
    assert review.accepted_labels_since_changed(conn).to_dict("records") == [
        {"path": path, "given_label": other, "label": given, "reviewer": "ann",
         "decided_at": review.accepted_labels_since_changed(conn).decided_at[0]}]
    conn.close()
    r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(tmp_path / "c.csv")])
    assert r.exit_code == 0 and "1 accepted label(s) are no longer the given label" in r.output, r.output
    with make_client(scan.scan_dir) as c:
        assert "Accepted labels that are no longer the given label" in c.get("/").text
        assert [d["path"] for d in c.get("/api/accepted-label-changes").json()] == [path]
    conn = storage.connect(scan.db_path)  # the image left the scored samples (its class too small now): still named
    conn.execute("INSERT INTO unscored SELECT path, given_label, 'class too small', 1 FROM samples WHERE path = ?",
                 (path,))
    conn.execute("DELETE FROM samples WHERE path = ?", (path,))
    assert review.accepted_labels_since_changed(conn).path.tolist() == [path]
    conn.close()


def test_cleaned_labels_read_one_state_of_the_database(scan, monkeypatch):
    """A re-scan committing between the query of the samples and that of the unscored images made an
    export drop or repeat images; the reads now share one snapshot."""
    import sqlite3

    original = export.unscored_with_decisions

    def commit_meanwhile(conn):
        other = sqlite3.connect(scan.db_path)
        with other:
            other.execute("INSERT INTO unscored (path, given_label, reason, readable) VALUES "
                          "('late/new.png', 'cat', 'class too small', 1)")
        other.close()
        return original(conn)

    monkeypatch.setattr(export, "unscored_with_decisions", commit_meanwhile)
    conn = storage.connect(scan.db_path)
    assert "late/new.png" not in set(cleaned_labels(conn).path)
    assert not conn.in_transaction
    monkeypatch.setattr(export, "unscored_with_decisions", original)
    assert "late/new.png" in set(cleaned_labels(conn).path)  # the next export sees it
    conn.close()


def test_cli_export_counts_are_those_of_the_csv_it_wrote(scan, tmp_path, monkeypatch):
    """The report's counts came from a second read, after decisions a running app committed meanwhile."""
    original = export.export_summary
    ids = [int(i) for i in scan.flagged().sample_id[:5]]

    def decide_meanwhile(conn, *args, **kwargs):
        other = storage.connect(scan.db_path)
        for i in ids:
            review.record_decision(other, scan.scores.path[i], "unusable", reviewer="bo")
        other.close()
        return original(conn, *args, **kwargs)

    monkeypatch.setattr(export, "export_summary", decide_meanwhile)
    out = tmp_path / "c.csv"
    r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert len(pd.read_csv(out)) == len(scan.scores)  # nothing dropped: the CSV's state had no decision
    assert f"{len(scan.scores):,} samples kept" in r.output and "0 dropped as unusable; 0 reviewed" in r.output, r.output


def test_a_database_another_process_holds_locked_is_one_line_not_a_traceback(scan, tmp_path):
    import sqlite3

    holder = sqlite3.connect(scan.db_path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE meta SET value = value")
    try:
        r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(tmp_path / "c.csv")])
        assert r.exit_code == 1 and "locked by another process" in r.output and "Traceback" not in r.output, r.output
        assert r.output.count("\n") <= 2
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", str(tmp_path / "c.csv")]).exit_code == 0


def test_auto_accept_above_nan_is_refused(scan):
    r = CliRunner().invoke(main, ["export", str(scan.scan_dir), "-o", "-", "--auto-accept-above", "nan"])
    assert r.exit_code == 2 and "nan" in r.output
