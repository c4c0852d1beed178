"""The signal registry: a new signal is one class, registered in a registry, computed and scored."""

from collections.abc import Mapping

import numpy as np
import pytest

from labelaudit.errors import ScanError
from labelaudit.folds.records import RECORDS, FoldResult
from labelaudit.scoring import combine
from labelaudit.signals import SIGNALS, InSampleSignal, OutOfSampleSignal, Signal, compute_signals, default_registry

LABELS = np.array([0, 1, 0, 1])


def _fold(train_idx, holdout_idx, *, flip=False, last_loss=(1.0, 1.0)):
    n_train = len(train_idx)
    probs = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)[: len(holdout_idx)]
    losses = np.ones((2, n_train), np.float32)
    losses[-1] = last_loss
    records = {"train_margins": np.ones((2, n_train), np.float32), "train_losses": losses,
               "train_correct": np.ones((2, n_train), bool), "holdout_probs": probs}
    if flip:
        records["holdout_probs_flip"] = probs[:, ::-1].copy()
    return FoldResult(fold=0, train_idx=np.asarray(train_idx), holdout_idx=np.asarray(holdout_idx),
                      holdout_accuracy=1.0, records=records)


class LastLoss(InSampleSignal):
    name = "toy_last_loss"
    direction = +1
    description = "training loss in the last epoch"
    requires = ("train_losses",)

    def per_fold(self, records: Mapping[str, np.ndarray]) -> np.ndarray:
        return records["train_losses"][-1]


class MirrorWinner(OutOfSampleSignal):
    name = "toy_mirror_winner"
    direction = -1
    description = "class the held-out mirror prefers"
    requires = ("holdout_probs_flip",)

    def per_sample(self, held_out: Mapping[str, np.ndarray], labels: np.ndarray) -> np.ndarray:
        return held_out["holdout_probs_flip"].argmax(1).astype(float)


def test_a_toy_signal_registered_in_a_copy_is_computed_and_scored():
    registry = SIGNALS.copy()
    registry.register(LastLoss())
    folds = [_fold([2, 3], [0, 1], last_loss=(0.5, 4.0)), _fold([0, 1], [2, 3], last_loss=(2.0, 3.0))]
    signals = compute_signals(folds, LABELS, 2, registry=registry)
    np.testing.assert_allclose(signals.table["toy_last_loss"], [2.0, 3.0, 0.5, 4.0])
    assert list(signals.table.columns)[-1] == "toy_last_loss"  # registration order
    score = combine(signals.table, ("toy_last_loss",), registry=registry)
    np.testing.assert_allclose(score, [0.5, 0.75, 0.25, 1.0])  # higher loss = more suspicious
    assert "toy_last_loss" not in SIGNALS  # the process-wide default registry is untouched
    with pytest.raises(TypeError, match="read-only"):
        SIGNALS.register(LastLoss())  # and cannot be changed by mistake
    assert "toy_last_loss" not in compute_signals(folds, LABELS, 2).table


def test_a_signal_whose_records_are_absent_is_left_out_not_faked():
    registry = default_registry()
    registry.register(MirrorWinner())
    no_flip = compute_signals([_fold([2, 3], [0, 1]), _fold([0, 1], [2, 3])], LABELS, 2, registry=registry)
    assert "toy_mirror_winner" not in no_flip.table
    flip = compute_signals([_fold([2, 3], [0, 1], flip=True), _fold([0, 1], [2, 3], flip=True)], LABELS, 2,
                           registry=registry)
    np.testing.assert_allclose(flip.table["toy_mirror_winner"], [1.0, 0.0, 1.0, 0.0])


def test_registry_refuses_bad_signals():
    registry = default_registry()
    with pytest.raises(ValueError):
        registry.register(SIGNALS["aum"])  # name taken

    class Sideways(LastLoss):
        name, direction = "sideways", 0

    class NeedsMagic(LastLoss):
        name, requires = "needs_magic", ("magic_record",)

    for bad in (Sideways(), NeedsMagic()):
        with pytest.raises(ValueError):
            registry.register(bad)
    with pytest.raises(TypeError):
        registry.register(LastLoss)  # the class, not an instance
    assert "sideways" not in registry and "needs_magic" not in registry


def test_every_builtin_signal_declares_what_it_needs():
    for name, signal in SIGNALS.items():
        assert isinstance(signal, Signal) and signal.name == name
        assert signal.direction in (+1, -1) and signal.description
        assert signal.requires and set(signal.requires) <= set(RECORDS)


def test_records_made_by_some_folds_only_are_an_error():
    with pytest.raises(ScanError):
        compute_signals([_fold([2, 3], [0, 1], flip=True), _fold([0, 1], [2, 3])], LABELS, 2)


def test_fold_result_refuses_undeclared_records_and_wrong_shapes():
    with pytest.raises(ValueError):
        FoldResult(fold=0, train_idx=np.arange(2), holdout_idx=np.arange(2, 4), holdout_accuracy=1.0,
                   records={"magic_record": np.zeros(2)})
    with pytest.raises(ValueError):
        FoldResult(fold=0, train_idx=np.arange(2), holdout_idx=np.arange(2, 4), holdout_accuracy=1.0,
                   records={"train_losses": np.zeros((3, 5))})  # 5 != n_train
