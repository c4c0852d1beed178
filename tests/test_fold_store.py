"""The fold store: any named records round-trip; other fingerprints, layouts and torn files are retrained."""

import json

import numpy as np

from labelaudit.folds.records import FoldResult
from labelaudit.folds.store import FoldStore


def _result(fold=1, flip=True):
    rng = np.random.default_rng(fold)
    records = {"train_losses": rng.random((3, 4), dtype=np.float32), "train_correct": rng.random((3, 4)) > 0.5,
               "holdout_probs": rng.random((2, 5), dtype=np.float32),
               "all_features": rng.random((6, 8)).astype(np.float16)}
    if flip:
        records["view_flip_losses"] = rng.random((1, 4), dtype=np.float32)
    return FoldResult(fold=fold, train_idx=np.array([0, 1, 4, 5]), holdout_idx=np.array([2, 3]),
                      holdout_accuracy=0.5, records=records, timings={"train_s": 1.5})


def test_records_round_trip_exactly(tmp_path):
    store = FoldStore(tmp_path / "folds", "abc")
    for flip in (True, False):
        saved = _result(flip=flip)
        store.save(saved)
        loaded = store.load(1)
        assert set(loaded.records) == set(saved.records)
        for name, array in saved.records.items():
            assert loaded.records[name].dtype == array.dtype
            np.testing.assert_array_equal(loaded.records[name], array)
        np.testing.assert_array_equal(loaded.train_idx, saved.train_idx)
        np.testing.assert_array_equal(loaded.holdout_idx, saved.holdout_idx)
        assert (loaded.fold, loaded.holdout_accuracy, loaded.timings) == (1, 0.5, {"train_s": 1.5})
    assert sorted(p.name for p in (tmp_path / "folds").iterdir()) == ["fold-1.npz"]  # no temporary left


def test_other_fingerprint_layout_or_torn_file_is_not_loaded(tmp_path):
    FoldStore(tmp_path, "abc").save(_result())
    assert FoldStore(tmp_path, "other").load(1) is None
    assert FoldStore(tmp_path, "abc").load(0) is None  # never saved
    old_layout = {"fingerprint": "abc", "fold": 2, "holdout_accuracy": 0.5, "timings": {}}  # no "format"
    np.savez(tmp_path / "fold-2.npz", meta=np.array(json.dumps(old_layout)), train_idx=np.arange(2))
    assert FoldStore(tmp_path, "abc").load(2) is None
    (tmp_path / "fold-3.npz").write_bytes(b"half-written")
    assert FoldStore(tmp_path, "abc").load(3) is None
