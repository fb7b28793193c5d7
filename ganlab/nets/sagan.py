"""SAGAN networks (Zhang et al. 2019) for any power-of-two resolution from 8 to 256.

The topology is the "standard CNN" of spectral-normalisation GANs (Miyato et al. 2018), with
feature maps at every side from 4x4 up to the image side R, so self-attention can sit at any of
them (SAGAN's default: 32x32):

    G: z -> linear -> 4x4 -> [ConvT 4x4/2, BN, ReLU] per side up to R -> conv 3x3 -> tanh
    D: image -> conv 3x3 at R, LReLU -> [conv 4x4/2, LReLU] per side down to 4x4
       -> optional minibatch layers -> conv 4x4 -> logit

Spectral norm (torch.nn.utils.parametrizations.spectral_norm) wraps every conv / linear,
attention projections included; attention, spectral norm and batch norm are switches.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as add_spectral_norm

from ganlab.nets.conditioning import (
    ConditionalBatchNorm2d,
    LabelledDiscriminator,
    LabelSequential,
    check_conditioning,
    with_labels,
)
from ganlab.nets.layers import SelfAttention, doubling_widths, minibatch_layers
from ganlab.utils import ConfigError, check_positive, check_resolution, is_power_of_two

LRELU_SLOPE = 0.1  # LeakyReLU slope in D (heykeetae/Self-Attention-GAN, SNGAN)


def attention_sides(attention: int | Iterable[int] | None, resolution: int, key: str) -> list[int]:
    """Feature-map sides that get a self-attention block, sorted and unique.

    `attention`: a side, a list of sides, or null / [] for none. Each must be a power of two
    >= 4; a side larger than the image side means the largest feature map (the image side), so
    the default 32 works for 16 px debug runs too.
    """
    if attention is None:
        return []
    sides = [attention] if isinstance(attention, int) else list(attention)
    for side in sides:
        if not is_power_of_two(side) or side < 4:
            raise ConfigError(
                f"{key}={sides} is not valid: attention sides must be powers of two >= 4 (feature "
                f"maps are 4..{resolution} px at this resolution), e.g. `{key}=[32]`; "
                f"`{key}=[]` turns attention off."
            )
    return sorted({min(side, resolution) for side in sides})


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Wrap the weight of every Conv2d / ConvTranspose2d / Linear in `module` with spectral
    norm (one power iteration per training forward); returns `module`. The label layers of
    conditional batch norms are left plain (they start at zero, which spectral norm divides by)."""
    skip = {id(m) for cbn in module.modules() if isinstance(cbn, ConditionalBatchNorm2d)
            for m in cbn.modules()}
    layers = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d,
                                                            nn.Linear)) and id(m) not in skip]
    for layer in layers:
        add_spectral_norm(layer)
    return module


