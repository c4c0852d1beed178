"""Several folds at once in threads of one process (``--executor threads``)."""

import threading
import time

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
from labelaudit.folds.executor import InProcessExecutor, ThreadedExecutor, resolve_executor
from labelaudit.folds.training import FoldJob, run_fold


@pytest.fixture
def jobs(tmp_path):
    """Three fold jobs of a 3-class, 48-image set (each fold holds out 16 images)."""
    rng = np.random.default_rng(0)
    labels = np.tile([0, 1, 2], 16)
    images = (rng.uniform(0, 80, (48, 16, 16, 3)) + labels[:, None, None, None] * 80).astype(np.uint8)
    np.save(tmp_path / "images.npy", images)
    cfg = ScanConfig(image_size=16, epochs=4, width=4, batch_size=8, lr=0.05, folds=3, precision="fp32")
    folds = np.arange(48) % 3
    return [FoldJob(fold=k, train_idx=np.flatnonzero(folds != k), holdout_idx=np.flatnonzero(folds == k),
                    images_path=str(tmp_path / "images.npy"), labels=labels, n_classes=3, config=cfg.to_dict(),
                    embed_all=k == 0)
            for k in range(3)]


def _fold_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("labelaudit-fold")]


def test_threaded_folds_are_the_sequential_folds(jobs, one_thread):
    sequential = {r.fold: r for r in InProcessExecutor().map(jobs)}
    rng_state = torch.get_rng_state()
    threaded = {r.fold: r for r in ThreadedExecutor(workers=3).map(jobs)}
    assert torch.equal(torch.get_rng_state(), rng_state)  # the caller's random stream is untouched
    assert sorted(threaded) == [0, 1, 2]
    for k, result in threaded.items():
        assert set(result.records) == set(sequential[k].records)
        for name, array in result.records.items():
            np.testing.assert_array_equal(array, sequential[k].records[name], err_msg=f"fold {k} {name}")
    assert not _fold_threads()


def test_threads_are_split_between_the_folds_and_restored(jobs):
    seen = []

    def recording(job, report=None):
        seen.append(torch.get_num_threads())
        return run_fold(job, report=report)

    saved = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        list(ThreadedExecutor(workers=2, run=recording).map(jobs))
        assert seen == [2, 2, 2] and torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(saved)


def test_cudnn_flags_are_held_during_the_folds_and_restored(jobs):
    cudnn = torch.backends.cudnn
    saved = cudnn.benchmark, cudnn.deterministic
    seen = []

    def recording(job, report=None):
        result = run_fold(job, report=report)  # its own enter/exit must not undo the executor's
        seen.append((cudnn.benchmark, cudnn.deterministic))
        return result

    cudnn.benchmark, cudnn.deterministic = True, False
    try:
        list(ThreadedExecutor(workers=3, run=recording).map(jobs))
        assert seen == [(False, True)] * 3
        assert (cudnn.benchmark, cudnn.deterministic) == (True, False)
    finally:
        cudnn.benchmark, cudnn.deterministic = saved


def test_progress_reports_come_one_at_a_time_and_add_up(jobs):
    inside, overlaps, images = threading.Lock(), [], []

    def report(n, fold, epoch, loss, acc):
        if not inside.acquire(blocking=False):
            overlaps.append(fold)
            return
        try:
            images.append(n)
            time.sleep(0.0005)  # widen the window a concurrent call would hit
        finally:
            inside.release()

    list(ThreadedExecutor(workers=3).map(jobs, report=report))
    assert not overlaps
    assert sum(images) == sum(len(job.train_idx) for job in jobs) * 4


def test_a_failing_fold_stops_the_others_and_its_error_comes_through(jobs):
    reported = {0: 0, 2: 0}

    def fold_1_diverges(job, report=None):
        if job.fold == 1:
            time.sleep(0.05)  # let the others start
            raise TrainingDiverged("fold 2 diverged")

        def counting(n, fold, *rest):
            reported[fold] += n
            report(n, fold, *rest)

        return run_fold(job, report=counting)

    slow = [FoldJob(**{**vars(job), "config": {**job.config, "epochs": 200}}) for job in jobs]
    started = time.perf_counter()
    with pytest.raises(TrainingDiverged, match="fold 2 diverged"):
        list(ThreadedExecutor(workers=3, run=fold_1_diverges).map(slow))
    assert time.perf_counter() - started < 30  # 200 epochs each would take minutes
    full = len(slow[0].train_idx) * 200
    assert all(0 < n < full for n in reported.values()), reported
    assert not _fold_threads()


