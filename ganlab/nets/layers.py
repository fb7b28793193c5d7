"""Layers shared by the networks: equalized learning rate, pixel norm, minibatch stddev."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class EqualizedConv2d(nn.Module):
    """Conv2d with equalized learning rate (Karras et al. 2018).

    Weights are stored ~ N(0, 1) and scaled at run time by He's constant
    gain / sqrt(fan_in), so Adam's per-parameter step sizes are equal for every layer.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0,
                 bias: bool = True, gain: float = math.sqrt(2)) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = gain / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = padding

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class EqualizedLinear(nn.Module):
    """Linear layer with equalized learning rate (weights N(0, 1) scaled by gain/sqrt(fan_in))."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 gain: float = math.sqrt(2)) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.scale = gain / math.sqrt(in_features)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class PixelNorm(nn.Module):
    """Pixelwise feature normalisation: x / sqrt(mean_c(x^2) + eps), per pixel. [N, C, H, W]."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + self.eps)


class MinibatchStdDev(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018): appends `num_channels` feature maps
    holding the average over features and pixels of the per-feature std over groups of
    `group_size` images. [N, C, H, W] -> [N, C + num_channels, H, W]; N need not divide evenly
    (the group size falls back to a divisor of N)."""

    def __init__(self, group_size: int = 4, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        group = math.gcd(min(self.group_size, n), n)
        f = self.num_channels
        y = x.reshape(group, -1, f, c // f, h, w)           # [G, M, F, C/F, H, W]
        y = (y - y.mean(dim=0)).square().mean(dim=0)        # variance over the group
        y = (y + 1e-8).sqrt().mean(dim=(2, 3, 4))           # [M, F]
        y = y.reshape(-1, f, 1, 1).repeat(group, 1, h, w)   # [N, F, H, W]
        return torch.cat([x, y.to(x.dtype)], dim=1)
