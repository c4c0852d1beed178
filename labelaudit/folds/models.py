"""Compact ResNet-style CNN for small images, trained from scratch.

The layout follows the small residual nets used for fast CIFAR-10 training
(Page's ResNet-9, Keller Jordan's airbench): a stem convolution, then stages that
widen the channels, halve the resolution with max-pooling and add residual
blocks, then global max-pooling and a linear head.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvBNAct", "ResidualBlock", "CompactResNet", "build_model"]


class ConvBNAct(nn.Sequential):
    """3x3 convolution, batch normalisation and ReLU, keeping the spatial size."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
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
                 logit_scale: float = 0.125) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(3, width)]
        channels = width
        for _ in range(stages):
            layers += [ConvBNAct(channels, channels * 2), nn.MaxPool2d(2)]
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


def build_model(num_classes: int, *, width: int, depth: int, stages: int = 3) -> CompactResNet:
    """Return a freshly initialised :class:`CompactResNet` (see its parameters)."""
    return CompactResNet(num_classes, width=width, depth=depth, stages=stages)
