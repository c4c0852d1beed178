"""Host <-> device transfers of the training loops (labelaudit.folds.transfer) and the epoch's draws.

The CUDA side (pinned memory, no synchronisation per step) is checked in ``test_cuda.py``.
"""

import numpy as np
import torch

from labelaudit.config import ScanConfig
from labelaudit.folds import training
from labelaudit.folds.transfer import Readback, to_device


def test_to_device_keeps_a_cpu_tensor_as_it_is():
    t = torch.arange(5)
    assert to_device(t, torch.device("cpu")) is t


def test_readback_on_the_cpu_gives_the_values_at_once_and_once():
    stats = Readback()
    assert stats.pop() is None
    stats.push(torch.tensor([0.5, 0.25]))
    stats.push(torch.tensor([9.0, 9.0]))  # dropped: a read is pending
    assert stats.pop() == [0.5, 0.25]
    assert stats.pop() is None
    stats.push(torch.tensor([[1.0, 2.0]]))
    assert stats.pop() == [[1.0, 2.0]]


def test_readback_copies_what_it_is_given():
    values = torch.tensor([1.0])
    stats = Readback()
    stats.push(values)
    values += 1  # the training loop reuses its buffers
    assert stats.pop() == [1.0]


def test_epoch_draws_are_the_step_by_step_draws():
    """One epoch drawn at once consumes the generator as drawing batch by batch did (same scans, same seeds)."""
    cfg = ScanConfig(crop_padding=2, flip=False, flip_augment=True)
    batches = training._batch_bounds(37, 8)
    shifts, mirrors = training._epoch_draws(batches, cfg, torch.Generator().manual_seed(3), torch.device("cpu"))
    step_by_step = torch.Generator().manual_seed(3)
    expected_shifts, expected_mirrors = [], []
    for start, stop in batches:
        expected_shifts.append(training.translation_draws(stop - start, 2, step_by_step))
        expected_mirrors.append(training.mirror_draws(stop - start, step_by_step))
    assert torch.equal(shifts, torch.cat(expected_shifts, dim=1))
    assert torch.equal(mirrors, torch.cat(expected_mirrors))
    assert shifts.shape == (2, 37) and mirrors.shape == (37,)


def test_epoch_draws_without_augmentation_take_nothing_from_the_stream():
    cfg = ScanConfig(crop_padding=0, flip_augment=False)
    generator = torch.Generator().manual_seed(3)
    assert training._epoch_draws([(0, 8)], cfg, generator, torch.device("cpu")) == (None, None)
    assert torch.equal(torch.rand(3, generator=generator), torch.rand(3, generator=torch.Generator().manual_seed(3)))


def test_data_on_the_cpu_keeps_its_indices_there():
    data = training._DeviceData(np.zeros((4, 8, 8, 3), dtype=np.uint8), torch.device("cpu"))
    assert data.on_device and data.index_device == torch.device("cpu")
    assert data.batch(torch.tensor([0, 2])).shape == (2, 3, 8, 8)
