"""The scanner on a real CUDA device (issue 8): skipped where PyTorch sees no CUDA device.

Run on an accelerator with ``python -m pytest -q -m cuda``. The CPU suite only checks that
these tests are collected and skipped; ``--device cuda`` without CUDA is tested in
``test_training.py`` (a clear :class:`~labelaudit.errors.DeviceUnavailable`).
"""

import numpy as np
import pandas as pd
import pytest
import torch
from noisy_data import FAST, make_noisy_folder
from sklearn.metrics import roc_auc_score

from labelaudit import scan
from labelaudit.config import ScanConfig
from labelaudit.folds import training
from labelaudit.folds.executor import InProcessExecutor
from labelaudit.folds.training import FoldJob, run_fold

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

CUDA_FAST = {**FAST, "device": "cuda"}


def _auroc(folder, scores: pd.DataFrame) -> float:
    truth = scores.merge(folder.truth[["path", "is_noisy"]], on="path")
    return roc_auc_score(truth.is_noisy, truth.mislabel_score)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_noisy_folder(tmp_path_factory.mktemp("cuda") / "data", n_per_class=50)


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_scan_on_cuda_ranks_the_planted_errors(folder, tmp_path, precision):
    scores = scan(folder.root, out=tmp_path / "scan", progress=False, precision=precision, **CUDA_FAST)
    summary = scores.attrs["summary"]
    assert summary["device"].startswith("cuda")
    assert np.isfinite(scores.mislabel_score).all()
    assert _auroc(folder, scores) > 0.8


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_scan_on_cuda_compiles_and_ranks_like_eager(folder, tmp_path, mode):
    """``--compile`` on the device: no fall-back to eager (it would hide a compiler problem), same quality."""
    import warnings

    from labelaudit.errors import CompileFallback

    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallback)
        compiled = scan(folder.root, out=tmp_path / "compiled", progress=False, compile=mode, **CUDA_FAST)
    eager = scan(folder.root, out=tmp_path / "eager", progress=False, **CUDA_FAST)
    assert abs(_auroc(folder, compiled) - _auroc(folder, eager)) < 0.1


def test_cuda_and_cpu_agree_in_meaning(folder, tmp_path):
    """Not bit-identical (other kernels), but the same ranking quality on the same data."""
    on_gpu = scan(folder.root, out=tmp_path / "gpu", progress=False, precision="fp32", **CUDA_FAST)
    on_cpu = scan(folder.root, out=tmp_path / "cpu", progress=False, precision="fp32", **{**FAST, "device": "cpu"})
    assert abs(_auroc(folder, on_gpu) - _auroc(folder, on_cpu)) < 0.1


def test_same_seed_same_scores_on_cuda(folder, tmp_path):
    first = scan(folder.root, out=tmp_path / "a", progress=False, **CUDA_FAST)
    second = scan(folder.root, out=tmp_path / "b", progress=False, **CUDA_FAST)
    pd.testing.assert_frame_equal(first, second)


def test_images_streamed_from_the_host_train_like_resident_ones(tmp_path, monkeypatch):
    """Data too large for the device is copied batch by batch: same records as resident data."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    labels = rng.integers(0, 4, 64).astype(np.int64)
    config = {**FAST, "device": "cuda", "precision": "fp32"}
    job = FoldJob(fold=0, train_idx=np.arange(0, 64, 2), holdout_idx=np.arange(1, 64, 2),
                  images_path=str(tmp_path / "images.npy"), labels=labels, n_classes=4,
                  config=ScanConfig(**config).to_dict())
    resident = run_fold(job)
    monkeypatch.setattr(training, "_free_cuda_bytes", lambda device: 0)  # nothing "fits": stream
    streamed = run_fold(job)
    np.testing.assert_allclose(streamed.records["holdout_probs"], resident.records["holdout_probs"], atol=1e-5)
    np.testing.assert_allclose(streamed.records["train_losses"], resident.records["train_losses"], atol=1e-5)


class _Killed(Exception):
    pass


def test_interrupted_cuda_scan_resumes(folder, tmp_path):
    def dies_in_second_fold(job, report=None):
        if job.fold == 1:
            raise _Killed
        return run_fold(job, report=report)

    with pytest.raises(_Killed):
        scan(folder.root, out=tmp_path / "scan", progress=False, executor=InProcessExecutor(dies_in_second_fold),
             **CUDA_FAST)
    resumed = scan(folder.root, out=tmp_path / "scan", progress=False, **CUDA_FAST)
    assert resumed.attrs["summary"]["folds_resumed"] == [0]
    fresh = scan(folder.root, out=tmp_path / "fresh", progress=False, **CUDA_FAST)
    pd.testing.assert_frame_equal(resumed, fresh)


def test_threaded_folds_run_in_their_own_streams_and_rank_like_sequential_ones(folder, tmp_path):
    """``--executor threads`` on the device: each fold in a non-default stream, same ranking quality."""
    from labelaudit.folds.executor import ThreadedExecutor

    streams = []

    def recording(job, report=None):
        streams.append(torch.cuda.current_stream() != torch.cuda.default_stream())
        return run_fold(job, report=report)

    threaded = scan(folder.root, out=tmp_path / "threads", progress=False,
                    executor=ThreadedExecutor(workers=3, run=recording), **CUDA_FAST)
    local = scan(folder.root, out=tmp_path / "local", progress=False, **CUDA_FAST)
    assert streams == [True] * CUDA_FAST["folds"]
    assert threaded.attrs["summary"]["device"].endswith("3 folds at a time")
    assert abs(_auroc(folder, threaded) - _auroc(folder, local)) < 0.1


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_stacked_folds_on_cuda_rank_like_sequential_ones(folder, tmp_path, precision):
    """``--executor stacked`` on the device (grouped convolutions in cuDNN): same ranking quality."""
    stacked = scan(folder.root, out=tmp_path / "stacked", progress=False, executor="stacked", precision=precision,
                   **CUDA_FAST)
    local = scan(folder.root, out=tmp_path / "local", progress=False, precision=precision, **CUDA_FAST)
    assert stacked.attrs["summary"]["device"].startswith("cuda")
    assert abs(_auroc(folder, stacked) - _auroc(folder, local)) < 0.1


def test_stacked_folds_on_cuda_are_the_sequential_folds_at_a_small_learning_rate(tmp_path):
    """As ``tests/test_stacked.py`` checks on the CPU: each member is exactly its fold's model."""
    from labelaudit.folds.stacked import run_folds_stacked

    rng = np.random.default_rng(0)
    labels = np.tile([0, 1, 2], 16)
    np.save(tmp_path / "images.npy", (rng.uniform(0, 80, (48, 16, 16, 3)) + labels[:, None, None, None] * 80)
            .astype(np.uint8))
    cfg = ScanConfig(image_size=16, epochs=4, width=4, batch_size=8, lr=1e-4, folds=3, precision="fp32",
                     device="cuda")
    folds = np.arange(48) % 3
    jobs = [FoldJob(fold=k, train_idx=np.flatnonzero(folds != k), holdout_idx=np.flatnonzero(folds == k),
                    images_path=str(tmp_path / "images.npy"), labels=labels, n_classes=3, config=cfg.to_dict())
            for k in range(3)]
    for seq, st in zip((run_fold(job) for job in jobs), run_folds_stacked(jobs)):
        for name in ("train_losses", "holdout_probs", "view_losses"):
            # float32 convolutions run in TF32 on Ampere and later (PyTorch's default for cuDNN):
            # grouped and dense kernels round differently at ~1e-3
            np.testing.assert_allclose(st.records[name], seq.records[name], atol=5e-3, err_msg=name)


