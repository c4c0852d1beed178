"""Shared fixtures: small seeded image datasets with injected label noise and known truth."""

import os

import pytest

# Ray instances started by the tests listen on the loopback address only: Ray otherwise binds
# its servers to the machine's outward-facing address (read before Ray is first imported).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
from noisy_data import FAST, NoisyFolder, make_noisy_folder

__all__ = ["FAST", "NoisyFolder", "make_noisy_folder"]


@pytest.fixture
def one_thread():
    """One PyTorch thread for the test, so that folds trained alone or side by side round alike."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture
def noisy_folder(tmp_path) -> NoisyFolder:
    return make_noisy_folder(tmp_path / "data")


@pytest.fixture(scope="session")
def scanned(tmp_path_factory):
    """One real scan of a generated noisy dataset, shared by read-only tests."""
    from labelaudit import scan

    base = tmp_path_factory.mktemp("scanned")
    folder = make_noisy_folder(base / "data", n_per_class=50)
    scores = scan(folder.root, out=base / "scan", progress=False, **FAST)
    return folder, base / "scan", scores
