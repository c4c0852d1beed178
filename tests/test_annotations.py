"""Several annotators per image (issue 10): CSV parsing, consensus, annotator quality, the scan end to end."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from noisy_data import CLASSES, FAST, make_noisy_folder

from labelaudit import scan
from labelaudit.consensus import annotator_stats, estimate_consensus, majority_vote
from labelaudit.consensus.scoring import combine_consensus
from labelaudit.data.annotations import read_annotations
from labelaudit.errors import AnnotationsError, DatasetError, SettingsError
from labelaudit.scandir import ScanDir
from labelaudit.scandir import database as storage

# ------------------------------------------------------------------------ CSV parsing


@pytest.fixture
def images(tmp_path):
    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    for name in ("a.png", "b.png", "c.png"):
        (root / "img" / name).write_bytes(b"x")
    return root


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_long_form_is_read_with_one_to_n_annotations(images, tmp_path):
    csv = _write(tmp_path / "ann.csv", "path,annotator,label\nimg/a.png,ann,cat\nimg/a.png,bob,dog\n"
                                       "img\\b.png,bob,cat\nimg/c.png,cy,cat\nimg/a.png,cy,cat\n")
    ann = read_annotations(csv, images)
    assert ann.form == "long"
    assert ann.annotators == ["ann", "bob", "cy"]
    assert ann.paths == ["img/a.png", "img/b.png", "img/c.png"]
    votes = ann.votes(ann.paths, ["cat", "dog"])
    assert votes.tolist() == [[0, 1, 0], [-1, 0, -1], [-1, -1, 0]]
    assert ann.votes(ann.paths, ["cat"])[0].tolist() == [0, -2, 0]  # a label of an unscanned class


def test_wide_form_empty_cells_are_missing(images, tmp_path):
    csv = _write(tmp_path / "ann.csv", "path,ann,bob,cy\nimg/a.png,cat,dog,cat\nimg/b.png,,cat,\nimg/c.png,cat,, \n")
    ann = read_annotations(csv, images)
    assert ann.form == "wide" and ann.annotators == ["ann", "bob", "cy"]
    assert ann.votes(ann.paths, ["cat", "dog"]).tolist() == [[0, 1, 0], [-1, 0, -1], [0, -1, -1]]
    assert ann.labels_of(["img/b.png"]) == [[("bob", "cat")]]


def test_long_form_with_extra_columns_ignores_them(images, tmp_path):
    """path,annotator,label,timestamp crashed in pandas (melt: value_name cannot match a column)."""
    csv = _write(tmp_path / "ann.csv", "path,annotator,label,timestamp\nimg/a.png,ann,cat,2026-01-01\n"
                                       "img/a.png,bob,dog,2026-01-02\nimg/b.png,ann,cat,\n")
    ann = read_annotations(csv, images)
    assert ann.form == "long" and ann.annotators == ["ann", "bob"]
    assert ann.votes(ann.paths, ["cat", "dog"]).tolist() == [[0, 1], [0, -1]]


@pytest.mark.parametrize("names", [("line", "bob"), ("label", "path2"), ("annotator", "x")])
def test_wide_form_annotators_may_have_any_name(images, tmp_path, names):
    """An annotator column called "line" was overwritten by the reader's own line numbers (its votes lost),
    one called "label" crashed."""
    first, second = names
    csv = _write(tmp_path / "ann.csv", f"path,{first},{second}\nimg/a.png,cat,dog\nimg/b.png,dog,\n")
    ann = read_annotations(csv, images)
    assert ann.form == "wide" and ann.annotators == [first, second]
    assert ann.votes(ann.paths, ["cat", "dog"]).tolist() == [[0, 1], [1, -1]]


@pytest.mark.parametrize("text, message", [
    ("path,annotator,label\nimg/a.png,ann,cat\nimg/nope.png,ann,dog\n", "not files in"),
    ("path,annotator,label\nimg/a.png,ann,cat\nimg/b.png,bob,\n", "empty label on line(s) 3"),
    ("path,annotator,label\nimg/a.png,,cat\n", "empty annotator on line(s) 2"),
    ("path,annotator,label\nimg/a.png,ann,cat\nimg/b.png,ann,cat\nimg/a.png,ann,dog\n",
     "annotator 'ann' labels 'img/a.png' more than once (lines 2, 4: 'cat', 'dog')"),
    ("path,ann,bob\nimg/a.png,cat,dog\nimg/a.png,cat,cat\n", "is on more than one row (lines 2, 3)"),
    ("path,worker,answer\nimg/a.png,w1,cat\nimg/a.png,w2,dog\n", "name the columns path,annotator,label"),
    ("path,annotator,label,bob\nimg/a.png,cat,dog,cat\nimg/b.png,dog,dog,cat\n", "is ambiguous"),
    ("path,ann,bob\nimg/a.png,cat,dog\nimg/b.png,,\n", "no label at all on line(s) 3"),
    ("path,annotator,label\n../x.png,ann,cat\n", "escapes the dataset root"),
    ("file,annotator,label\nimg/a.png,ann,cat\n", "needs a 'path' column"),
    ("path\nimg/a.png\n", "no annotator column"),
    ("path,annotator,label\n", "no rows"),
    ("", "is empty"),
])
def test_csv_errors_are_typed_and_name_the_problem(images, tmp_path, text, message):
    csv = _write(tmp_path / "ann.csv", text)
    with pytest.raises(AnnotationsError) as err:
        read_annotations(csv, images)
    assert message in str(err.value)
    assert isinstance(err.value, DatasetError)  # the CLI's user-error handling covers it


def test_csv_parse_error_is_one_line(images, tmp_path):
    csv = _write(tmp_path / "ann.csv", "path,annotator,label\nimg/a.png,ann,cat\nimg/a.png,bob,cat,extra\n")
    with pytest.raises(AnnotationsError, match="cannot be parsed") as err:
        read_annotations(csv, images)
    assert "\n" not in str(err.value) and str(err.value) == str(err.value).strip(), repr(str(err.value))


def test_missing_csv_is_an_annotations_error(images, tmp_path):
    with pytest.raises(AnnotationsError, match="not found"):
        read_annotations(tmp_path / "none.csv", images)


# ------------------------------------------------------------------------ consensus (arrays)


def _crowd(n=600, c=4, accuracies=(0.9, 0.85, 0.35), seed=0, model_acc=0.7):
    """Votes of annotators with known accuracies, model probabilities, truth."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(c, size=n)
    votes = np.empty((n, len(accuracies)), np.int64)
    for a, acc in enumerate(accuracies):
        wrong = rng.random(n) > acc
        votes[:, a] = np.where(wrong, (truth + rng.integers(1, c, n)) % c, truth)
    logits = rng.normal(0, 1, (n, c))
    right = rng.random(n) < model_acc
    logits[np.arange(n), np.where(right, truth, rng.integers(c, size=n))] += 2.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return votes, probs, truth