def _synchronisations(run) -> tuple[int, int]:
    """How often ``run()`` makes the host wait for the device: PyTorch's sync debug mode warnings, and
    host-to-device copies from pageable memory in the profiler's trace (the driver may synchronise
    for those; the debug mode does not see them)."""
    import warnings

    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught, profile(activities=[ProfilerActivity.CUDA]) as trace:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
            torch.cuda.synchronize()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = sum("called a synchronizing CUDA operation" in str(w.message) for w in caught)
    pageable = sum("Memcpy HtoD (Pageable" in event.name for event in trace.events())
    return syncs, pageable


@pytest.mark.parametrize("augment", ["mirror-views", "flip-augment"])
@pytest.mark.parametrize("streamed", [False, True], ids=["resident", "streamed"])
@pytest.mark.parametrize("executor", ["local", "stacked"])
def test_training_steps_never_wait_for_the_device(tmp_path, monkeypatch, executor, streamed, augment):
    """Issue 8: no host sync in the hot loop. A fold of 8x as many steps synchronises as often.

    4 vs 32 steps per epoch: the progress figures are pushed once vs twice per epoch, so their
    read-back is inside what is compared. Both batch sizes are warmed up first (cuDNN handles, the
    caching allocators); the counts must be positive (the set-up copies and the final read-back
    synchronise), else the instruments saw nothing and the comparison would say nothing.
    """
    from labelaudit.folds.stacked import run_folds_stacked

    rng = np.random.default_rng(0)
    np.save(tmp_path / "images.npy", rng.integers(0, 256, (288, 16, 16, 3), dtype=np.uint8))
    labels = rng.integers(0, 4, 288).astype(np.int64)
    if streamed:
        monkeypatch.setattr(training, "_free_cuda_bytes", lambda device: 0)
    views = {"flip": True} if augment == "mirror-views" else {"flip": False, "flip_augment": True,
                                                              "label_smoothing": 0.1}

    def jobs(batch_size: int) -> list[FoldJob]:
        cfg = ScanConfig(**{**CUDA_FAST, "batch_size": batch_size, "epochs": 4, **views})
        folds = np.arange(288) % 3
        return [FoldJob(fold=k, train_idx=np.flatnonzero(folds != k), holdout_idx=np.flatnonzero(folds == k),
                        images_path=str(tmp_path / "images.npy"), labels=labels, n_classes=4, config=cfg.to_dict())
                for k in range(3)]

    def train(batch_size: int) -> None:
        progress = lambda *figures: None  # noqa: E731 -- the figures' read-back is part of the loop
        if executor == "stacked":
            run_folds_stacked(jobs(batch_size), report=progress)
        else:
            for job in jobs(batch_size):
                run_fold(job, report=progress)

    train(48), train(6)  # warm-up of both shapes
    few_steps, many_steps = _synchronisations(lambda: train(48)), _synchronisations(lambda: train(6))
    assert few_steps[0] > 0 and few_steps[1] > 0, few_steps
    assert many_steps == few_steps, (few_steps, many_steps)


def test_transfers_to_and_from_the_device_arrive():
    from labelaudit.folds.transfer import Readback, to_device

    on_device = to_device(torch.arange(6), torch.device("cuda"))
    assert on_device.is_cuda and on_device.tolist() == list(range(6))
    stats = Readback()
    stats.push((on_device * 2).float())
    assert stats._values.is_pinned()  # an asynchronous copy into page-locked memory
    torch.cuda.synchronize()
    assert stats.pop() == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
