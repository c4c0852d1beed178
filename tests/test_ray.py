"""The Ray executor: same scores as in process, dead workers retried, progress, resume, missing extra.

Tests that need Ray start one small local instance for the module (``ray.init(num_cpus=2)``)
and skip when Ray is not installed; the missing-extra tests run either way.
"""

import importlib.util
import os
import shutil
import signal
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from noisy_data import assert_same_scores, make_noisy_folder, scan_on_one_thread

from labelaudit import scan
from labelaudit.cli import main
from labelaudit.errors import ClusterError, DeviceUnavailable, MissingExtra, SettingsError
from labelaudit.folds.executor import resolve_executor
from labelaudit.folds.training import run_fold

TINY = dict(image_size=16, folds=2, epochs=2, width=8, batch_size=16, lr=0.05)
TINY_ARGS = ["--image-size=16", "--folds=2", "--epochs=2", "--width=8", "--batch-size=16", "--lr=0.05"]

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason='Ray not installed (pip install -e ".[ray]")')


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local_scan(tmp_path_factory):
    """The in-process scan to compare with, on one thread: a Ray fold with 1 CPU trains on one
    thread, and PyTorch's CPU reductions (hence the scores) depend on the thread count."""
    base = tmp_path_factory.mktemp("ray")
    folder = make_noisy_folder(base / "data", n_per_class=20)
    return folder, base, scan_on_one_thread(folder.root, base / "local", **TINY)


# ----------------------------------------------------------------- equality, data, progress


@needs_ray
def test_ray_scan_equals_local_scan(ray_cluster, local_scan, monkeypatch):
    from labelaudit.folds.ray_executor import RayExecutor

    folder, base, local = local_scan
    puts, reports = [], []
    real_put = ray_cluster.put
    monkeypatch.setattr(ray_cluster, "put", lambda value, **kw: puts.append(value.shape) or real_put(value, **kw))
    executor = RayExecutor()
    real_map = executor.map
    executor.map = lambda jobs, report=None: real_map(jobs, report=lambda *a: (reports.append(a), report(*a)))

    scores = scan(folder.root, out=base / "ray", progress=True, executor=executor, **TINY)

    assert_same_scores(local, scores)
    np.testing.assert_allclose(np.load(base / "ray" / "pred_probs.npy"), np.load(base / "local" / "pred_probs.npy"),
                               rtol=1e-6, atol=1e-7)
    assert scores.attrs["summary"]["device"] == "ray (cpu, 1 CPU per fold)"
    assert puts == [(len(local), 16, 16, 3)]  # the images went into the object store once, for both folds
    # progress of both remote folds reached the driver, every trained image counted once
    assert {fold for _, fold, *_ in reports} == {0, 1}
    assert {epoch for _, _, epoch, *_ in reports} >= {1}
    assert sum(n for n, *_ in reports) == len(local) * TINY["epochs"]  # each image trains in K-1 = 1 fold


@needs_ray
def test_shared_path_images_give_theassert_same_scores(ray_cluster, local_scan, monkeypatch):
    from labelaudit.folds.ray_executor import RayExecutor

    folder, base, local = local_scan
    monkeypatch.setattr(ray_cluster, "put", lambda *a, **kw: pytest.fail("shared-path must not use the object store"))
    scores = scan(folder.root, out=base / "ray-path", progress=False, executor=RayExecutor(images="shared-path"),
                  **TINY)
    assert_same_scores(local, scores)


@needs_ray
def test_cli_scan_with_executor_ray(ray_cluster, local_scan):
    folder, base, local = local_scan
    result = CliRunner().invoke(main, ["scan", str(folder.root), "--out", str(base / "cli"), "-q", *TINY_ARGS,
                                       "--executor", "ray", "--cpus-per-fold", "1", "--fold-retries", "2"])
    assert result.exit_code == 0, result.output
    assert "on ray (cpu, 1 CPU per fold)" in result.output
    assert_same_scores(pd.read_csv(base / "local" / "scores.csv"), pd.read_csv(base / "cli" / "scores.csv"))


# ----------------------------------------------------------------------------- faults


@needs_ray
def test_worker_killed_mid_fold_is_retried(ray_cluster, local_scan, tmp_path):
    from labelaudit.folds.ray_executor import RayExecutor

    folder, _, local = local_scan
    marker = tmp_path / "killed-once"

    def dies_once_in_second_epoch_of_fold_2(job, report=None):  # pickled by value to the worker
        def report_or_die(n, fold, epoch, loss, acc):
            report(n, fold, epoch, loss, acc)
            if fold == 1 and epoch == 1 and not marker.exists():
                marker.touch()
                os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies mid-fold
        return run_fold(job, report=report_or_die)

    scores = scan(folder.root, out=tmp_path / "scan", progress=False,
                  executor=RayExecutor(run=dies_once_in_second_epoch_of_fold_2, retries=1), **TINY)
    assert marker.exists()
    assert_same_scores(local, scores)  # the retried fold trained from scratch, same seed, same result


@needs_ray
def test_worker_dying_past_its_retries_is_a_cluster_error(ray_cluster, local_scan, tmp_path):
    from labelaudit.folds.ray_executor import RayExecutor

    folder, _, _ = local_scan

    def always_dies(job, report=None):
        if job.fold == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return run_fold(job, report=report)

    with pytest.raises(ClusterError, match="fold 2 failed on the Ray cluster after 0 retries"):
        scan(folder.root, out=tmp_path / "scan", progress=False,
             executor=RayExecutor(run=always_dies, retries=0), **TINY)