def _annotations(columns: dict[str, list[str]]):
    from labelaudit.data.annotations import Annotations

    n = len(next(iter(columns.values())))
    table = pd.concat([pd.DataFrame({"path": [f"img{i}.png" for i in range(n)], "annotator": name, "label": labels})
                       for name, labels in columns.items()], ignore_index=True)
    return Annotations(table=table, annotators=list(columns), form="wide")


def test_a_metadata_column_read_as_an_annotator_gets_a_notice():
    """A wide CSV's `source` or `id` column was taken as an annotator without a word, and could add a class."""
    from labelaudit.errors import UnsharedAnnotatorLabels
    from labelaudit.scanner import _warn_about_annotation_labels

    people = {"ann": ["cat", "dog", "cat", "dog"], "bo": ["cat", "cat", "cat", "dog"]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_about_annotation_labels(_annotations(people))  # real annotators: no notice
        _warn_about_annotation_labels(_annotations({**people, "cy": ["dog", "dog", "dog", "dog"]}))
    for extra in ({"source": ["web"] * 4}, {"id": ["0", "1", "2", "3"]}):
        with pytest.warns(UnsharedAnnotatorLabels, match=f"'{next(iter(extra))}'"):
            _warn_about_annotation_labels(_annotations({**people, **extra}))


def test_a_minority_vote_spelt_in_another_case_gets_the_look_alike_notice():
    from labelaudit.errors import LookAlikeClasses
    from labelaudit.scanner import _warn_about_annotation_labels

    with pytest.warns(LookAlikeClasses, match="'Cat' \\(1\\) / 'cat' \\(4\\)"):
        _warn_about_annotation_labels(_annotations({"ann": ["cat", "dog", "cat"], "bo": ["cat", "Cat", "cat"]}))


def test_planted_bad_annotator_is_found_and_ranked_by_true_accuracy():
    accuracies = (0.92, 0.8, 0.65, 0.35)
    votes, probs, truth = _crowd(accuracies=accuracies)
    result = estimate_consensus(votes, probs)
    stats = annotator_stats(votes, result)
    quality = [s["quality"] for s in stats]
    assert np.argsort(quality).tolist() == np.argsort(accuracies).tolist()  # same order as the truth
    assert quality[3] < 0.5 < quality[0]  # the bad annotator is recognisably bad
    assert abs(quality[0] - 0.92) < 0.08
    assert (result.labels == truth).mean() > (majority_vote(votes, 4) == truth).mean()


def test_consensus_beats_majority_vote_and_reports_figures():
    votes, probs, truth = _crowd(n=800, accuracies=(0.8, 0.8, 0.8), seed=2)
    result = estimate_consensus(votes, probs)
    assert (result.labels == truth).mean() > (majority_vote(votes, 4) == truth).mean()
    assert result.posterior.shape == (800, 4) and np.allclose(result.posterior.sum(1), 1)
    assert result.n_annotations.tolist() == [3] * 800
    unanimous = (votes == votes[:, :1]).all(1)
    assert (result.agreement[unanimous & (result.labels == votes[:, 0])] == 1).all()
    wrong = result.labels != truth
    assert result.quality[wrong].mean() < result.quality[~wrong].mean()


def test_unanimous_images_never_rank_ahead_of_disputed_ones_with_the_same_model_evidence():
    votes, probs, _ = _crowd(n=400, seed=1)
    # pairs of images with identical model probabilities: one unanimous, one disputed
    probe = np.tile(np.array([[0.55, 0.25, 0.1, 0.1], [0.3, 0.4, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25]]), (1, 1))
    unanimous = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2]])
    disputed = np.array([[0, 0, 1], [1, 2, 1], [2, 3, 2]])
    all_votes = np.vstack([votes, unanimous, disputed])
    all_probs = np.vstack([probs, probe, probe])
    result = estimate_consensus(all_votes, all_probs)
    table = pd.DataFrame({"consensus_quality": result.quality, "agreement": result.agreement})
    score = combine_consensus(table, ["consensus_quality"])
    u, d = score[400:403], score[403:406]
    assert (result.labels[400:403] == [0, 1, 2]).all() and (result.labels[403:406] == [0, 1, 2]).all()
    assert (u < d).all()


