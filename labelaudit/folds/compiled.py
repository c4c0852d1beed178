"""``torch.compile`` of a fold model, with a fall-back to eager execution.

Compilation is an execution detail like the device (``--compile``, not part of the fold
fingerprint): the same model, the same parameters, fused kernels. It pays where a small net
leaves an accelerator waiting on Python and kernel launches (``reduce-overhead`` uses CUDA
graphs); on the CPU it was slower than eager in a probe (README, "Detection engine: what was
tried"), so it is off by default.

A compiler that fails (no C++ toolchain, an unsupported operator, a backend error on an odd
shape) must not cost the user the scan: :class:`CompiledModel` then warns once, names the
error, and runs the same module eagerly from that call on.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from labelaudit.errors import CompileFallback, first_line

__all__ = ["COMPILE_MODES", "CompileFallback", "CompiledModel", "maybe_compile"]

#: ``--compile`` values: ``off`` or a :func:`torch.compile` mode.
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


class CompiledModel(nn.Module):
    """A module whose ``forward`` runs through :func:`torch.compile`, or eagerly once that fails.

    Parameters
    ----------
    model : nn.Module
        The model; its parameters, buffers and ``train()`` / ``eval()`` state are this
        wrapper's (it is the only submodule), so an optimiser of ``wrapper.parameters()``
        trains it.
    mode : str
        A :func:`torch.compile` mode (:data:`COMPILE_MODES` but ``off``).

    Attributes
    ----------
    fallback_reason : str or None
        ``"ErrorType: message"`` of the compile failure that switched to eager, else None.

    Notes
    -----
    ``forward`` maps what ``model`` maps (here: images ``(N, 3, H, W)`` to logits
    ``(N, C)``); ``features`` is the model's own, uncompiled.
    """

    def __init__(self, model: nn.Module, mode: str) -> None:
        super().__init__()
        self.model = model
        self.mode = mode
        self.fallback_reason: str | None = None
        # a compiled *function*, not a module attribute: the parameters stay registered once
        self._compiled = torch.compile(model.forward, mode=mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._compiled is not None:
            try:
                return self._compiled(x)
            except Exception as exc:  # any compiler failure; a real model error re-raises below, eagerly
                self._fall_back(exc)
        return self.model(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)

    def _fall_back(self, exc: Exception) -> None:
        self._compiled = None
        self.fallback_reason = f"{type(exc).__name__}: {first_line(exc)}"
        warnings.warn(f"torch.compile (mode {self.mode!r}) failed, training on without it: {self.fallback_reason}",
                      CompileFallback, stacklevel=3)


def maybe_compile(model: nn.Module, mode: str) -> nn.Module:
    """``model`` itself for ``mode="off"``, else a :class:`CompiledModel` of it."""
    if mode == "off":
        return model
    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {mode!r}; one of {', '.join(COMPILE_MODES)}")
    return CompiledModel(model, mode)
