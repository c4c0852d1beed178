"""Bring your own model: scans from embeddings or predicted probabilities (issue 12).

Known answers on generated embeddings: separable Gaussians with planted label flips, whose
flips must rank on top; the CLI's one-line error for every kind of mismatch, raised
before any work (no scan directory is left behind).
"""

import json

import numpy as np
import pandas as pd
import pytest
from byom_data import make_byom_data
from click.testing import CliRunner

import labelaudit
from labelaudit.cli import main
from labelaudit.errors import InputArrayError, SettingsError, WeakModelsWarning
from labelaudit.folds.heads import HEAD_KINDS, HeadSettings, select_head, train_heads
from labelaudit.signals.knn import knn_agreement, nearest_neighbours

FAST = {"folds": 3}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_byom_data(tmp_path_factory.mktemp("byom") / "data")


@pytest.fixture(scope="module")
def feature_scan(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("byom-scan") / "scan"
    scores = labelaudit.scan(data.root, out=out, features=data.features, index=data.index, progress=False, **FAST)
    return scores, out


def _top(scores: pd.DataFrame, n: int) -> set[str]:
    return set(scores.sort_values("mislabel_score", ascending=False).path.head(n))


# ------------------------------------------------------------------ known answers


def test_planted_flips_rank_on_top_from_features(data, feature_scan):
    scores, out = feature_scan
    assert _top(scores, len(data.flipped)) == data.flipped
    assert {"label_quality", "aum", "learned_epoch", "knn_agreement"} <= set(scores.columns)
    assert not any(c.startswith("flip_") for c in scores.columns)  # no mirrored embeddings: absent, not faked
    flagged = set(scores.path[scores.flagged])
    assert flagged <= data.flipped and len(flagged) >= len(data.flipped) / 2  # the count is confident learning's
    manifest = json.loads((out / "scan.json").read_text())
    assert manifest["inputs"]["mode"] == "features" and manifest["inputs"]["head"]["kind"] in HEAD_KINDS
    assert manifest["inputs"]["index"] == str(data.index)
    assert manifest["score_components"] == ["label_quality", "aum"]
    embeddings = np.load(out / "embeddings.npy")
    assert embeddings.shape == data.features.shape
    np.testing.assert_allclose(np.linalg.norm(embeddings.astype(float), axis=1), 1, atol=1e-2)


def test_rows_follow_the_index(data, feature_scan):
    scores, _ = feature_scan
    assert list(scores.path) == sorted(data.paths)  # scores.csv in the scan's file order
    truth = dict(zip(data.paths, data.true_labels))
    kept = ~scores.flagged
    assert (scores.suggested_label[kept] == scores.path[kept].map(lambda p: f"c{truth[p]}")).mean() > 0.95


def test_sorted_file_order_without_index_and_mirrored_embeddings(data, tmp_path):
    rows = data.sorted_rows()
    scores = labelaudit.scan(data.root, out=tmp_path / "scan", features=data.features[rows],
                             features_flip=data.features_flip[rows], progress=False, **FAST)
    assert _top(scores, len(data.flipped)) == data.flipped
    assert {"flip_loss_in", "flip_agree_oos", "oos_flip_self_confidence"} <= set(scores.columns)


def test_pred_probs_alone_and_with_features(data, tmp_path):
    probs = data.probabilities()
    alone = labelaudit.scan(data.root, out=tmp_path / "alone", pred_probs=probs, index=data.index, progress=False)
    assert _top(alone, len(data.flipped)) == data.flipped
    assert not {"aum", "mean_loss", "flip_loss_in", "knn_agreement"} & set(alone.columns)  # nothing trained
    assert json.loads((tmp_path / "alone" / "scan.json").read_text())["inputs"]["mode"] == "pred_probs"
    both = labelaudit.scan(data.root, out=tmp_path / "both", pred_probs=probs, features=data.features,
                           index=data.index, progress=False)
    assert "knn_agreement" in both.columns and "aum" not in both.columns
    assert _top(both, len(data.flipped)) == data.flipped
    np.testing.assert_allclose(np.load(tmp_path / "both" / "pred_probs.npy"),
                               probs[data.sorted_rows()], atol=1e-6)


def test_a_rescan_from_probabilities_leaves_no_embeddings_of_the_earlier_scan(data, tmp_path):
    """A --pred-probs scan writes no embeddings: one into a folder scanned from features left that scan's
    embeddings.npy (and the app's map of it) in place, so the review app showed their neighbours and map
    for the new scan's rows."""
    out = tmp_path / "scan"
    labelaudit.scan(data.root, out=out, features=data.features, index=data.index, progress=False, **FAST)
    assert (out / "embeddings.npy").is_file()
    (out / "map_2d.npz").write_bytes(b"a map of those embeddings")
    labelaudit.scan(data.root, out=out, pred_probs=data.probabilities(), index=data.index, progress=False)
    assert not (out / "embeddings.npy").exists() and not (out / "map_2d.npz").exists()


def test_probabilities_within_the_tolerance_are_taken(data, tmp_path):
    """Rows summing to exactly 0.999 were refused: 1 - 0.999 > 1e-3 in floats (float32/16 rounding too)."""
    probs = data.probabilities()
    for dtype in (np.float64, np.float32, np.float16):
        scores = labelaudit.scan(data.root, out=tmp_path / f"scan-{dtype.__name__}", index=data.index,
                                 pred_probs=(probs * 0.999).astype(dtype), progress=False)
        assert len(scores) == len(data.paths)


def test_parquet_with_its_own_paths(data, tmp_path):
    pytest.importorskip("pyarrow")
    table = pd.DataFrame({"path": data.paths, "embedding": list(data.features)})
    table.to_parquet(tmp_path / "emb.parquet")
    scores = labelaudit.scan(data.root, out=tmp_path / "scan", features=tmp_path / "emb.parquet", progress=False,
                             **FAST)
    assert _top(scores, len(data.flipped)) == data.flipped


def test_the_mlp_is_kept_when_the_classes_are_not_linearly_separable():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(600, 2)).astype(np.float32)
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(np.int64)  # XOR: no linear head can fit it
    run = train_heads(x, y, np.arange(600) % 3, 2, settings=HeadSettings(epochs=20, min_steps=16))
    assert run.kind == "mlp" and run.holdout_losses["mlp"] < run.holdout_losses["linear"] < 0.8
    assert select_head({"linear": 0.5, "mlp": 0.5}) == "linear"  # a tie keeps the simpler head
    assert run.results[0].records["train_margins"].shape == (20, 400)