def test_combining_no_available_signal_is_a_scan_error_with_the_names():
    from labelaudit.errors import ScanError

    table = pd.DataFrame({"consensus_quality": [0.9, 0.1], "agreement": [1.0, 0.5]})
    with pytest.raises(ScanError, match="knn_agreement"):
        combine_consensus(table, ["knn_agreement"])
    both = combine_consensus(table, ["consensus_quality", "agreement", "knn_agreement"])  # absent ones left out
    assert both[1] > both[0]


def _folds(probs):
    """Two FoldResults holding ``probs`` out (only the held-out record: no training needed)."""
    from labelaudit.folds.records import FoldResult

    idx = np.arange(len(probs))
    halves = (idx[::2], idx[1::2])
    return [FoldResult(fold=k, train_idx=halves[1 - k], holdout_idx=h, holdout_accuracy=0.0,
                       records={"holdout_probs": probs[h].astype(np.float32)}) for k, h in enumerate(halves)]


def test_scan_scoring_flags_disputed_before_unanimous_images_with_the_same_model_evidence():
    from labelaudit.consensus.scoring import score_consensus

    votes, probs, truth = _crowd(n=300, seed=3)
    rng = np.random.default_rng(0)
    probe = rng.dirichlet(np.ones(4), 40)
    top = probe.argmax(1)
    unanimous = np.repeat(top[:, None], 3, axis=1)
    disputed = unanimous.copy()
    disputed[:, 2] = (top + 1) % 4
    all_votes, all_probs = np.vstack([votes, unanimous, disputed]), np.vstack([probs, probe, probe])
    names = [f"c{i}" for i in range(4)]
    found = score_consensus(_folds(all_probs), majority_vote(all_votes, 4), all_votes,
                            [f"img{i}.png" for i in range(len(all_votes))], names, ["a", "b", "c"],
                            ("label_quality", "flip_loss_in"))
    s = found.scores
    u, d = s.iloc[300:340], s.iloc[340:380]
    assert (u.mislabel_score.to_numpy() < d.mislabel_score.to_numpy()).all()
    assert not (u.flagged.to_numpy() & ~d.flagged.to_numpy()).any()  # never flagged ahead of its disputed twin
    assert (u.agreement == 1).all() and (d.agreement < 1).all()
    assert found.summary["score_components"] == ["consensus_quality"]  # no flip records here
    assert 0 < s.flagged.sum() < len(s)


