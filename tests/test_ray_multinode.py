"""The Ray executor past one machine: folds on several Ray nodes, and a node lost mid-fold.

``ray.cluster_utils.Cluster`` starts a head and two worker nodes on this machine, each a
separate raylet with its own object store and worker processes, as on separate hosts (on
the loopback address, see ``conftest.py``). The head has no CPU, so every fold must run on
a worker node and fetch the images from the driver's object store across nodes. Skipped when
Ray is not installed.
"""

import importlib.util
import threading
import time

import pytest
from noisy_data import assert_same_scores, make_noisy_folder, scan_on_one_thread

from labelaudit import scan
from labelaudit.folds.training import run_fold

TINY = dict(image_size=16, folds=2, epochs=3, width=8, batch_size=16, lr=0.05)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                reason='Ray not installed (pip install -e ".[ray]")')


@pytest.fixture(scope="module")
def cluster():
    """A head without CPUs and two 1-CPU worker nodes; ``ray`` connected to it."""
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()  # another module's local instance, if any
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [nodes.add_node(num_cpus=1) for _ in range(2)]
    ray.init(address=nodes.address, log_to_driver=False)
    nodes.wait_for_nodes()
    yield nodes, workers
    ray.shutdown()
    nodes.shutdown()


@pytest.fixture(scope="module")
def local_scan(tmp_path_factory):
    """The in-process scan to compare with, on one thread (a 1-CPU Ray fold trains on one thread)."""
    base = tmp_path_factory.mktemp("multinode")
    folder = make_noisy_folder(base / "data", n_per_class=20)
    return folder, scan_on_one_thread(folder.root, base / "local", **TINY)


def test_folds_spread_over_worker_nodes_and_equal_the_local_scan(cluster, local_scan, tmp_path):
    from labelaudit.folds.ray_executor import RayExecutor

    nodes, workers = cluster
    folder, local = local_scan
    where = tmp_path / "where"
    where.mkdir()

    def records_its_node(job, report=None):  # pickled by value to the worker: no module-level names of this file
        import ray

        (where / f"fold-{job.fold}").write_text(ray.get_runtime_context().get_node_id())
        return run_fold(job, report=report)

    scores = scan(folder.root, out=tmp_path / "scan", progress=False, executor=RayExecutor(run=records_its_node), **TINY)

    ran_on = {path.read_text() for path in where.iterdir()}
    assert len(ran_on) == 2, "the two folds should train at once, one on each 1-CPU worker node"
    assert ran_on == {node.node_id for node in workers}  # never the CPU-less head, where the driver put the images
    assert_same_scores(local, scores)


def test_a_node_lost_mid_fold_is_retried_on_another_node(cluster, local_scan, tmp_path):
    """A worker node dies (its raylet, object store and workers with it) while fold 2 trains there:
    Ray runs the fold again on a node that is left, from scratch, and the scan equals the local one."""
    from labelaudit.folds.ray_executor import RayExecutor

    nodes, workers = cluster
    folder, local = local_scan
    doomed = tmp_path / "doomed-node"

    def waits_for_its_node_to_die(job, report=None):
        import ray

        def report_then_wait(n, fold, epoch, loss, acc):
            report(n, fold, epoch, loss, acc)
            if fold == 1 and epoch == 1 and not doomed.exists():
                doomed.write_text(ray.get_runtime_context().get_node_id())
                time.sleep(120)  # the test removes this node meanwhile
        result = run_fold(job, report=report_then_wait)
        (tmp_path / f"finished-fold-{job.fold}").write_text(ray.get_runtime_context().get_node_id())
        return result

    removed = []

    def remove_the_node_of_fold_2():
        deadline = time.monotonic() + 120
        while not doomed.exists() or not doomed.read_text():
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)
        node = next(n for n in workers if n.node_id == doomed.read_text())
        nodes.remove_node(node, allow_graceful=False)
        removed.append(node)

    killer = threading.Thread(target=remove_the_node_of_fold_2, daemon=True)
    killer.start()
    try:
        scores = scan(folder.root, out=tmp_path / "scan", progress=False,
                      executor=RayExecutor(run=waits_for_its_node_to_die, retries=2), **TINY)
    finally:
        killer.join(timeout=130)
        for node in removed:  # leave the cluster as the module found it
            workers[workers.index(node)] = nodes.add_node(num_cpus=1)
        nodes.wait_for_nodes()
    assert removed, "fold 2 never reached its second epoch on a worker node"
    assert (tmp_path / "finished-fold-1").read_text() != doomed.read_text()  # it finished elsewhere
    assert_same_scores(local, scores)


def test_a_dead_progress_board_stops_the_progress_not_the_scan(cluster, local_scan, tmp_path, monkeypatch):
    """Progress is advisory: the actor that collects it dies mid-fold, the folds and the scan go on."""
    import ray

    from labelaudit.folds.ray_executor import RayExecutor

    folder, local = local_scan
    boards, started, killed = [], tmp_path / "fold-2-in-epoch-2", tmp_path / "board-killed"
    real_board = RayExecutor._progress_board
    monkeypatch.setattr(RayExecutor, "_progress_board", lambda self: boards.append(real_board(self)) or boards[-1])

    def pauses_in_epoch_2(job, report=None):
        def report_then_pause(n, fold, epoch, loss, acc):
            report(n, fold, epoch, loss, acc)
            if fold == 1 and epoch == 1 and not started.exists():
                report.flush(wait=True)  # on the board before it dies, however fast the epochs (a warm worker)
                started.touch()
                deadline = time.monotonic() + 120
                while not killed.exists() and time.monotonic() < deadline:
                    time.sleep(0.05)  # the board is killed meanwhile; the next pushes find it dead
        return run_fold(job, report=report_then_pause)

    def kill_the_board():
        deadline = time.monotonic() + 120
        while not (started.exists() and reports) and time.monotonic() < deadline:  # the driver forwarded some
            time.sleep(0.05)
        ray.kill(boards[0])
        while time.monotonic() < deadline:
            try:
                ray.get(boards[0].read.remote(), timeout=10)
            except ray.exceptions.RayActorError:
                killed.touch()  # dead for sure: fold 2 goes on
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_board, daemon=True)
    killer.start()
    reports = []
    executor = RayExecutor(run=pauses_in_epoch_2, retries=0, poll_s=0.1)
    real_map = executor.map
    executor.map = lambda jobs, report=None: real_map(jobs, report=lambda *a: (reports.append(a), report(*a)))
    scores = scan(folder.root, out=tmp_path / "scan", progress=True, executor=executor, **TINY)
    killer.join(timeout=130)
    assert started.exists() and killed.exists() and reports  # progress arrived, then the board died mid-fold
    assert_same_scores(local, scores)


def test_the_progress_board_lives_on_the_drivers_node(cluster):
    """Not on a worker node, whose loss would take the progress along (the driver's node is the head here)."""
    import ray

    from labelaudit.folds.ray_executor import RayExecutor

    nodes, workers = cluster
    executor = RayExecutor()
    board = executor._progress_board()
    try:
        where = ray.get(board.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id()))
    finally:
        ray.kill(board)
    assert where == ray.get_runtime_context().get_node_id() == nodes.head_node.node_id
    assert where not in {node.node_id for node in workers}