def test_closing_the_results_stops_the_folds_still_running(jobs):
    results = ThreadedExecutor(workers=2).map([jobs[0], FoldJob(**{**vars(jobs[1]), "config": {
        **jobs[1].config, "epochs": 300}}), jobs[2]])
    first = next(results)
    assert first.fold in (0, 2)
    started = time.perf_counter()
    results.close()  # e.g. Ctrl-C, or an error while storing a result
    assert time.perf_counter() - started < 30
    assert not _fold_threads()


def test_compile_is_refused_with_threads(jobs):
    compiled = [FoldJob(**{**vars(job), "config": {**job.config, "compile": "default"}}) for job in jobs]
    with pytest.raises(SettingsError, match="not thread-safe"):
        list(ThreadedExecutor().map(compiled))


def test_executor_names_and_worker_count():
    assert isinstance(resolve_executor("threads"), ThreadedExecutor)
    with pytest.raises(SettingsError, match="at least 1"):
        ThreadedExecutor(workers=0)
    assert ThreadedExecutor(workers=3).describe(torch.device("cpu")).endswith("3 folds at a time")


class _Killed(Exception):
    pass


def test_threaded_scan_resumes_and_scores_like_a_local_scan(tmp_path, one_thread):
    folder = make_noisy_folder(tmp_path / "data", n_per_class=20)
    settings = {**FAST, "precision": "fp32"}

    def dies_in_second_fold(job, report=None):
        if job.fold == 1:
            raise _Killed
        return run_fold(job, report=report)

    with pytest.raises(_Killed):
        scan(folder.root, out=tmp_path / "scan", progress=False,
             executor=ThreadedExecutor(workers=1, run=dies_in_second_fold), **settings)
    assert (tmp_path / "scan" / "folds" / "fold-0.npz").exists()
    resumed = scan(folder.root, out=tmp_path / "scan", progress=False, executor="threads", **settings)
    assert resumed.attrs["summary"]["folds_resumed"] == [0]
    assert resumed.attrs["summary"]["device"].endswith("2 folds at a time")
    local = scan(folder.root, out=tmp_path / "local", progress=False, **settings)
    pd.testing.assert_frame_equal(resumed, local)


def test_cli_executor_threads(tmp_path):
    folder = make_noisy_folder(tmp_path / "data", n_per_class=15)
    out = tmp_path / "scan"
    settings = ["--image-size", "16", "--folds", "3", "--epochs", "4", "--width", "8", "--batch-size", "16"]
    result = CliRunner().invoke(main, ["scan", str(folder.root), "--out", str(out), "-q", *settings,
                                       "--executor", "threads", "--fold-workers", "3"])
    assert result.exit_code == 0, result.output
    assert "3 folds at a time" in result.output
    assert len(pd.read_csv(out / "scores.csv")) == len(folder.truth)


@pytest.mark.parametrize("args, message", [
    (["--fold-workers", "2"], "--fold-workers only applies with --executor threads"),
    (["--executor", "threads", "--ray-address", "ray://x:1"], "--ray-address only apply with --executor ray"),
    (["--executor", "threads", "--fold-workers", "0"], "--fold-workers"),
    (["--executor", "threads", "--compile", "default"], "not thread-safe"),  # before the data is read
])
def test_cli_thread_options_errors(tmp_path, args, message):
    folder = make_noisy_folder(tmp_path / "data", n_per_class=3)
    out = tmp_path / "never"
    result = CliRunner().invoke(main, ["scan", str(folder.root), "--out", str(out), "-q", *args])
    assert result.exit_code != 0 and message in result.output, result.output
    assert "Traceback" not in result.output and not out.exists()