def test_majority_vote_breaks_ties_deterministically():
    votes = np.array([[0, 1, -1], [1, 0, -1], [2, 2, 1], [-1, -1, -2]])
    # class 1 has the most votes overall: it wins both ties, whatever the column order
    assert majority_vote(votes, 3).tolist() == [1, 1, 2, -1]


# ------------------------------------------------------------------------ scan end to end

#: Annotator name -> accuracy.
TEAM = {"ana": 0.95, "ben": 0.9, "cy": 0.4}


def _annotate(truth: pd.DataFrame, seed=0, max_per_image=3):
    """Long-form annotations of ``truth.path``: each image gets 1..max_per_image of TEAM."""
    rng = np.random.default_rng(seed)
    rows = []
    for path, true in zip(truth.path, truth.true_label):
        k = rng.integers(1, max_per_image + 1)
        for name in rng.permutation(list(TEAM))[:k]:
            wrong = rng.random() > TEAM[name]
            label = CLASSES[(CLASSES.index(true) + rng.integers(1, len(CLASSES))) % len(CLASSES)] if wrong else true
            rows.append((path, name, label))
    return pd.DataFrame(rows, columns=["path", "annotator", "label"])


@pytest.fixture(scope="module")
def crowd_scan(tmp_path_factory):
    base = tmp_path_factory.mktemp("crowd")
    folder = make_noisy_folder(base / "data", n_per_class=30, noise_rate=0.0, layout="csv", seed=4)
    ann = _annotate(folder.truth, seed=1)
    ann.to_csv(base / "annotations.csv", index=False)
    scores = scan(folder.root, annotations_csv=base / "annotations.csv", out=base / "scan", progress=False, **FAST)
    return scores, folder, ann, base / "scan"


