"""The benchmark scripts' data handling and JSON lines, on tiny generated data (one tiny fold at most)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def cifar_like(tmp_path):
    """Class folders of empty 'train_<index>.jpg' files (indexes 10..59) and a CIFAR-10N style CSV."""
    root = tmp_path / "data"
    rows = []
    for k, cls in enumerate(["cat", "dog"]):
        (root / cls).mkdir(parents=True)
        for index in range(10 + k, 60, 2):
            (root / cls / f"train_{index}.jpg").write_bytes(b"")
            wrong = "dog" if cls == "cat" else "cat"
            rows.append((f"{cls}/train_{index}.jpg", cls, wrong if index % 5 == 0 else cls))
    csv = tmp_path / "human.csv"
    pd.DataFrame(rows, columns=["path", "original", "random1"]).to_csv(csv, index=False)
    return root, csv


def test_subset_by_index_range(cifar_like):
    detect = _load("detect")
    root, _ = cifar_like
    subset = detect.select_subset(root, 3, 0, min_index=30, max_index=None)
    indexes = subset.path.str.extract(r"(\d+)")[0].astype(int)
    assert (indexes >= 30).all() and len(subset) == 6
    assert list(subset.path[:3]) == ["cat/train_30.jpg", "cat/train_32.jpg", "cat/train_34.jpg"]
    dev = detect.select_subset(root, 0, 0, min_index=None, max_index=30)
    assert (dev.path.str.extract(r"(\d+)")[0].astype(int) < 30).all() and len(dev) == 20


def test_long_tail_subset_shrinks_classes_geometrically_to_the_ratio(tmp_path):
    detect = _load("detect")
    root = tmp_path / "data"
    for cls in ["a", "b", "c"]:
        (root / cls).mkdir(parents=True)
        for index in range(20):
            (root / cls / f"img_{index}.png").write_bytes(b"")
    subset = detect.select_subset(root, 16, 0, long_tail=4)
    assert subset.true_label.value_counts().to_dict() == {"a": 16, "b": 8, "c": 4}
    assert list(subset.path[subset.true_label == "c"]) == [f"c/img_{i}.png" for i in range(4)]
    assert len(detect.select_subset(root, 16, 0, long_tail=1)) == 48
    tiny = detect.select_subset(root, 2, 0, long_tail=10)  # round(2 / 10) = 0: still one image, not the whole class
    assert tiny.true_label.value_counts().to_dict() == {"a": 2, "b": 1, "c": 1}
    with pytest.raises(SystemExit, match="long-tail"):
        detect.select_subset(root, 16, 0, long_tail=0.5)
    with pytest.raises(SystemExit, match="long-tail"):
        detect.select_subset(root, 0, 0, long_tail=4)


def test_per_class_figures_count_flags_precision_and_recall_within_each_given_class():
    detect = _load("detect")
    given = np.array(["a", "a", "a", "a", "b", "b"], dtype=object)
    is_noisy = np.array([True, True, False, False, False, False])
    flagged = np.array([True, False, True, False, False, False])
    baseline = np.array([True, True, True, True, True, False])
    figures = detect.per_class_figures(given, is_noisy, flagged, baseline)
    assert figures["a"] == {"n": 4, "wrong": 2, "labelaudit": {"flagged": 2, "precision": 0.5, "recall": 0.5},
                            "cleanlab": {"flagged": 4, "precision": 0.5, "recall": 1.0}}
    assert figures["b"] == {"n": 2, "wrong": 0, "labelaudit": {"flagged": 0, "precision": None, "recall": None},
                            "cleanlab": {"flagged": 1, "precision": 0.0, "recall": None}}


def test_human_labels_come_from_the_named_column(cifar_like):
    detect = _load("detect")
    root, csv = cifar_like
    subset = detect.select_subset(root, 0, 0)
    args = detect.parse_args(["--human", "random1", "--human-labels", str(csv)])
    given = detect.human_labels(subset, args)
    expected = pd.read_csv(csv).set_index("path").loc[subset.path, "random1"].to_numpy()
    assert list(given) == list(expected) and (given != subset.true_label.to_numpy()).sum() == 10
    with pytest.raises(SystemExit, match="columns"):
        detect.human_labels(subset, detect.parse_args(["--human", "nobody", "--human-labels", str(csv)]))
    bad = subset.assign(true_label=subset.true_label[::-1].to_numpy())
    with pytest.raises(SystemExit, match="disagrees"):
        detect.human_labels(bad, args)


def test_rules_score_flags_and_suggestions_against_the_truth(tmp_path):
    rules = _load("rules")
    paths = [f"c/{i}.jpg" for i in range(6)]
    human = pd.DataFrame({"path": paths, "original": ["a", "a", "b", "b", "c", "c"]}).set_index("path")
    scan = tmp_path / "run" / "scan"
    scan.mkdir(parents=True)
    given = ["a", "b", "b", "b", "c", "a"]  # rows 1 and 5 are wrong (their truth: a and c)
    pd.DataFrame({"path": paths, "given_label": given, "mislabel_score": [0.1, 0.9, 0.2, 0.3, 0.1, 0.8],
                  "flagged": [False, True, False, False, False, False]}).to_csv(scan / "scores.csv", index=False)
    probs = np.array([[.8, .1, .1], [.2, .7, .1], [.1, .8, .1], [.1, .8, .1], [.1, .1, .8], [.6, .1, .3]])
    np.save(scan / "pred_probs.npy", probs)
    out = rules.evaluate(tmp_path / "run", human)
    assert out["actual_noise_rate"] == pytest.approx(2 / 6)
    assert out["auroc"] == 1.0  # the two wrong labels have the two highest scores
    # row 1: given b, truth a; argmax b (wrong), best other class a (right);
    # row 5: given a, truth c; argmax a (wrong), best other class c (right)
    assert out["suggestion_true_on_wrong"] == {"argmax": 0.0, "most_likely_other_class": 1.0,
                                               "other_class_if_flagged": 0.5}  # only row 1 is flagged
    assert out["flag_rules"]["argmax_differs"]["n"] == 0  # every argmax equals the given label here
    assert out["flag_rules"]["oracle_best_threshold"] == {"n": 2, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    # the ceiling of a count rule: top-N by score, N chosen with the truth (ranks 1 and 3 wrong labels:
    # F1 2/3 for N = 1, 0.8 for N = 3)
    assert rules.best_f1_count(np.array([True, False, True, False]), np.array([4.0, 3.0, 2.0, 1.0])) == 3
    assert rules.best_f1_count(np.array([False, True, True, True]), np.array([4.0, 3.0, 2.0, 1.0])) == 4
    assert set(out["flag_rules"]) >= set(rules.COUNT_RULES)
    # with a noise matrix (rows given, columns true): people say "b" for a true c, rarely for an a
    pd.DataFrame([[0.4, 0.05, 0.3], [0.05, 0.9, 0.6], [0.55, 0.05, 0.1]], index=["a", "b", "c"],
                 columns=["a", "b", "c"]).to_csv(scan / "noise_matrix.csv")
    out = rules.evaluate(tmp_path / "run", human)["suggestion_true_on_wrong"]
    # row 1 (given b): a 0.2 * 0.05 < c 0.1 * 0.6 -> c (wrong); row 5 (given a): b 0.1 * 0.05 < c 0.3 * 0.3 -> c (right)
    assert out["noise_posterior_other_class"] == 0.5
    assert out["noise_posterior_if_flagged"] == 0.0  # row 1 flagged -> c; row 5 unflagged keeps its argmax a


def test_rules_prior_adjusted_margin_moves_suspicion_off_a_rare_class():
    """Divided by the class prior, a rare class's probability counts for more: its sample is no longer the most
    suspect."""
    rules = _load("rules")
    from labelaudit.signals.confident import log_margin

    labels = np.array([0, 0, 0, 1])  # prior 0.75 / 0.25
    probs = np.array([[.9, .1], [.8, .2], [.7, .3], [.6, .4]])
    margin = log_margin(probs, labels)
    scores = pd.DataFrame({"oos_margin": margin, "mislabel_score": -margin})
    out = rules.prior_adjusted_margins(scores, labels, probs, ["oos_margin"])
    assert set(out) == {"as_scanned", "cleanlab_adjusted", "divided_by_prior", "divided_by_sqrt_prior"}
    assert out["as_scanned"].argmax() == 3  # raw margin of row 3: log(.4 / .6) < 0, the only negative one
    assert out["divided_by_prior"].argmax() == 2  # row 3: log(1.6 / .8) > 0; row 2: log(.93 / 1.2) < 0
    assert rules.prior_adjusted_margins(scores, labels, probs, ["aum"]) == {}


def test_annotation_table_keeps_one_to_all_labels_per_image_when_dropping(cifar_like, tmp_path):
    detect = _load("detect")
    root, csv = cifar_like
    table = pd.read_csv(csv)
    table["random2"], table["random3"] = table["original"], table["random1"]
    table.to_csv(csv, index=False)
    subset = detect.select_subset(root, 0, 0)
    args = detect.parse_args(["--annotators", "random1,random2,random3", "--human-labels", str(csv)])
    long = detect.annotation_table(subset, args)
    assert len(long) == 3 * len(subset) and list(long.columns) == ["path", "annotator", "label"]
    first = long[long.path == subset.path[0]]
    assert list(first.annotator) == ["random1", "random2", "random3"]
    dropped = detect.annotation_table(subset, detect.parse_args(
        ["--annotators", "random1,random2,random3", "--drop-annotations", "--human-labels", str(csv)]))
    per_image = dropped.groupby("path").size()
    assert per_image.between(1, 3).all() and set(per_image) == {1, 2, 3} and len(per_image) == len(subset)
    with pytest.raises(SystemExit, match="columns"):
        detect.annotation_table(subset, detect.parse_args(["--annotators", "random1,nobody",
                                                          "--human-labels", str(csv)]))


def test_recipe_figures_leave_out_recipes_whose_signals_the_scan_lacks():
    """An image scan has no knn_agreement: its recipes are left out, the others scored."""
    detect = _load("detect")
    from labelaudit.scoring import RECIPES

    rng = np.random.default_rng(0)
    is_noisy = rng.random(200) < 0.2
    columns = {name for name in set().union(*RECIPES.values()) if name != "knn_agreement"}
    table = pd.DataFrame({name: rng.random(200) + 2.0 * is_noisy * (1 if name != "aum" else -1)
                          for name in columns})
    figures = detect.recipe_figures(table, is_noisy)
    with_knn = {name for name, parts in RECIPES.items() if "knn_agreement" in parts}
    assert with_knn and not with_knn & set(figures)
    assert set(figures) == set(RECIPES) - with_knn
    assert all(0 <= f["auroc"] <= 1 and 0 <= f["ap"] <= 1 for f in figures.values())


def test_dev_screen_settings_are_typed_by_the_scan_config_field():
    screen = _load("dev_screen")
    assert screen._settings("batch_size=64,lr=0.05,tta=false,flip=1") == {
        "batch_size": 64, "lr": 0.05, "tta": False, "flip": True}
    with pytest.raises(SystemExit, match="no_such_field"):
        screen._settings("no_such_field=3")


def test_dev_screen_early_flips_mirror_only_the_early_epochs_and_restore_training():
    import torch

    from labelaudit.config import ScanConfig
    from labelaudit.folds import training

    screen = _load("dev_screen")
    cfg = ScanConfig(epochs=4, early_fraction=0.0)
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    original = training._early_resize
    with screen.early_flips(training, 0.5, seed=0):
        early = torch.stack([training._early_resize(x, 0, cfg) for _ in range(20)])
        late = training._early_resize(x, 2, cfg)
    assert training._early_resize is original
    assert torch.equal(late, x)
    mirrored = (early == x.flip(3)).flatten(2).all(2)  # (20, 2): sample mirrored in that draw
    assert mirrored.any() and not mirrored.all()


def test_seeds_table_gives_mean_and_sample_std_per_noise_and_only_shared_recipes():
    table = _load("table")

    def run(noise, auroc, recipes):
        figures = {"auroc": auroc, "ap": auroc - 0.1, "precision": 0.5, "recall": 0.6, "f1": 0.55, "n_flagged": 100}
        return {"noise": noise, "rate": None, "labelaudit": figures, "cleanlab_on_labelaudit_models": figures,
                "recipes": {name: {"auroc": auroc, "ap": 0.5} for name in recipes}, "wall_s": 10.0,
                "oos_accuracy_given": 0.6, "oos_accuracy_true": 0.7, "estimated_noise_rate": 0.2,
                "suggestion_true_on_wrong": None}

    runs = [run("human:random1", 0.90, ["a", "b"]), run("human:random1", 0.92, ["a"]), run("human:worst", 0.80, ["a", "b"])]
    runs[1].update(rescored_from_stored_folds=True, wall_s=1.0)
    text = table.seeds_table(runs)
    assert "| human: random1 | 10 / rescored |" in text  # a rescore's second is not a scan's wall time
    lines = [line for line in text.splitlines() if "**labelaudit**" in line]
    assert "| human: random1 | 2 |" in lines[0] and "0.910 ± 0.014" in lines[0]  # stdev([0.90, 0.92]) = 0.0141
    assert "| human: worst | 1 |" in lines[1] and "0.800 |" in lines[1] and "±" not in lines[1].split("|")[4]
    assert "human: random1 | 2 | recipe `b`" not in text  # not carried by every run of the group
    assert "human: worst | 1 | recipe `b`" in text


def test_tables_name_a_long_tail_and_show_flags_per_class():
    table = _load("table")
    assert table._noise({"noise": "human:worst", "rate": None, "long_tail": 10.0}) == "human: worst, long tail 10x"
    assert table._noise({"noise": "symmetric", "rate": 0.2, "long_tail": 1.0}) == "symmetric 20%"
    assert table._noise({"noise": "human:aggre", "rate": None}) == "human: aggre"  # runs made before --long-tail
    run = {"per_class": {"cat": {"n": 1200, "wrong": 30,
                                 "labelaudit": {"flagged": 40, "precision": 0.5, "recall": 2 / 3},
                                 "cleanlab": {"flagged": 0, "precision": None, "recall": 0.0}}}}
    assert table.per_class_table(run).splitlines()[-1] == "| cat | 1,200 | 30 | 40, 0.50 / 0.67 | 0, n/a / 0.00 |"


def test_ceiling_figures_on_a_known_answer():
    ceiling = _load("ceiling")
    truth = np.array([0, 0, 1, 1, 2, 2])
    given = np.array([0, 1, 1, 0, 2, 2])  # rows 1 and 3 wrong
    probs = np.array([[0.90, 0.05, 0.05],   # right, confident
                      [0.70, 0.20, 0.10],   # wrong: given 1, truth 0 is the best other class
                      [0.10, 0.80, 0.10],   # right
                      [0.30, 0.20, 0.50],   # wrong: given 0, best other class 2 (not the truth 1)
                      [0.20, 0.20, 0.60],   # right, least sure of the right ones
                      [0.05, 0.05, 0.90]])
    figures = ceiling.ceiling_figures(probs, given, truth)
    # margins: wrong rows -1.25 and -0.51, right rows +2.89, +2.08, +1.10, +2.89: the wrong ones rank first
    assert figures["auroc_oos_margin"] == 1.0 and figures["ap_oos_margin"] == 1.0
    assert figures["oracle_best_f1"] == 1.0 and figures["precision_at_oracle_best_f1"] == 1.0
    assert figures["actual_noise_rate"] == round(2 / 6, 4)
    assert figures["best_other_class_is_truth_on_wrong"] == 0.5
    # a right label ranked between the two wrong ones lowers every ranking figure
    probs[2] = [0.10, 0.30, 0.60]
    worse = ceiling.ceiling_figures(probs, given, truth)
    assert worse["auroc_oos_margin"] < 1.0 and worse["oracle_best_f1"] < 1.0


def test_ceiling_skips_cleanly_without_the_shared_data(tmp_path, capsys):
    ceiling = _load("ceiling")
    result = ceiling.main(["--data", str(tmp_path / "absent.tar.gz"), "--work", str(tmp_path / "work")])
    assert "skipped" in result and '"skipped"' in capsys.readouterr().out
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize("warmup", [True, False])
def test_fold_throughput_times_a_warm_fold_unless_told_not_to(warmup, capsys):
    """The JSON line of fold_throughput.py: images/s of the timed fold, the untimed warm-up's seconds."""
    import json

    bench = _load("fold_throughput")
    argv = ["--images", "64", "--epochs", "1", "--image-size", "16"] + ([] if warmup else ["--no-warmup"])
    line = bench.main(argv)
    assert json.loads(capsys.readouterr().out) == line
    assert line["train_images_per_s"] > 0 and line["epochs"] == 1
    assert (line["warmup_s"] > 0) if warmup else (line["warmup_s"] is None)


def test_fold_throughput_refuses_to_stream_on_the_cpu():
    bench = _load("fold_throughput")
    with pytest.raises(SystemExit):
        bench.main(["--stream", "--device", "cpu"])