@needs_ray
def test_ray_scan_resumes_from_stored_folds(ray_cluster, local_scan, tmp_path):
    """A killed driver leaves finished folds in SCAN_DIR/folds; the Ray run trains only the rest."""
    folder, base, local = local_scan
    (tmp_path / "scan" / "folds").mkdir(parents=True)
    shutil.copy(base / "local" / "folds" / "fold-0.npz", tmp_path / "scan" / "folds")
    scores = scan(folder.root, out=tmp_path / "scan", progress=False, executor="ray", **TINY)
    assert scores.attrs["summary"]["folds_resumed"] == [0]
    assert_same_scores(local, scores)


@needs_ray
def test_a_silent_progress_board_does_not_hold_up_the_fold(ray_cluster, monkeypatch):
    """A board that does not answer: a task's last push gives up after the timeout, the fold is not held up."""
    from labelaudit.folds import ray_executor

    monkeypatch.setattr(ray_executor, "_BOARD_TIMEOUT_S", 1.0)

    class SilentBoard:  # defined here: pickled by value to the actor's worker
        def push(self, *state):
            time.sleep(60)

    board = ray_cluster.remote(num_cpus=0)(SilentBoard).remote()
    reporter = ray_executor._BoardReporter(board, 0)
    flushed = threading.Event()
    threading.Thread(target=lambda: (reporter.flush(wait=True), flushed.set()), daemon=True).start()
    try:
        assert flushed.wait(20), "the last push still waits for the silent board"
    finally:
        ray_cluster.kill(board)
    started = time.monotonic()
    reporter.flush(wait=True)  # the board was given up: no further waits
    assert time.monotonic() - started < 0.5


@needs_ray
def test_a_slow_starting_progress_board_holds_up_nothing_and_loses_no_count(ray_cluster):
    """On a busy machine the board's worker took 40 s to start: the driver's 30 s read timed out and the
    scan ran without progress. Reads are now polled, never waited on while folds run, and the board is
    read once more after the last fold, so the final counts arrive."""
    from labelaudit.folds.ray_executor import RayExecutor

    class SlowBoard:  # defined here: pickled by value to the actor's worker
        def __init__(self):
            self.reads = 0

        def read(self):
            self.reads += 1
            if self.reads == 1:
                time.sleep(10)  # as if still starting
            return {0: (1, 10, 0.5, 0.9), 1: (1, 20, 0.5, 0.9)}

    @ray_cluster.remote(num_cpus=0)
    def fold_result(fold):
        return fold

    board = ray_cluster.remote(num_cpus=0)(SlowBoard).remote()
    pending = {fold_result.remote(k): k for k in (0, 1)}
    reports, times = [], []
    started = time.monotonic()
    try:
        for result in RayExecutor(poll_s=0.05)._collect(pending, board, lambda *a: reports.append(a)):
            times.append((result, len(reports)))
    finally:
        ray_cluster.kill(board)
    assert sorted(r for r, _ in times) == [0, 1] and time.monotonic() - started >= 9
    assert all(n_reports == 0 for _, n_reports in times)  # both yielded while the first read was unanswered
    assert sorted((fold, n) for n, fold, *_ in reports) == [(0, 10), (1, 20)]  # the final read's counts


# ------------------------------------------------------------------ resources, options


@needs_ray
def test_gpu_share_follows_the_cluster_and_the_device_setting():
    from labelaudit.folds.ray_executor import RayExecutor

    assert RayExecutor()._resolve_gpus("auto", cluster_gpus=0) == 0
    assert RayExecutor()._resolve_gpus("auto", cluster_gpus=4) == 1
    assert RayExecutor()._resolve_gpus("cpu", cluster_gpus=4) == 0
    assert RayExecutor(gpus_per_fold=0.5)._resolve_gpus("cuda", cluster_gpus=1) == 0.5
    with pytest.raises(DeviceUnavailable, match="no GPU"):
        RayExecutor()._resolve_gpus("cuda", cluster_gpus=0)
    with pytest.raises(DeviceUnavailable):
        RayExecutor(gpus_per_fold=1)._resolve_gpus("auto", cluster_gpus=0)
    with pytest.raises(SettingsError, match="--device cpu"):
        RayExecutor(gpus_per_fold=1)._resolve_gpus("cpu", cluster_gpus=4)


@needs_ray
@pytest.mark.parametrize("options", [{"gpus_per_fold": 1.5}, {"gpus_per_fold": -1}, {"cpus_per_fold": 0},
                                     {"retries": -1}, {"images": "nfs"}])
def test_invalid_ray_options_are_settings_errors(options):
    from labelaudit.folds.ray_executor import RayExecutor

    with pytest.raises(SettingsError, match="invalid Ray executor option"):
        RayExecutor(**options)


def test_unknown_executor_name():
    with pytest.raises(SettingsError, match="unknown executor 'spark'"):
        resolve_executor("spark")


def test_ray_options_need_executor_ray(tmp_path):
    result = CliRunner().invoke(main, ["scan", str(tmp_path), "--ray-address", "ray://head:10001"])
    assert result.exit_code == 2 and "--ray-address only apply with --executor ray" in result.output


def test_executor_ray_without_ray_fails_at_once(tmp_path, monkeypatch):
    """Before anything is loaded (the empty folder would be a DatasetError), with the install command."""
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MissingExtra, match=r"pip install \"ray\[client\]>=2.9\""):
        scan(tmp_path, out=tmp_path / "scan", executor="ray")
    result = CliRunner().invoke(main, ["scan", str(tmp_path), "--out", str(tmp_path / "scan"), "--executor", "ray"])
    assert result.exit_code == 1
    assert 'pip install "ray[client]>=2.9"' in result.output and "Traceback" not in result.output
    assert not (tmp_path / "scan").exists()
