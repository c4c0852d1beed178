"""One fold's training: shapes of the records, determinism, augmentation helpers."""

import numpy as np
import pytest
import torch

from labelaudit import errors
from labelaudit.config import ScanConfig
from labelaudit.folds.models import build_model
from labelaudit.folds.records import RECORDS
from labelaudit.folds.training import (
    FoldJob,
    TrainingDiverged,
    _batch_bounds,
    margin,
    _random_translate,
    late_epochs,
    resolve_device,
    run_fold,
    training_losses,
)


@pytest.fixture
def job(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 12)
    images = (rng.uniform(0, 80, (36, 16, 16, 3)) + labels[:, None, None, None] * 80).astype(np.uint8)
    np.save(tmp_path / "images.npy", images)
    cfg = ScanConfig(image_size=16, epochs=6, width=4, batch_size=8, lr=0.05, folds=3)
    return FoldJob(fold=0, train_idx=np.arange(12, 36), holdout_idx=np.arange(12),
                   images_path=str(tmp_path / "images.npy"), labels=labels, n_classes=3, config=cfg.to_dict(),
                   embed_all=True)


def test_fold_result_shapes(job):
    r = run_fold(job)
    rec = r.records
    n_train, late = 24, len(late_epochs(6))
    knn = {"knn_neighbours", "knn_similarity"}  # made once per scan from embeddings (labelaudit.byom), not by folds
    assert set(rec) == set(RECORDS) - knn  # flips on and embed_all: every declared fold record
    assert rec["train_margins"].shape == rec["train_losses"].shape == rec["train_correct"].shape == (6, n_train)
    assert rec["view_flip_losses"].shape == rec["view_losses"].shape == rec["view_flip_agree"].shape \
        == (late, n_train)
    assert rec["holdout_probs"].shape == rec["holdout_probs_flip"].shape == (12, 3)
    np.testing.assert_allclose(rec["holdout_probs"].sum(1), 1, atol=1e-5)
    assert rec["all_features"].shape[0] == 36 and rec["all_features"].dtype == np.float16
    np.testing.assert_array_equal(rec["train_correct"], rec["train_margins"] > 0)
    assert rec["train_losses"][-1].mean() < rec["train_losses"][0].mean()  # it learns
    assert r.all_features is rec["all_features"] and r.get("holdout_probs") is rec["holdout_probs"]


def test_fold_is_deterministic_and_no_flip_records_no_views(job):
    a, b = run_fold(job), run_fold(job)
    assert set(a.records) == set(b.records)
    for name in a.records:
        np.testing.assert_array_equal(a.records[name], b.records[name])
    job.config = {**job.config, "flip": False}
    job.embed_all = False
    c = run_fold(job)
    assert set(c.records) == {"train_margins", "train_losses", "train_correct", "holdout_probs"}
    assert c.holdout_probs_flip is None and c.get("view_flip_losses") is None


def test_early_epochs_train_on_smaller_images_and_stay_deterministic(job, monkeypatch):
    import labelaudit.folds.training as training

    seen = []
    original = training._early_resize
    monkeypatch.setattr(training, "_early_resize", lambda x, epoch, cfg: seen.append(
        (epoch, original(x, epoch, cfg).shape[-1])) or original(x, epoch, cfg))
    job.config = {**job.config, "early_fraction": 0.34, "early_scale": 0.5}  # 2 of 6 epochs at 8 px
    a = run_fold(job)
    sizes = dict(seen)
    assert {e: sizes[e] for e in range(6)} == {0: 8, 1: 8, 2: 16, 3: 16, 4: 16, 5: 16}
    assert a.records["holdout_probs"].shape == (12, 3)  # held-out predictions at full size
    b = run_fold(job)
    np.testing.assert_array_equal(a.records["train_losses"], b.records["train_losses"])
    job.config = {**job.config, "early_fraction": 0.0}
    assert not np.array_equal(run_fold(job).records["train_losses"], a.records["train_losses"])


