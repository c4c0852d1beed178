"""Compact ResNet-style CNN for small images, trained from scratch.

The layout follows the small residual nets used for fast CIFAR-10 training
(Page's ResNet-9, Keller Jordan's airbench): a stem convolution, then stages that
widen the channels, halve the resolution with max-pooling and add residual
blocks, then global max-pooling and a linear head.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ConvBNAct", "ResidualBlock", "CompactResNet", "StackedResNet", "build_model"]


class ConvBNAct(nn.Sequential):
    """3x3 convolution, batch normalisation and ReLU, keeping the spatial size."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class ConvPoolBNAct(nn.Sequential):
    """3x3 convolution, 2x2 max-pooling, batch normalisation and ReLU: halves the spatial size.

    Pooling right after the convolution (airbench's order) runs the batch norm and the
    activation, forward and backward, on a quarter of the values of
    :class:`ConvBNAct` followed by pooling; these memory-bound layers, not the
    convolutions, take most of a CPU training step of this net.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class ResidualBlock(nn.Module):
    """Two :class:`ConvBNAct` layers with an identity shortcut."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(ConvBNAct(channels, channels), ConvBNAct(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class CompactResNet(nn.Module):
    """ResNet-style classifier for small square images.

    Parameters
    ----------
    num_classes : int
        Number of output logits.
    width : int
        Channels of the stem; stage ``i`` (0-based) has ``width * 2 ** (i + 1)`` channels.
    depth : int
        Residual blocks per stage.
    stages : int
        Number of stages; each halves the resolution.
    logit_scale : float
        Multiplier of the logits (0.125 as in Page's ResNet-9): max-pooled features are
        large, and unscaled logits make early training diverge at useful learning rates.

    Notes
    -----
    ``forward`` maps a float tensor of shape ``(N, 3, H, W)`` to logits of shape
    ``(N, num_classes)``; ``features`` returns the pooled embedding of shape
    ``(N, embedding_dim)`` that the logits are a linear function of.
    """

    def __init__(self, num_classes: int, *, width: int = 16, depth: int = 1, stages: int = 3,
                 logit_scale: float = 0.125, pool_first: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(3, width)]
        channels = width
        for _ in range(stages):
            layers += [ConvPoolBNAct(channels, channels * 2)] if pool_first \
                else [ConvBNAct(channels, channels * 2), nn.MaxPool2d(2)]
            channels *= 2
            layers += [ResidualBlock(channels) for _ in range(depth)]
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.embedding_dim = channels
        self.head = nn.Linear(channels, num_classes, bias=False)
        self.logit_scale = logit_scale

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)) * self.logit_scale


def build_model(num_classes: int, *, width: int, depth: int, stages: int = 3, pool_first: bool = False) -> CompactResNet:
    """Return a freshly initialised :class:`CompactResNet` (see its parameters)."""
    return CompactResNet(num_classes, width=width, depth=depth, stages=stages, pool_first=pool_first)


class StackedResNet(nn.Module):
    """K independent :class:`CompactResNet` models evaluated as one network (one kernel per layer).

    Member ``k``'s channels are block ``k`` of every layer: each convolution becomes a
    grouped convolution with ``groups = K`` (weights concatenated along the output
    channels), each batch norm one over ``K * C`` channels, and the linear heads one batched
    product. Nothing is shared between members: their gradients, batch-norm statistics and
    (per-parameter) optimizer updates are exactly those of K separate models, so the stack
    trains K folds at the cost of one program's kernel launches (the point on a GPU, where a
    small model leaves the device idle between launches).

    Parameters
    ----------
    members : sequence of CompactResNet
        Same architecture each; their current weights, buffers and modes are copied.

    Notes
    -----
    ``forward`` maps ``(N, K * 3, H, W)`` (member ``k``'s images in channels ``3k..3k+2``)
    to logits ``(N, K, num_classes)``; ``features`` returns ``(N, K, embedding_dim)``.
    """

    def __init__(self, members: Sequence[CompactResNet]) -> None:
        super().__init__()
        if not members:
            raise ValueError("a stack needs at least one member")
        self.k = len(members)
        self.body = _stack([m.body for m in members])
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.embedding_dim = members[0].embedding_dim
        self.head_weight = nn.Parameter(torch.stack([m.head.weight.detach().clone() for m in members]))  # (K, C, D)
        self.logit_scale = members[0].logit_scale

    @property
    def num_classes(self) -> int:
        return self.head_weight.shape[1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(x)).flatten(1).view(len(x), self.k, self.embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nkd,kcd->nkc", self.features(x), self.head_weight) * self.logit_scale


def _stack(members: Sequence[nn.Module]) -> nn.Module:
    """One module computing ``members`` (same structure) side by side on concatenated channels."""
    first = members[0]
    if isinstance(first, nn.Conv2d):
        return _stack_conv(members)
    if isinstance(first, nn.BatchNorm2d):
        return _stack_batch_norm(members)
    if isinstance(first, (nn.ReLU, nn.MaxPool2d, nn.AdaptiveMaxPool2d)):  # channel-wise, no parameters
        return copy.deepcopy(first)
    if not list(first.children()) or first._parameters or first._buffers:
        raise TypeError(f"cannot stack {type(first).__name__} modules")
    stacked = copy.copy(first)  # the container's forward, with its children replaced
    stacked._modules = dict(first._modules)
    for name in first._modules:
        setattr(stacked, name, _stack([m._modules[name] for m in members]))
    return stacked


def _stack_conv(members: Sequence[nn.Conv2d]) -> nn.Conv2d:
    first, k = members[0], len(members)
    conv = nn.Conv2d(k * first.in_channels, k * first.out_channels, first.kernel_size, stride=first.stride,
                     padding=first.padding, dilation=first.dilation, groups=k * first.groups,
                     bias=first.bias is not None)
    with torch.no_grad():
        conv.weight.copy_(torch.cat([m.weight for m in members]))
        if first.bias is not None:
            conv.bias.copy_(torch.cat([m.bias for m in members]))
    return conv


def _stack_batch_norm(members: Sequence[nn.BatchNorm2d]) -> nn.BatchNorm2d:
    first = members[0]
    norm = nn.BatchNorm2d(len(members) * first.num_features, eps=first.eps, momentum=first.momentum)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(norm, name).copy_(torch.cat([getattr(m, name) for m in members]))
        norm.num_batches_tracked.copy_(first.num_batches_tracked)
    norm.train(first.training)
    return norm
