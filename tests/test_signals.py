"""Signals and scoring: exact answers on hand-made arrays, and the right direction on real training."""

import numpy as np
import pandas as pd
import pytest

from labelaudit.errors import ScanError, TrainingDiverged
from labelaudit.folds.records import FoldResult
from labelaudit.scoring import RECIPES, combine, flag, suggest, suspicion
from labelaudit.signals import (
    SIGNALS, area_under_margin, compute_signals, confident_learning, forgetting_events, learned_epoch,
)

FLIP_RECORDS = {"view_losses", "view_flip_losses", "view_flip_agree", "holdout_probs_flip"}


def test_area_under_margin_is_mean_margin_over_epochs():
    margins = np.array([[1.0, -2.0], [3.0, -4.0]])  # (E=2, n=2)
    np.testing.assert_allclose(area_under_margin(margins), [2.0, -3.0])


def test_learned_epoch_and_forgetting_on_known_histories():
    correct = np.array([
        # s0 always right, s1 learned at epoch 2, s2 never, s3 learned-forgotten-relearned, s4 right then wrong
        [1, 0, 0, 1, 1],
        [1, 0, 0, 0, 1],
        [1, 1, 0, 1, 1],
        [1, 1, 0, 1, 0],
    ], dtype=bool)
    np.testing.assert_allclose(learned_epoch(correct), [0.0, 0.5, 1.0, 0.5, 1.0])
    # never learned counts as forgotten at every epoch (E = 4), the most suspicious value
    np.testing.assert_array_equal(forgetting_events(correct), [0, 0, 4, 1, 1])


def test_confident_learning_flags_a_sample_whose_probabilities_point_elsewhere():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 30)
    probs = np.full((90, 3), 0.05)
    probs[np.arange(90), labels] = 0.9
    probs[5] = [0.02, 0.96, 0.02]  # labelled 0, looks like 1
    probs += rng.uniform(0, 0.01, probs.shape)
    probs /= probs.sum(1, keepdims=True)
    cl = confident_learning(labels, probs)
    assert cl["label_issue"][5] and cl["label_issue"].sum() == 1
    assert cl["label_quality"][5] == cl["label_quality"].min()
    assert cl["n_label_issues"] >= 1
    assert cl["noise_matrix"].shape == (3, 3)
    np.testing.assert_allclose(cl["noise_matrix"].sum(axis=0), 1.0, atol=1e-6)  # columns: P(given | true)


def test_suspicion_orients_and_ranks():
    np.testing.assert_allclose(suspicion(np.array([3.0, 1.0, 2.0]), +1), [1.0, 1 / 3, 2 / 3])
    np.testing.assert_allclose(suspicion(np.array([3.0, 1.0, 2.0]), -1), [1 / 3, 1.0, 2 / 3])


def test_combine_is_mean_of_oriented_ranks_and_skips_absent_signals():
    table = pd.DataFrame({"label_quality": [0.9, 0.1, 0.5], "aum": [2.0, -1.0, 0.0]})
    score = combine(table, ("label_quality", "aum", "flip_loss_in"))  # flip absent (flips off)
    np.testing.assert_allclose(score, [1 / 3, 1.0, 2 / 3])
    assert score.argmax() == 1 and 0 <= score.min() and score.max() <= 1
    with pytest.raises(ScanError):
        combine(table, ("flip_loss_in",))


def test_every_recipe_names_known_signals():
    for components in RECIPES.values():
        assert set(components) <= set(SIGNALS)


def test_flag_count_rule_and_threshold_rule():
    scores = np.array([0.1, 0.9, 0.5, 0.7])
    np.testing.assert_array_equal(flag(scores, n_estimated=2), [False, True, False, True])
    np.testing.assert_array_equal(flag(scores, n_estimated=2, threshold=0.5), [False, True, True, True])
    assert flag(scores, n_estimated=0).sum() == 0
    assert flag(scores, n_estimated=99).all()


def test_suggest_is_argmax():
    np.testing.assert_array_equal(suggest(np.array([[0.2, 0.8], [0.6, 0.4]])), [1, 0])