class Generator(nn.Module):
    """z [N, z_dim] (+ labels y [N, K]) -> images [N, 3, R, R] in [-1, 1] (tanh).

    Args:
        z_dim: latent size.
        resolution: output side R, a power of two in [8, 256].
        width: channels of the R x R feature map; doubles towards 4x4.
        max_width: cap on any feature map's channels.
        attention: feature-map side(s) with a self-attention block ([] = none).
        spectral_norm: spectral norm on every conv / linear.
        batch_norm: batch norm after the linear stem and every transposed conv.
        attention_kernel: how attention is computed (`layers.ATTENTION_KERNELS`; same function).
        conditioning: none | projection (conditional batch norm, the SAGAN paper's) | concat /
            acgan ([z, y] is the input); see ganlab.nets.conditioning.
        num_classes: label length K (0 without labels).
    """

    def __init__(
        self, z_dim: int = 128, resolution: int = 32, width: int = 32, max_width: int = 512,
        attention: int | Iterable[int] | None = (32,), spectral_norm: bool = True,
        batch_norm: bool = True, attention_kernel: str = "fused", conditioning: str = "none",
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        check_resolution(resolution, 8, 256, "data.resolution")
        check_positive(width, "model.generator.width")
        check_positive(z_dim, "model.generator.z_dim")
        conditioning = check_conditioning(conditioning, num_classes, "model.conditioning")
        if conditioning == "projection" and not batch_norm:
            raise ConfigError(
                "model.conditioning=projection conditions G's batch norms: keep "
                "model.generator.batch_norm=true (or use model.conditioning=concat)"
            )
        self.conditioning, self.num_classes = conditioning, num_classes
        self.label_input = conditioning in ("concat", "acgan")  # [z, y] is the input
        cbn = conditioning == "projection"

        def norm(channels: int) -> nn.Module:
            if not batch_norm:
                return nn.Identity()
            return ConditionalBatchNorm2d(channels, num_classes) if cbn else nn.BatchNorm2d(
                channels)

        self.z_dim, self.resolution = z_dim, resolution
        self.widths = doubling_widths(resolution, width, max_width)  # width at R
        self.attention_sides = attention_sides(attention, resolution, "model.generator.attention")
        w4 = self.widths[4]
        self.stem = nn.Linear(z_dim + (num_classes if self.label_input else 0), w4 * 16)
        self.stem_act = LabelSequential(norm(w4), nn.ReLU(inplace=True))
        self.blocks = nn.ModuleDict()
        for side in list(self.widths)[1:]:
            c_in, c_out = self.widths[side // 2], self.widths[side]
            self.blocks[str(side)] = LabelSequential(
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=not batch_norm),
                norm(c_out),
                nn.ReLU(inplace=True),
            )
        self.attention = nn.ModuleDict(
            {str(side): SelfAttention(self.widths[side], kernel=attention_kernel)
             for side in self.attention_sides}
        )
        self.to_rgb = nn.Conv2d(self.widths[resolution], 3, 3, 1, 1)
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        assert z.dim() == 2 and z.shape[1] == self.z_dim, f"expected z [N, {self.z_dim}]"
        if self.label_input:
            z = with_labels(z, y, self.num_classes)
        h = self.stem_act(self.stem(z).view(-1, self.widths[4], 4, 4), y)
        for side in self.widths:
            if side > 4:
                h = self.blocks[str(side)](h, y)
            if str(side) in self.attention:
                h = self.attention[str(side)](h)
        return torch.tanh(self.to_rgb(h))


class Discriminator(LabelledDiscriminator):
    """images [N, 3, R, R] in [-1, 1] (+ labels y [N, K]) -> logits [N] (no sigmoid).

    Args:
        resolution: input side R, a power of two in [8, 256].
        width: channels of the R x R feature map; doubles towards 4x4.
        max_width: cap on any feature map's channels.
        attention: feature-map side(s) with a self-attention block ([] = none).
        spectral_norm: spectral norm on every conv / linear.
        batch_norm: batch norm after every strided conv (off in SAGAN; keep off for WGAN-GP).
        minibatch_stddev: group size of a minibatch-stddev layer at 4x4, 0 = off.
        minibatch_discrimination: kernels B of minibatch discrimination at 4x4, 0 = off.
        minibatch_discrimination_dim: dimension K of each minibatch-discrimination kernel.
        attention_kernel: how attention is computed (`layers.ATTENTION_KERNELS`; same function).
        conditioning, num_classes: concat appends K label planes to the image; projection (the
            SAGAN paper's) and acgan read the 4x4 map before the last conv, summed over
            positions (ganlab.nets.conditioning).
    """

    def __init__(
        self, resolution: int = 32, width: int = 32, max_width: int = 512,
        attention: int | Iterable[int] | None = (32,), spectral_norm: bool = True,
        batch_norm: bool = False, minibatch_stddev: int = 0, minibatch_discrimination: int = 0,
        minibatch_discrimination_dim: int = 5, attention_kernel: str = "fused",
        conditioning: str = "none", num_classes: int = 0,
    ) -> None:
        super().__init__()
        check_resolution(resolution, 8, 256, "data.resolution")
        check_positive(width, "model.discriminator.width")
        self.setup_conditioning(conditioning, num_classes)
        self.resolution = resolution
        self.widths = doubling_widths(resolution, width, max_width)  # width at R
        self.attention_sides = attention_sides(
            attention, resolution, "model.discriminator.attention"
        )
        self.from_rgb = nn.Sequential(
            nn.Conv2d(self.input_channels, self.widths[resolution], 3, 1, 1),
            nn.LeakyReLU(LRELU_SLOPE, inplace=True),
        )
        self.blocks = nn.ModuleDict()
        for side in list(self.widths)[-2::-1]:  # R/2 ... 4
            c_in, c_out = self.widths[side * 2], self.widths[side]
            self.blocks[str(side)] = nn.Sequential(
                nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not batch_norm),
                nn.BatchNorm2d(c_out) if batch_norm else nn.Identity(),
                nn.LeakyReLU(LRELU_SLOPE, inplace=True),
            )
        self.attention = nn.ModuleDict(
            {str(side): SelfAttention(self.widths[side], kernel=attention_kernel)
             for side in self.attention_sides}
        )
        layers, channels = minibatch_layers(self.widths[4], 4, minibatch_stddev,
                                            minibatch_discrimination, minibatch_discrimination_dim)
        self.minibatch = nn.Sequential(*layers)
        self.out = nn.Conv2d(channels, 1, 4, 1, 0)
        self.add_heads(channels)
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        assert x.shape[1:] == (3, self.resolution, self.resolution), (
            f"expected [N, 3, {self.resolution}, {self.resolution}], got {tuple(x.shape)}"
        )
        if self.conditioning != "none":
            y = self.labels(y)
            x = self.input_planes(x, y)
        h = self.from_rgb(x)
        for side in reversed(self.widths):
            if side < self.resolution:
                h = self.blocks[str(side)](h)
            if str(side) in self.attention:
                h = self.attention[str(side)](h)
        if self.conditioning == "none":
            return self.out(self.minibatch(h)).flatten()
        h = self.minibatch(h)
        return self.conditional_output(self.out(h).flatten(), h.sum((2, 3)), y)