def test_run_fold_leaves_global_rng_and_cudnn_flags_alone(job):
    torch.manual_seed(123)
    np.random.seed(456)
    cudnn = torch.backends.cudnn
    saved_flags = cudnn.benchmark, cudnn.deterministic
    cudnn.benchmark, cudnn.deterministic = True, False  # not what training uses
    try:
        torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
        first = run_fold(job)
        assert torch.equal(torch.get_rng_state(), torch_state)
        after = np.random.get_state()
        assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1]) and after[2:] == numpy_state[2:]
        assert (cudnn.benchmark, cudnn.deterministic) == (True, False)
        torch.rand(5)  # the caller's stream moves on: the fold's result must not depend on it
        np.testing.assert_array_equal(run_fold(job).records["holdout_probs"], first.records["holdout_probs"])
    finally:
        cudnn.benchmark, cudnn.deterministic = saved_flags


def test_margin_is_given_logit_minus_best_other():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0]])
    np.testing.assert_allclose(margin(logits, torch.tensor([0, 2])).numpy(), [1.0, -4.0])


def test_random_translate_shifts_by_at_most_pad():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 4, 4] = 1.0
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        y = _random_translate(x, 2, g)
        assert y.shape == x.shape
        r, c = divmod(int(y.flatten().argmax()), 8)
        assert abs(r - 4) <= 2 and abs(c - 4) <= 2 and y.sum() == 1


def test_batch_bounds_never_leave_a_single_sample():
    assert _batch_bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert _batch_bounds(9, 3)[-1] == (6, 9)


def test_late_epochs_are_the_last_third():
    assert late_epochs(12) == [8, 9, 10, 11] and late_epochs(2) == [1]


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(errors.DeviceUnavailable):
            resolve_device("cuda")


def test_model_output_and_features():
    m = build_model(5, width=4, depth=1)
    x = torch.randn(2, 3, 32, 32)
    assert m(x).shape == (2, 5) and m.features(x).shape == (2, m.embedding_dim)


def test_divergence_is_a_clear_error(job):
    job.config = {**job.config, "lr": 1e12}
    with pytest.raises(errors.TrainingDiverged):
        run_fold(job)
    assert TrainingDiverged is errors.TrainingDiverged  # still importable from folds.training


def test_generalised_cross_entropy_fits_less_of_an_unlikely_label_and_records_the_cross_entropy():
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 3.0, 0.0], [1.0, 0.5, 0.0]], requires_grad=True)
    y = torch.tensor([0, 0, 2])  # a likely label, an unlikely one (a wrong label?), in between
    ce = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    recorded, fitted = training_losses(logits, y, ScanConfig())
    assert fitted is recorded and torch.allclose(recorded, ce)
    recorded, fitted = training_losses(logits, y, ScanConfig(gce_q=0.5))
    assert torch.allclose(recorded, ce)  # the records and the loss signals read the cross-entropy
    p_y = torch.exp(-ce)
    assert torch.allclose(fitted, (1 - p_y ** 0.5) / 0.5) and (fitted <= 2).all()  # bounded by 1/q
    grad_gce = torch.autograd.grad(fitted.sum(), logits)[0]
    grad_ce = torch.autograd.grad(ce.sum(), logits)[0]
    assert torch.allclose(grad_gce, grad_ce * (p_y ** 0.5)[:, None], atol=1e-6)  # the CE's, scaled by p_y^q
    tiny = training_losses(logits, y, ScanConfig(gce_q=1e-4))[1]
    assert torch.allclose(tiny, ce, rtol=1e-3)  # q -> 0: the cross-entropy


def test_gce_is_fingerprinted_only_when_on_and_refused_with_label_smoothing():
    # (the default's fingerprint, gce_q=0 left out of it, is pinned in test_config.py)
    assert ScanConfig(gce_q=0.5).training_fingerprint() != ScanConfig().training_fingerprint()
    with pytest.raises(errors.SettingsError, match="gce_q"):
        ScanConfig(gce_q=0.5, label_smoothing=0.1)