def test_nearest_neighbours_exclude_the_sample_itself():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    neighbours, similarity = nearest_neighbours(x, 5)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    np.testing.assert_array_equal(neighbours, np.argsort(-sims, axis=1)[:, :5])
    np.testing.assert_allclose(similarity, np.sort(sims, axis=1)[:, ::-1][:, :5], atol=1e-5)
    sub, _ = nearest_neighbours(x, 5, reference=50, seed=3)  # a reference set of 50 rows
    assert sub.shape == (300, 5) and len(np.unique(sub)) <= 50 and not (sub == np.arange(300)[:, None]).any()
    labels = np.array([0, 0, 1])
    agreement = knn_agreement(np.array([[1, 2], [0, 2], [0, 1]]), np.ones((3, 2), np.float32), labels)
    np.testing.assert_allclose(agreement, [0.5, 0.5, 0.0], atol=1e-5)


def test_cli_summary_speaks_of_samples_and_embeddings(data, tmp_path):
    noise = _npy(tmp_path, "noise.npy", np.random.default_rng(0).normal(size=data.features.shape).astype(np.float32))
    result = CliRunner().invoke(main, ["scan", str(data.root), "--out", str(tmp_path / "scan"), "-q", "--folds", "3",
                                       "--features", noise, "--index", str(data.index)])
    assert result.exit_code == 0, result.output
    assert f"Scanned {len(data.paths)} samples in 4 classes" in result.output
    assert "barely better than chance" in result.output and "--features" in result.output
    assert "--epochs" not in result.output  # CNN options do not apply to heads


def test_probabilities_in_another_column_order_are_named_as_the_likely_cause(data, tmp_path):
    """Columns in another order gave 0% accuracy and the advice to give better embeddings (--features)."""
    probs = data.probabilities()
    shifted = _npy(tmp_path, "shifted.npy", np.roll(probs, 1, axis=1))  # every column one class off
    result = CliRunner().invoke(main, ["scan", str(data.root), "--out", str(tmp_path / "scan"), "-q",
                                       "--pred-probs", shifted, "--index", str(data.index)])
    assert result.exit_code == 0, result.output
    assert "check that their columns follow the sorted class names" in result.output, result.output
    assert "--features" not in result.output.split("barely better than chance")[1]
    with pytest.warns(WeakModelsWarning, match="sorted class names"):  # the Python API says it too
        labelaudit.scan(data.root, out=tmp_path / "api", pred_probs=np.roll(probs, 1, axis=1), index=data.index,
                        progress=False)