def test_scan_with_annotations_writes_consensus_columns_and_annotators(crowd_scan):
    scores, folder, ann, out = crowd_scan
    for column in ("consensus_label", "n_annotations", "agreement", "consensus_quality"):
        assert column in scores.columns
    assert (scores.given_label == scores.consensus_label).all()
    counts = ann.groupby("path").size()
    assert (scores.n_annotations.to_numpy() == counts.loc[scores.path].to_numpy()).all()
    assert scores.agreement.between(0, 1).all() and scores.consensus_quality.between(0, 1).all()
    files = ScanDir(out)
    annotators = pd.read_csv(files.annotators)
    assert list(annotators.columns) == ["annotator", "n_labels", "agreement", "quality", "most_confused"]
    by_name = annotators.set_index("annotator")
    assert by_name.loc["cy", "quality"] < min(by_name.loc["ana", "quality"], by_name.loc["ben", "quality"])
    assert by_name.n_labels.sum() == len(ann)
    summary = scores.attrs["summary"]["consensus"]
    assert summary["n_annotators"] == 3 and summary["n_annotations"] == len(ann)
    # the scan's count is the consensus's (what it flags), not a tempered confident-learning count
    whole = scores.attrs["summary"]
    assert whole["n_estimated_label_issues"] == summary["estimated_wrong_consensus"] == whole["n_flagged"]
    assert whole["count_temperature"] is None
    manifest = files.read_manifest()
    assert manifest.signals["consensus_quality"]["direction"] == -1
    conn = storage.connect(files.database, read_only=True)
    try:
        assert conn.execute("SELECT COUNT(*) FROM votes").fetchone()[0] == len(ann)
        assert conn.execute("SELECT COUNT(*) FROM annotators").fetchone()[0] == 3
    finally:
        conn.close()


def test_consensus_is_more_accurate_than_the_majority_vote(crowd_scan):
    scores, folder, ann, out = crowd_scan
    truth = folder.truth.set_index("path").loc[scores.path, "true_label"].to_numpy()
    provisional = pd.read_csv(ScanDir(out).provisional_labels).set_index("path").loc[scores.path, "label"]
    assert (scores.consensus_label.to_numpy() == truth).mean() >= (provisional.to_numpy() == truth).mean()
    wrong = scores.consensus_label.to_numpy() != truth
    if wrong.any():  # the wrong consensus labels score higher than the right ones on average
        assert scores.mislabel_score[wrong].mean() > scores.mislabel_score[~wrong].mean()


def test_one_annotation_per_image_reduces_to_the_single_label_scan(tmp_path):
    folder = make_noisy_folder(tmp_path / "data", n_per_class=20, noise_rate=0.15, layout="csv", seed=5)
    labels = pd.read_csv(folder.root / "labels.csv")
    labels.assign(annotator="solo")[["path", "annotator", "label"]].to_csv(tmp_path / "ann.csv", index=False)
    single = scan(folder.root, labels_csv=folder.root / "labels.csv", out=tmp_path / "single", progress=False, **FAST)
    multi = scan(folder.root, annotations_csv=tmp_path / "ann.csv", out=tmp_path / "multi", progress=False, **FAST)
    for column in single.columns:
        assert np.array_equal(single[column].to_numpy(), multi[column].to_numpy()), column
    assert (multi.n_annotations == 1).all() and (multi.agreement == 1).all()
    assert np.allclose(multi.consensus_quality, single.label_quality)
    # and so is its count: the tempered confident-learning one, with its temperature
    for key in ("n_estimated_label_issues", "count_temperature", "n_flagged"):
        assert multi.attrs["summary"][key] == single.attrs["summary"][key] is not None, key
    assert multi.attrs["summary"]["consensus"]["one_annotation_per_image"] is True
    # a re-scan of the same folder with plain labels (the folds resume) leaves no annotations behind
    again = scan(folder.root, labels_csv=folder.root / "labels.csv", out=tmp_path / "multi", progress=False, **FAST)
    assert "consensus_label" not in again.columns and again.attrs["summary"]["folds_resumed"] == [0, 1, 2]
    files = ScanDir(tmp_path / "multi")
    assert not files.annotators.exists() and not files.provisional_labels.exists()
    conn = storage.connect(files.database, read_only=True)
    try:
        assert conn.execute("SELECT COUNT(*) FROM votes").fetchone()[0] == 0
    finally:
        conn.close()