def test_suggestion_of_a_flagged_sample_is_never_its_given_label():
    probs = np.array([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    labels = np.array([0, 0, 1])
    flagged = np.array([True, False, True])
    # flagged and the model still prefers the given class: the runner-up; unflagged: the argmax
    np.testing.assert_array_equal(suggest(probs, labels, flagged), [1, 0, 2])


def _fold(train_idx, holdout_idx, n_classes=2, epochs=3, flip=True):
    n_train, n_hold = len(train_idx), len(holdout_idx)
    probs = np.full((n_hold, n_classes), 1 / n_classes, np.float32)
    records = {
        "train_margins": np.ones((epochs, n_train), np.float32) * np.asarray(train_idx, np.float32),
        "train_losses": np.ones((epochs, n_train), np.float32),
        "train_correct": np.ones((epochs, n_train), bool),
        "holdout_probs": probs,
    }
    if flip:
        records.update(view_losses=np.zeros((1, n_train), np.float32),
                       view_flip_losses=np.ones((1, n_train), np.float32),
                       view_flip_agree=np.ones((1, n_train), bool), holdout_probs_flip=probs.copy())
    return FoldResult(fold=0, train_idx=train_idx, holdout_idx=holdout_idx, holdout_accuracy=0.5, records=records)


def test_compute_signals_averages_in_sample_values_over_folds():
    labels = np.array([0, 1, 0, 1])
    folds = [_fold([2, 3], [0, 1]), _fold([0, 1], [2, 3])]
    folds[0].records["train_margins"][:] = 5.0
    signals = compute_signals(folds, labels, 2)
    np.testing.assert_allclose(signals.table["aum"], [0.0, 1.0, 5.0, 5.0])
    np.testing.assert_allclose(signals.table["flip_loss_gap_in"], 1.0)
    assert signals.pred_probs.shape == (4, 2)


def test_flip_and_out_of_sample_signals_have_known_values():
    labels = np.array([0, 1, 0, 1])
    a, b = _fold([2, 3], [0, 1]), _fold([0, 1], [2, 3])
    a.records["holdout_probs"] = np.array([[0.8, 0.2], [0.6, 0.4]], np.float32)       # samples 0, 1
    a.records["holdout_probs_flip"] = np.array([[0.6, 0.4], [0.3, 0.7]], np.float32)  # sample 1: mirror disagrees
    a.records["view_losses"][:] = [[0.1, 0.2]]          # in-sample views of samples 2, 3
    a.records["view_flip_losses"][:] = [[0.1, 2.2]]
    a.records["view_flip_agree"][:] = [[True, False]]
    a.records["train_losses"][:] = [[1.0, 3.0], [2.0, 5.0], [3.0, 1.0]]
    t = compute_signals([a, b], labels, 2).table
    np.testing.assert_allclose(t["oos_self_confidence"][:2], [0.8, 0.4])
    np.testing.assert_allclose(t["oos_flip_self_confidence"][:2], [0.6, 0.7])
    np.testing.assert_allclose(t["label_quality"][:2], [0.7, 0.55], atol=1e-6)  # mean of image and mirror
    np.testing.assert_allclose(t["flip_agree_oos"][:2], [1.0, 0.0])
    np.testing.assert_allclose(t["flip_loss_gap_oos"][:2], [np.log(0.8 / 0.6), np.log(0.4 / 0.7)], atol=1e-5)
    np.testing.assert_allclose(t["flip_loss_in"][2:], [0.1, 2.2])
    np.testing.assert_allclose(t["flip_loss_gap_in"][2:], [0.0, 2.0], atol=1e-6)
    np.testing.assert_allclose(t["flip_agree_in"][2:], [1.0, 0.0])
    np.testing.assert_allclose(t["mean_loss"][2:], [2.0, 3.0])


def test_non_finite_probabilities_are_reported_as_divergence():
    a, b = _fold([2, 3], [0, 1]), _fold([0, 1], [2, 3])
    a.records["holdout_probs"] = np.full((2, 2), np.nan, np.float32)
    with pytest.raises(TrainingDiverged):
        compute_signals([a, b], np.array([0, 1, 0, 1]), 2)


def test_compute_signals_without_flip_has_no_flip_columns():
    labels = np.array([0, 1, 0, 1])
    signals = compute_signals([_fold([2, 3], [0, 1], flip=False), _fold([0, 1], [2, 3], flip=False)], labels, 2)
    flip_signals = {name for name, s in SIGNALS.items() if FLIP_RECORDS & set(s.requires)}
    assert flip_signals == {"oos_flip_self_confidence", "flip_loss_in", "flip_loss_gap_in", "flip_agree_in",
                            "flip_agree_oos", "flip_loss_gap_oos"}
    knn = {name for name, s in SIGNALS.items() if "knn_neighbours" in s.requires}  # scans from embeddings only
    assert list(signals.table.columns) == [name for name in SIGNALS if name not in flip_signals | knn]
    assert "aum" in signals.table and "label_quality" in signals.table


def test_compute_signals_requires_every_sample_held_out():
    with pytest.raises(ScanError):
        compute_signals([_fold([0, 1], [2])], np.array([0, 1, 0, 1]), 2)


@pytest.mark.parametrize("signal", ["aum", "label_quality", "oos_self_confidence", "oos_flip_self_confidence",
                                    "flip_loss_in", "flip_loss_gap_in", "learned_epoch", "mean_loss",
                                    "forgetting_events", "cl_label_issue"])
def test_signal_separates_injected_errors_on_real_training(scanned, signal):
    """On a real scan of generated data, each signal points the documented way for wrong labels."""
    folder, _, scores = scanned
    merged = scores.merge(folder.truth[["path", "is_noisy"]], on="path")
    noisy, clean = merged[merged.is_noisy][signal].mean(), merged[~merged.is_noisy][signal].mean()
    if SIGNALS[signal].direction > 0:
        assert noisy > clean
    else:
        assert noisy < clean


def test_oos_margin_is_the_log_probability_margin_and_weighs_the_alternative():
    from labelaudit.signals import SIGNALS
    from labelaudit.signals.confident import log_margin

    probs = np.array([[0.3, 0.7, 0.0, 0.0],     # given 0: the alternative is sure -> most suspicious
                      [0.3, 0.2, 0.2, 0.3],     # given 0: a tie with the best other class -> 0
                      [0.4, 0.2, 0.2, 0.2],     # given 0: the same 0.3-ish, alternatives spread
                      [0.0, 1.0, 0.0, 0.0]])    # given 0 at probability 0: clipped, finite
    margin = log_margin(probs, np.array([0, 0, 0, 0]))
    np.testing.assert_allclose(margin[:3], [np.log(0.3 / 0.7), 0.0, np.log(2.0)])
    assert np.isfinite(margin[3]) and margin[3] < margin[0]
    assert SIGNALS["oos_margin"].direction == -1  # lower = more likely mislabeled
    assert log_margin(np.ones((2, 1)), np.array([0, 0])).tolist() == [np.inf, np.inf]  # no alternative


def _calibrated(n=3000, classes=4, noise=0.0, seed=0):
    """Labels drawn from known probabilities (so those probabilities are calibrated to them), then a
    share ``noise`` of them replaced by another class (symmetric label noise)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, classes))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(classes, p=row) for row in probs])
    wrong = rng.random(n) < noise
    labels[wrong] = (labels[wrong] + rng.integers(1, classes, wrong.sum())) % classes
    return labels, probs


def test_temper_finds_the_temperature_that_sharpened_calibrated_probabilities():
    from labelaudit.signals.confident import temper

    labels, probs = _calibrated()
    _, t_calibrated = temper(labels, probs)
    assert t_calibrated == pytest.approx(1.0, abs=0.1)
    sharp = probs ** 2.5 / (probs ** 2.5).sum(1, keepdims=True)  # the same probabilities at temperature 1 / 2.5
    tempered, temperature = temper(labels, sharp)
    assert temperature == pytest.approx(2.5, rel=0.1)
    np.testing.assert_allclose(tempered.sum(1), 1.0)
    assert (np.argsort(tempered, axis=1) == np.argsort(sharp, axis=1)).all()  # the order within a row is kept
    np.testing.assert_allclose(tempered, probs, atol=0.05)
    noisy_labels, _ = _calibrated(noise=0.4)  # label noise alone raises the temperature fitted to the labels
    assert temper(noisy_labels, probs)[1] > 1.5


def test_temper_keeps_probabilities_it_cannot_improve_and_survives_zeros_and_float32():
    from labelaudit.signals.confident import temper

    uniform = np.full((6, 3), 1 / 3)
    tempered, temperature = temper(np.array([0, 1, 2, 0, 1, 2]), uniform)
    assert temperature == 1.0 and np.allclose(tempered, uniform)  # a flat loss: left as it is
    labels, probs = _calibrated(n=500)
    probs = probs.astype(np.float32)
    probs[:, 0] = np.where(labels == 0, probs[:, 0], 0)  # exact zeros (a float32 softmax underflows)
    probs /= probs.sum(1, keepdims=True)
    tempered, temperature = temper(labels, probs)
    assert np.isfinite(temperature) and tempered.dtype == np.float64
    np.testing.assert_allclose(tempered.sum(1), 1.0)


def test_the_flag_count_is_counted_on_tempered_probabilities():
    """Overconfident probabilities put more samples above another class's threshold: the count is made after
    tempering."""
    from cleanlab.count import num_label_issues

    from labelaudit.signals.confident import temper

    labels, probs = _calibrated()
    sharp = probs ** 3 / (probs ** 3).sum(1, keepdims=True)
    cl = confident_learning(labels, sharp)
    assert cl["temperature"] > 2
    raw = num_label_issues(labels, sharp, estimation_method="off_diagonal")
    tempered, _ = temper(labels, sharp)
    assert cl["n_label_issues"] == num_label_issues(labels, tempered, estimation_method="off_diagonal") < raw