# ------------------------------------------------------------------ mismatches


def _npy(tmp_path, name, array):
    path = tmp_path / name
    np.save(path, array)
    return str(path)


def _mismatch_cases(data, tmp_path):
    """(arguments, text the one-line error holds) for every kind of mismatch."""
    f, n = data.features, len(data.paths)
    good = _npy(tmp_path, "good.npy", f)
    nan, inf = f.copy(), f.copy()
    nan[5, 2], inf[7, 0] = np.nan, np.inf
    probs = data.probabilities()
    bad_index = tmp_path / "bad-index.csv"
    pd.DataFrame({"path": ["c0/nope.txt", *data.paths[1:]]}).to_csv(bad_index, index=False)
    twice = tmp_path / "twice.csv"
    pd.DataFrame({"path": [data.paths[1], *data.paths[1:]]}).to_csv(twice, index=False)
    short = tmp_path / "short.csv"
    pd.DataFrame({"path": data.paths[:-1]}).to_csv(short, index=False)
    no_path = tmp_path / "no-path.csv"
    pd.DataFrame({"file": data.paths}).to_csv(no_path, index=False)
    (tmp_path / "emb.txt").write_text("1,2\n")
    return [
        (["--features", _npy(tmp_path, "short.npy", f[:-1])], f"has {n - 1} rows but"),          # count, no index
        (["--features", good, "--index", str(short)], f"--index ({short}) lists {n - 1} paths"),  # count vs index
        (["--features", _npy(tmp_path, "s2.npy", f[:-1]), "--index", str(short)], "1 listed file(s) have no row"),
        (["--features", good, "--index", str(bad_index)], "name no listed file"),                 # unknown path
        (["--features", good, "--index", str(twice)], "names 2 rows"),                            # repeated path
        (["--features", _npy(tmp_path, "nan.npy", nan), "--index", str(data.index)], "row(s) 5)"),
        (["--features", _npy(tmp_path, "inf.npy", inf), "--index", str(data.index)], "hold NaN or inf"),
        (["--features", _npy(tmp_path, "int.npy", f.astype(np.int64))], "dtype int64 is not floating point"),
        (["--features", _npy(tmp_path, "flat.npy", f[:, 0])], f"shape ({n},); expected a 2-D array"),
        (["--features", good, "--features-flip", _npy(tmp_path, "fl.npy", f[:, :3])], "must match row for row"),
        (["--features-flip", good], "--features-flip needs --features (the embeddings"),  # not "or --pred-probs"
        (["--index", str(data.index)], "--index needs --features or --pred-probs"),
        (["--index", str(data.index), "--folds", "4"], "--index needs --features or --pred-probs"),  # not "folds"
        (["--pred-probs", _npy(tmp_path, "p3.npy", probs[:, :3] / probs[:, :3].sum(1, keepdims=True)),
          "--index", str(data.index)], "has 3 columns but the dataset has 4 classes"),
        (["--pred-probs", _npy(tmp_path, "p2.npy", probs * 2)], "probabilities lie in [0, 1]"),
        (["--pred-probs", _npy(tmp_path, "p5.npy", probs * 0.5)], "do not sum to 1 within 0.001"),
        (["--pred-probs", _npy(tmp_path, "p6.npy", probs * 0.998)], "renormalise: probs / probs.sum(axis=1"),
        (["--pred-probs", good, "--features-flip", good, "--features", good], "no use with --pred-probs"),
        (["--features", str(tmp_path / "missing.npy")], "--features: file not found"),
        (["--features", str(tmp_path / "emb.txt")], "neither a .npy nor a .parquet file"),
        (["--features", good, "--index", str(no_path)], "needs a header with a 'path' column"),
        (["--features", good, "--features-flip", good, "--no-flip"], "leave one out"),
        (["--features", good, "--executor", "ray"], "drop --executor"),
        (["--features", good, "--executor", "threads"], "drop --executor"),
        (["--features", good, "--epochs", "4", "--width", "8"], "setting(s) epochs=4, width=8 not used"),
        (["--features", good, "--image-size", "64"], "image_size=64 not used by a scan from --features"),
        (["--pred-probs", _npy(tmp_path, "pf.npy", probs), "--folds", "7"], "folds=7 not used"),
        (["--pred-probs", _npy(tmp_path, "pt.npy", np.ascontiguousarray(probs.T))], "looks transposed"),
    ]