def test_labels_and_annotations_together_are_refused(tmp_path):
    folder = make_noisy_folder(tmp_path / "data", n_per_class=6, layout="csv")
    labels = pd.read_csv(folder.root / "labels.csv").assign(annotator="a")
    labels.to_csv(tmp_path / "ann.csv", index=False)
    with pytest.raises(SettingsError, match="not both"):
        scan(folder.root, labels_csv=folder.root / "labels.csv", annotations_csv=tmp_path / "ann.csv",
             out=tmp_path / "scan", progress=False, **FAST)


def test_a_failed_annotations_scan_leaves_no_majority_vote_in_a_folder_that_was_there(tmp_path):
    """provisional_labels.csv, written before the data is loaded, stayed in a folder the user had made."""
    from labelaudit.errors import ScanError

    folder = make_noisy_folder(tmp_path / "data", n_per_class=6, layout="csv")
    one_class = pd.read_csv(folder.root / "labels.csv").assign(annotator="a", label="only")  # cannot cross-validate
    one_class.to_csv(tmp_path / "ann.csv", index=False)
    out = tmp_path / "mine"
    out.mkdir()
    with pytest.raises(ScanError, match="at least 2 classes"):
        scan(folder.root, annotations_csv=tmp_path / "ann.csv", out=out, progress=False, **FAST)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) in ([], ["cache"])


# ------------------------------------------------------------------------ command line


def test_cli_scan_with_wide_annotations_and_full_export(tmp_path):
    from click.testing import CliRunner

    from labelaudit.cli import main

    folder = make_noisy_folder(tmp_path / "data", n_per_class=12, noise_rate=0.0, layout="csv", seed=6)
    long = _annotate(folder.truth, seed=2)
    wide = long.pivot(index="path", columns="annotator", values="label").reset_index().fillna("")
    wide.to_csv(tmp_path / "wide.csv", index=False)
    args = [f"--{k.replace('_', '-')}={v}" for k, v in FAST.items()]
    out = tmp_path / "scan"
    result = CliRunner().invoke(main, ["scan", str(folder.root), "--annotations", str(tmp_path / "wide.csv"),
                                       "--out", str(out), "-q", *args])
    assert result.exit_code == 0, result.output
    assert f"Annotations: {len(long)} by 3 annotators" in result.output and "annotators.csv" in result.output
    assert "the consensus's expected wrong labels" in result.output and "confident learning" not in result.output
    exported = CliRunner().invoke(main, ["export", str(out), "--full", "-o", "-"])
    assert exported.exit_code == 0, exported.output
    header = exported.stdout.splitlines()[0].split(",")
    assert header[:2] == ["path", "label"] and header[-4:] == ["consensus_label", "n_annotations", "agreement", "votes"]
    manifest = json.loads((out / "scan.json").read_text())
    assert manifest["annotations_csv"] == str((tmp_path / "wide.csv").resolve()) and manifest["labels_csv"] is None
    over_it = CliRunner().invoke(main, ["export", str(out), "-o", str(tmp_path / "wide.csv"), "--force"])
    assert over_it.exit_code == 1 and "wide.csv" in over_it.output  # the input it read is never overwritten


def test_cli_reports_a_bad_annotations_csv_in_one_line(tmp_path):
    from click.testing import CliRunner

    from labelaudit.cli import main

    folder = make_noisy_folder(tmp_path / "data", n_per_class=6, layout="csv")
    (tmp_path / "ann.csv").write_text("path,annotator,label\nimages/nope.png,ann,disc\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["scan", str(folder.root), "--annotations", str(tmp_path / "ann.csv"),
                                       "--out", str(tmp_path / "scan"), "-q"])
    assert result.exit_code != 0
    assert "'images/nope.png' (line 2)" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "scan").exists()  # nothing left behind
