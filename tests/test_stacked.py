"""All folds as one stacked network (``--executor stacked``): each member is exactly its fold's model."""

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from noisy_data import FAST, make_noisy_folder

from labelaudit import scan
from labelaudit.cli import main
from labelaudit.config import ScanConfig
from labelaudit.errors import SettingsError, TrainingDiverged
from labelaudit.folds.executor import StackedExecutor, resolve_executor
from labelaudit.folds.models import StackedResNet, build_model
from labelaudit.folds.stacked import run_folds_stacked
from labelaudit.folds.training import FoldJob, run_fold


def _jobs(tmp_path, n=48, **settings):
    """Fold jobs of a 3-class set of ``n`` images, 3 folds (of equal size when 3 divides ``n``)."""
    rng = np.random.default_rng(0)
    labels = np.tile([0, 1, 2], n // 3 + 1)[:n]
    images = (rng.uniform(0, 80, (n, 16, 16, 3)) + labels[:, None, None, None] * 80).astype(np.uint8)
    np.save(tmp_path / "images.npy", images)
    cfg = ScanConfig(**{"image_size": 16, "epochs": 4, "width": 4, "batch_size": 8, "lr": 0.05, "folds": 3,
                        "precision": "fp32", **settings})
    folds = np.arange(n) % 3
    return [FoldJob(fold=k, train_idx=np.flatnonzero(folds != k), holdout_idx=np.flatnonzero(folds == k),
                    images_path=str(tmp_path / "images.npy"), labels=labels, n_classes=3, config=cfg.to_dict(),
                    embed_all=k == 0)
            for k in range(3)]


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_a_stack_computes_its_members_side_by_side(mode):
    torch.manual_seed(0)
    members = [build_model(5, width=4, depth=1) for _ in range(3)]
    for m in members:
        with torch.no_grad():  # distinct running statistics, so eval mode tests them too
            for bn in (x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
        getattr(m, mode)()
    stack = getattr(StackedResNet(members), mode)()
    x = torch.randn(6, 3, 3, 16, 16)  # (N, K, 3, S, S)
    expected = torch.stack([m(x[:, k]) for k, m in enumerate(members)], dim=1)
    torch.testing.assert_close(stack(x.reshape(6, 9, 16, 16)), expected, atol=1e-5, rtol=1e-5)
    feats = torch.stack([m.features(x[:, k]) for k, m in enumerate(members)], dim=1)
    torch.testing.assert_close(stack.features(x.reshape(6, 9, 16, 16)), feats, atol=1e-5, rtol=1e-5)


def test_members_get_their_own_gradients():
    """A loss on one member moves only that member's weights."""
    torch.manual_seed(0)
    stack = StackedResNet([build_model(5, width=4, depth=1) for _ in range(3)])
    stack(torch.randn(4, 9, 16, 16))[:, 1].sum().backward()
    first_conv = stack.body[0][0]
    grad = first_conv.weight.grad.view(3, -1)
    assert grad[1].abs().sum() > 0 and grad[0].abs().sum() == 0 and grad[2].abs().sum() == 0
    head = stack.head_weight.grad
    assert head[1].abs().sum() > 0 and head[0].abs().sum() == 0 and head[2].abs().sum() == 0


@pytest.mark.parametrize("settings", [
    {},  # flips on: the mirror views and mirrored held-out probabilities too
    {"flip": False, "flip_augment": True, "tta": True},
    {"crop_padding": 0, "early_fraction": 0.5, "early_scale": 0.5},
    {"gce_q": 0.5},  # the generalised cross-entropy's gradient, the cross-entropy recorded
])
def test_stacked_folds_are_the_sequential_folds(tmp_path, one_thread, settings):
    """At a learning rate too small for rounding to grow, every record of every fold matches ``run_fold``.

    That pins down what only the data flow decides: each member's images, order, augmentation
    draws, normalisation and initialisation, and where its records go.
    """
    jobs = _jobs(tmp_path, lr=1e-4, **settings)
    sequential = [run_fold(job) for job in jobs]
    stacked = run_folds_stacked(jobs)
    assert [r.fold for r in stacked] == [0, 1, 2]
    for seq, st in zip(sequential, stacked):
        assert set(st.records) == set(seq.records)
        np.testing.assert_array_equal(st.holdout_idx, seq.holdout_idx)
        for name, array in seq.records.items():
            atol = 2e-3 if array.dtype == np.float16 else 2e-5  # one float16 step is 1e-4 at 0.2
            np.testing.assert_allclose(st.records[name].astype(float), array.astype(float), atol=atol,
                                       err_msg=f"fold {seq.fold} {name}")


def test_stacked_folds_take_the_generalised_cross_entropy_gradient(tmp_path, one_thread):
    """At a learning rate where it matters, gce_q changes what the stacked folds learn (the equality
    test above, at a rate too small to tell the losses apart, would not see it ignored)."""
    plain = run_folds_stacked(_jobs(tmp_path))
    gce = run_folds_stacked(_jobs(tmp_path, gce_q=0.5))
    for a, b in zip(plain, gce):
        assert np.abs(a.records["holdout_probs"] - b.records["holdout_probs"]).max() > 1e-3


def test_folds_of_different_sizes_train_and_record_only_their_own_samples(tmp_path, one_thread):
    jobs = _jobs(tmp_path, n=50)  # folds of 17, 17 and 16 held-out images
    assert len({len(j.train_idx) for j in jobs}) == 2
    reported = {}

    def report(n, fold, epoch, loss, acc):
        reported[fold] = reported.get(fold, 0) + n

    results = run_folds_stacked(jobs, report=report)
    for job, result in zip(jobs, results):
        n_train = len(job.train_idx)
        assert result.records["train_losses"].shape == (4, n_train)
        assert (result.records["train_losses"] > 0).all()  # every sample was trained on in every epoch
        assert result.records["holdout_probs"].shape == (len(job.holdout_idx), 3)
        assert reported[job.fold] == 4 * n_train
    assert np.isfinite(results[0].records["all_features"].astype(float)).all()


def test_a_topped_up_member_keeps_its_own_random_stream(tmp_path, one_thread):
    """The top-up of a smaller fold's last batch draws no augmentation from its stream.

    Folds of 33, 33 and 34 training images in batches of 10 (same batches but the last):
    at a learning rate of ~0, only the images of each epoch's last batch (whose batch-norm
    statistics include the top-up) may differ from ``run_fold``; an order or augmentation
    drawn from a stream that the top-up advanced would change every later epoch.
    """
    jobs = _jobs(tmp_path, n=50, batch_size=10, lr=1e-9)
    for seq, st in zip((run_fold(job) for job in jobs), run_folds_stacked(jobs)):
        n_train = len(seq.train_idx)
        differ = (np.abs(st.records["train_losses"] - seq.records["train_losses"]) > 1e-5).sum(1)
        assert (differ <= n_train - 30).all(), (seq.fold, differ)


def test_divergence_names_the_fold(tmp_path):
    jobs = _jobs(tmp_path, lr=1e30)
    with pytest.raises(TrainingDiverged, match="fold 1"):
        run_folds_stacked(jobs)


def test_a_diverged_member_costs_the_healthy_folds_nothing(tmp_path, monkeypatch):
    """The members are independent: the healthy folds are stored before the error, and a re-run resumes them."""
    from labelaudit.folds import stacked as stacked_module

    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    original = stacked_module._holdout_records

    def second_member_diverges(stack):
        records = original(stack)
        records[1]["holdout_probs"][0, 0] = np.nan
        return records

    monkeypatch.setattr(stacked_module, "_holdout_records", second_member_diverges)
    with pytest.raises(TrainingDiverged, match="fold 2"):
        scan(folder.root, out=tmp_path / "scan", progress=False, executor="stacked", **FAST)
    monkeypatch.setattr(stacked_module, "_holdout_records", original)
    trained = []

    def recording(jobs, report=None):
        trained.extend(job.fold for job in jobs)
        return stacked_module.iter_folds_stacked(jobs, report=report)

    scores = scan(folder.root, out=tmp_path / "scan", progress=False, executor=StackedExecutor(recording), **FAST)
    assert trained == [1] and scores.attrs["summary"]["folds_resumed"] == [0, 2]


def test_jobs_of_different_scans_are_refused(tmp_path):
    jobs = _jobs(tmp_path)
    other = FoldJob(**{**vars(jobs[1]), "config": {**jobs[1].config, "epochs": 5}})
    with pytest.raises(SettingsError, match="one scan"):
        run_folds_stacked([jobs[0], other])


def test_executor_name_and_description():
    executor = resolve_executor("stacked")
    assert isinstance(executor, StackedExecutor)
    assert executor.describe(torch.device("cpu")).endswith("folds stacked in one network")


def test_stacked_scan_resumes_from_local_folds_and_ranks_the_planted_errors(tmp_path):
    from sklearn.metrics import roc_auc_score

    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)

    class _Killed(Exception):
        pass

    def dies_in_third_fold(job, report=None):
        if job.fold == 2:
            raise _Killed
        return run_fold(job, report=report)

    from labelaudit.folds.executor import InProcessExecutor

    with pytest.raises(_Killed):
        scan(folder.root, out=tmp_path / "scan", progress=False, executor=InProcessExecutor(dies_in_third_fold),
             **FAST)
    stacked = []

    def recording(jobs, report=None):
        stacked.extend(job.fold for job in jobs)
        return run_folds_stacked(jobs, report=report)

    scores = scan(folder.root, out=tmp_path / "scan", progress=False, executor=StackedExecutor(recording), **FAST)
    assert stacked == [2] and scores.attrs["summary"]["folds_resumed"] == [0, 1]
    fresh = scan(folder.root, out=tmp_path / "fresh", progress=False, executor="stacked", **FAST)
    assert fresh.attrs["summary"]["device"].endswith("folds stacked in one network")
    truth = fresh.merge(folder.truth[["path", "is_noisy"]], on="path")
    assert roc_auc_score(truth.is_noisy, truth.mislabel_score) > 0.8


def test_cli_executor_stacked(tmp_path):
    folder = make_noisy_folder(tmp_path / "data", n_per_class=15)
    out = tmp_path / "scan"
    settings = ["--image-size", "16", "--folds", "3", "--epochs", "4", "--width", "8", "--batch-size", "16"]
    result = CliRunner().invoke(main, ["scan", str(folder.root), "--out", str(out), "-q", *settings,
                                       "--executor", "stacked"])
    assert result.exit_code == 0, result.output
    assert "folds stacked in one network" in result.output
    assert len(pd.read_csv(out / "scores.csv")) == len(folder.truth)
    refused = CliRunner().invoke(main, ["scan", str(folder.root), "--out", str(tmp_path / "x"), "-q",
                                        "--executor", "stacked", "--fold-workers", "2"])
    assert refused.exit_code == 2 and "--fold-workers only applies with --executor threads" in refused.output