def test_every_mismatch_is_a_one_line_error_before_any_work(data, tmp_path):
    for args, message in _mismatch_cases(data, tmp_path):
        out = tmp_path / "never"
        result = CliRunner().invoke(main, ["scan", str(data.root), "--out", str(out), "-q", *args])
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output and "Traceback" not in result.output, (args, result.output)
        assert not out.exists(), args  # nothing was started


def test_python_lists_and_an_index_of_paths_are_taken_as_arrays(data, feature_scan, tmp_path):
    """features= a list of lists and index= a list / Series / DataFrame of paths raised TypeError."""
    scores, _ = feature_scan
    paths = pd.read_csv(data.index).path
    for index in (list(paths), paths, pd.DataFrame({"path": paths})):
        again = labelaudit.scan(data.root, out=tmp_path / "lists", features=data.features.tolist(), index=index,
                                progress=False, **FAST)
        pd.testing.assert_frame_equal(again.reset_index(drop=True), scores.reset_index(drop=True))
    with pytest.raises(InputArrayError, match="entry 1"):
        labelaudit.scan(data.root, out=tmp_path / "bad", features=data.features, index=[paths[0], 3], progress=False)


def test_parquet_mismatches(data, tmp_path):
    pytest.importorskip("pyarrow")
    two = pd.DataFrame({"path": data.paths, "a": list(data.features), "b": list(data.features)})
    two.to_parquet(tmp_path / "two.parquet")
    ragged = pd.DataFrame({"path": data.paths, "embedding": [row[: 3 + i % 2] for i, row in enumerate(data.features)]})
    ragged.to_parquet(tmp_path / "ragged.parquet")
    no_path = pd.DataFrame({"embedding": list(data.features)})
    no_path.to_parquet(tmp_path / "nopath.parquet")
    with_paths = pd.DataFrame({"path": data.paths, "embedding": list(data.features)})
    with_paths.to_parquet(tmp_path / "paths.parquet")
    with pytest.raises(InputArrayError, match="--index .* is not used: every input names its rows"):
        labelaudit.scan(data.root, out=tmp_path / "s", features=tmp_path / "paths.parquet", index=data.index,
                        progress=False)
    for name, message in (("two", "exactly one list column"), ("ragged", "vectors of different lengths"),
                          ("nopath", "has no 'path' column")):
        with pytest.raises(InputArrayError, match=message):
            labelaudit.scan(data.root, out=tmp_path / "s", features=tmp_path / f"{name}.parquet", progress=False)


def test_python_api_errors_are_typed(data, tmp_path):
    with pytest.raises(InputArrayError, match="has 3 rows"):
        labelaudit.scan(data.root, out=tmp_path / "s", features=np.zeros((3, 4), np.float32), progress=False)
    with pytest.raises(SettingsError):
        labelaudit.scan(data.root, out=tmp_path / "s", features=data.features, features_flip=data.features,
                        index=data.index, flip=False, progress=False)
    assert not (tmp_path / "s").exists()


def test_large_data_compares_the_kinds_on_the_first_fold_only(monkeypatch):
    from labelaudit.folds import heads

    monkeypatch.setattr(heads, "COMPARE_ALL_FOLDS_ROWS", 100)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    run = train_heads(x, y, np.arange(300) % 3, 2, settings=HeadSettings(epochs=3, min_steps=4))
    assert [r.fold for r in run.results] == [0, 1, 2] and set(run.holdout_losses) == set(HEAD_KINDS)
    assert run.images_trained == (2 * 200 + 2 * 200) * 3  # both kinds on fold 1, the kept kind on folds 2-3


def test_index_csv_parse_error_is_one_line(tmp_path):
    from labelaudit.data.arrays import read_index

    (tmp_path / "index.csv").write_text("path\na.png\nb.png,extra\n", encoding="utf-8")
    with pytest.raises(InputArrayError, match="cannot read") as err:
        read_index(tmp_path / "index.csv")
    assert "\n" not in str(err.value) and str(err.value) == str(err.value).strip(), repr(str(err.value))


def test_a_row_count_one_short_names_the_file_that_is_no_image(tmp_path):
    """`cat/README.txt` beside the images made the count differ by one, and the error did not say which file."""
    from PIL import Image

    for c in ("cat", "dog"):
        (tmp_path / "data" / c).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / "data" / c / f"{i}.png")
    (tmp_path / "data" / "cat" / "README.txt").write_text("notes\n")
    with pytest.raises(InputArrayError, match="has 8 rows but .* lists 9 files .*'cat/README.txt'"):
        labelaudit.scan(tmp_path / "data", out=tmp_path / "s", features=np.zeros((8, 3), np.float32), progress=False)
