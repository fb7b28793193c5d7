"""Layers shared by the networks: equalized learning rate, pixel norm, minibatch stddev,
self-attention, minibatch discrimination; and the doubling channel widths of DCGAN and SAGAN."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ganlab.utils import ConfigError


def doubling_widths(top: int, width: int, max_width: int) -> dict[int, int]:
    """Channels of the feature map at each side 4, 8, ..., `top`: `width` at `top`, doubling
    towards 4x4, capped at `max_width` (DCGAN: top = R/2; SAGAN: top = R). {} when top < 4."""
    sides = [2**k for k in range(2, top.bit_length())]
    return {side: min(width * top // side, max_width) for side in sides}


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
        # statistics in float32: in fp16 eps 1e-8 rounds to 0, and sqrt(0)'s gradient is inf
        y = x.float().reshape(group, -1, f, c // f, h, w)   # [G, M, F, C/F, H, W]
        y = (y - y.mean(dim=0)).square().mean(dim=0)        # variance over the group
        y = (y + 1e-8).sqrt().mean(dim=(2, 3, 4))           # [M, F]
        y = y.reshape(-1, f, 1, 1).repeat(group, 1, h, w)   # [N, F, H, W]
        return torch.cat([x, y.to(x.dtype)], dim=1)


ATTENTION_KERNELS = ("fused", "sdpa", "explicit")  # model.*.attention_kernel


class SelfAttention(nn.Module):
    """Self-attention over all positions of a feature map (SAGAN, Zhang et al. 2019).

    1x1 convs make queries and keys with C/8 channels (at least 1) and values with C channels;
    attention = softmax_j(q_i . k_j) over the H*W key positions (no 1/sqrt(d) scaling, as in
    SAGAN); out = gamma * (attention @ v) + x with the learnable scalar gamma starting at 0, so
    the layer is the identity at initialisation. [N, C, H, W] -> [N, C, H, W].

    How the product is computed (`kernel`; all three compute the same function):
      fused: queries and keys zero-padded from C/8 to C channels (q . k is unchanged) and all
        three made contiguous, so they have one head dimension with unit stride and
        `scaled_dot_product_attention` can take a fused
        kernel (flash attention on CPUs and GPUs): it never holds the N x (H*W)^2 attention
        matrix, which the other two write and read several times per step (memory-bound).
      sdpa: `scaled_dot_product_attention` on the unpadded dims (CUDA's memory-efficient kernel
        takes them; flash and the CPU kernels need equal dims and fall back to the math path).
      explicit: softmax(q k^T) v written out (also what `return_attention` uses).
    Fused kernels have no double backward: set `double_backward = True` (see
    `enable_double_backward`) when a loss differentiates D's gradient (WGAN-GP, R1); SDPA is
    then restricted to its math backend.

    Args:
        channels: C, channels of the input feature map.
        key_ratio: C / (query and key channels), 8 in SAGAN.
        kernel: how the attention product is computed (ATTENTION_KERNELS).
    """

    def __init__(self, channels: int, key_ratio: int = 8, kernel: str = "fused") -> None:
        super().__init__()
        if kernel not in ATTENTION_KERNELS:
            raise ConfigError(
                f"attention_kernel={kernel!r} is not one of {list(ATTENTION_KERNELS)}: set e.g. "
                "`model.generator.attention_kernel=fused`"
            )
        key_channels = max(1, channels // key_ratio)
        self.query = nn.Conv2d(channels, key_channels, 1)
        self.key = nn.Conv2d(channels, key_channels, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(()))
        self.kernel = kernel
        self.double_backward = False

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries, keys [N, HW, C/8] and values [N, HW, C] of x [N, C, H, W]."""
        convs = (self.query, self.key, self.value)
        return tuple(conv(x).flatten(2).transpose(1, 2) for conv in convs)

    def attention_map(self, x: Tensor) -> Tensor:
        """Attention weights [N, HW (queries), HW (keys)] of x [N, C, H, W]; rows sum to 1.
        Positions are row-major: index = row * W + col."""
        q, k, _ = self._qkv(x)
        return torch.softmax(q @ k.transpose(1, 2), dim=-1)

    def _sdpa(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """softmax(q k^T) v through `scaled_dot_product_attention`, one head: q, k [N, HW, d],
        v [N, HW, C] -> [N, HW, C]."""
        if self.kernel == "fused":  # equal head dims, unit stride on them: what flash needs
            pad = v.shape[-1] - q.shape[-1]
            q, k, v = F.pad(q, (0, pad)), F.pad(k, (0, pad)), v.contiguous()
        q, k, v = q[:, None], k[:, None], v[:, None]  # [N, 1 head, HW, d]
        if self.double_backward:
            with sdpa_kernel(SDPBackend.MATH):
                return F.scaled_dot_product_attention(q, k, v, scale=1.0)[:, 0]
        return F.scaled_dot_product_attention(q, k, v, scale=1.0)[:, 0]

    def forward(self, x: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """x [N, C, H, W] -> same shape; with `return_attention`, also the map [N, HW, HW]
        (computed by the explicit path)."""
        n, c, h, w = x.shape
        q, k, v = self._qkv(x)
        attention = None
        if return_attention or self.kernel == "explicit":
            attention = torch.softmax(q @ k.transpose(1, 2), dim=-1)
            out = attention @ v
        else:
            out = self._sdpa(q, k, v)
        out = x + self.gamma * out.transpose(1, 2).reshape(n, c, h, w)
        return (out, attention) if return_attention else out


def enable_double_backward(module: nn.Module, enabled: bool = True) -> None:
    """Make every SelfAttention in `module` twice differentiable (needed by gradient penalties
    when SDPA would pick a fused GPU kernel)."""
    for layer in module.modules():
        if isinstance(layer, SelfAttention):
            layer.double_backward = enabled


class MinibatchDiscrimination(nn.Module):
    """Minibatch discrimination (Salimans et al. 2016): lets D see how close each sample is to
    the others in its batch, so a collapsed G is easy to spot.

    Features f [N, A] (or a feature map [N, C, H, W], flattened: A = C*H*W) are projected by a
    tensor T [A, B*K] to M [N, B, K]; for each of the B kernels,
    o_b(x_i) = sum_{j != i} exp(-||M_i,b - M_j,b||_1). The output appends o [N, B]:
    [N, A + B] for vectors, or B constant maps [N, C + B, H, W] for feature maps. A batch of
    identical samples gives o_b = N - 1 (the maximum). T is a plain parameter (no spectral norm).

    Args:
        in_features: A (C*H*W for feature maps).
        num_kernels: B (Salimans et al.: 100).
        kernel_dim: K, dimension of each kernel's projection (Salimans et al.: 5).
    """

    def __init__(self, in_features: int, num_kernels: int = 100, kernel_dim: int = 5) -> None:
        super().__init__()
        self.num_kernels, self.kernel_dim = num_kernels, kernel_dim
        self.T = nn.Parameter(torch.randn(in_features, num_kernels * kernel_dim) / in_features**0.5)

    def statistic(self, x: Tensor) -> Tensor:
        """o [N, B] of features x [N, ...] (flattened to [N, A])."""
        m = (x.flatten(1) @ self.T).view(-1, self.num_kernels, self.kernel_dim)  # [N, B, K]
        l1 = (m[:, None] - m[None]).abs().sum(dim=-1)                           # [N, N, B]
        return torch.exp(-l1).sum(dim=1) - 1.0                                  # drop j == i

    def forward(self, x: Tensor) -> Tensor:
        o = self.statistic(x).to(x.dtype)
        if x.dim() == 4:
            o = o[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
        return torch.cat([x, o], dim=1)


def minibatch_layers(
    channels: int, size: int, stddev_group: int = 0, discrimination_kernels: int = 0,
    discrimination_dim: int = 5,
) -> tuple[list[nn.Module], int]:
    """The optional minibatch layers a discriminator inserts before its last conv, on a feature
    map [N, channels, size, size]; returns (layers, channels after them). 0 turns a layer off.

    Args:
        stddev_group: group size of MinibatchStdDev (Karras et al.: 4), 0 = off.
        discrimination_kernels: B of MinibatchDiscrimination (Salimans et al.: 100), 0 = off.
        discrimination_dim: K of MinibatchDiscrimination.
    """
    for value, key in [(stddev_group, "minibatch_stddev"),
                       (discrimination_kernels, "minibatch_discrimination"),
                       (discrimination_dim, "minibatch_discrimination_dim")]:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(
                f"model.discriminator.{key}={value!r} must be an integer >= 0 (0 = off)"
            )
    layers: list[nn.Module] = []
    if discrimination_kernels:
        layers.append(MinibatchDiscrimination(channels * size * size, discrimination_kernels,
                                              discrimination_dim))
        channels += discrimination_kernels
    if stddev_group:
        layers.append(MinibatchStdDev(stddev_group))
        channels += 1
    return layers, channels
