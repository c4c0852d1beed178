"""Host <-> device copies that never make the host wait for the GPU in a training step.

A plain ``tensor.to("cuda")`` of ordinary (pageable) host memory synchronises the CUDA
stream: the host waits until every queued kernel has run before it can queue the next
step, and the GPU idles while Python does. Reading a value back (``float(t)``, ``.item()``)
does the same. A small network on a large GPU is bound by exactly that gap, so the
training loops (:mod:`labelaudit.folds.training`, :mod:`labelaudit.folds.stacked`) send
everything they draw on the CPU through :func:`to_device` (pinned memory, asynchronous
copy) and read their progress figures through :class:`Readback` (an asynchronous copy
read once the GPU got there). On the CPU both are plain, immediate operations.

``tests/test_cuda.py`` checks on a device, with PyTorch's sync debug mode, that the number
of synchronisations of a fold does not grow with its number of steps.
"""

from __future__ import annotations

import torch

__all__ = ["to_device", "Readback"]


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``, copied from the host without waiting for the device.

    Parameters
    ----------
    tensor : torch.Tensor
        Any shape; typically indices or random draws made on the CPU.
    device : torch.device
        Where it is needed.

    Returns
    -------
    torch.Tensor
        ``tensor`` itself when it is already on ``device``. A host tensor bound for CUDA is
        made dense, staged in pinned memory and copied asynchronously (PyTorch's caching host
        allocator keeps that memory until the copy has run). Dense matters: a strided slice
        would be copied through a pageable temporary, which may synchronise.
    """
    if tensor.device.type == "cpu" and device.type == "cuda":
        return tensor.contiguous().pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


class Readback:
    """Small device tensors read back on the host once the device has computed them.

    :meth:`push` starts an asynchronous copy to pinned host memory (CUDA) and :meth:`pop`
    returns its values once the copy is done, else None, so a progress report never stalls
    training; its figures may arrive a few steps late. One copy is in flight at a time:
    a push while one is pending is dropped. On the CPU the values are read at once.
    """

    def __init__(self) -> None:
        self._values: torch.Tensor | None = None
        self._ready: torch.cuda.Event | None = None

    def push(self, values: torch.Tensor) -> None:
        """Start reading ``values`` (any shape, float) back, unless a read is still pending."""
        if self._values is not None:
            return
        if values.device.type != "cuda":
            self._values = values.detach().clone()
            return
        self._values = values.detach().to("cpu", non_blocking=True)
        self._ready = torch.cuda.Event()
        self._ready.record(torch.cuda.current_stream(values.device))

    def pop(self) -> list | None:
        """The pushed values as (nested) Python floats once they are on the host, else None."""
        if self._values is None or (self._ready is not None and not self._ready.query()):
            return None
        values, self._values, self._ready = self._values.tolist(), None, None
        return values
