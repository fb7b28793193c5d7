"""Progressive-growing networks (Karras et al. 2018) built from per-resolution blocks.

Every block from 4x4 up to the final side R is built up front, so the parameter set (and with it
the optimizers and DDP's view) never changes; only the active depth does. The active depth and the
fade-in weight are the buffers `stage` (0 = 4x4, resolution = 4 * 2**stage) and `alpha`
(1 = the newest block fully in), saved in the state dict:

    G: z -> [PN(z), dense -> 4x4, conv]  -> block 8 -> ... -> block r -> toRGB_r
       block r = nearest upsample x2, conv 3x3, conv 3x3
       fading into r: alpha * toRGB_r(block_r(h)) + (1 - alpha) * upsample(toRGB_{r/2}(h))
    D: image r -> fromRGB_r -> block r -> ... -> block 8 -> [minibatch stddev, conv, dense, dense]
       block r = conv 3x3, conv 3x3, 2x2 average pool
       fading into r: alpha * block_r(fromRGB_r(x)) + (1 - alpha) * fromRGB_{r/2}(avgpool(x))

Paper stabilisers (switches): equalized learning rate, pixel norm in G, minibatch stddev in D.
The thesis's variant: batch norm + spectral norm, optionally minibatch discrimination.

torch.compile: the python mirrors `_stage` and `_fading` choose the path, so a compiled network
recompiles once per stage and fade start / end, never per step; alpha is only read as a tensor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as add_spectral_norm

from ganlab.nets.conditioning import LabelledDiscriminator, check_conditioning, with_labels
from ganlab.nets.layers import EqualizedConv2d, EqualizedLinear, PixelNorm, minibatch_layers
from ganlab.utils import ConfigError, check_positive, check_resolution, log2_int

LRELU_SLOPE = 0.2  # LeakyReLU slope in G and D (paper)
G_NORMS = ("pixel", "batch", "none")
D_NORMS = ("batch", "none")


def paper_widths(resolution: int) -> dict[int, int]:
    """The paper's channels per side 4..resolution: min(8192 / 2**(log2(side) - 1), 512), i.e.
    512 up to 32x32, then halving (256 at 64, ..., 16 at 1024)."""
    return {4 << k: min(16384 // (4 << k), 512) for k in range(log2_int(resolution) - 1)}


def resolve_widths(
    resolution: int, widths: Mapping[int, int] | None, width: int, key: str
) -> dict[int, int]:
    """Channels {side: C} for every side 4..resolution: `widths` (default: the paper's) capped at
    `width`. Raises ConfigError naming `key` if a side has no width or a width is not positive."""
    check_positive(width, f"{key}.width")
    given = paper_widths(resolution) if widths is None else {int(k): v for k, v in widths.items()}
    sides = [4 << k for k in range(log2_int(resolution) - 1)]
    missing = [side for side in sides if side not in given]
    if missing:
        raise ConfigError(
            f"{key}.widths has no channel width for side(s) {missing} px; every side from 4 to "
            f"{resolution} needs one, e.g. `{key}.widths={{{missing[0]}: 64}}` (or drop "
            f"{key}.widths for the paper's widths)"
        )
    for side in sides:
        value = given[side]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key}.widths.{side}={value!r} must be a positive integer")
    return {side: min(given[side], width) for side in sides}


# --------------------------------------------------------------------------- layer factories
def conv(
    c_in: int, c_out: int, kernel: int, equalized: bool, spectral: bool, gain: float = math.sqrt(2)
) -> nn.Module:
    """Conv2d with 'same' padding: equalized-LR (weights N(0, 1), scaled at run time) or plain,
    optionally spectral-normalised."""
    if equalized:
        return EqualizedConv2d(c_in, c_out, kernel, padding=kernel // 2, gain=gain)
    layer = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)
    return add_spectral_norm(layer) if spectral else layer


def linear(
    c_in: int, c_out: int, equalized: bool, spectral: bool, gain: float = math.sqrt(2)
) -> nn.Module:
    """Linear layer: equalized-LR or plain, optionally spectral-normalised."""
    if equalized:
        return EqualizedLinear(c_in, c_out, gain=gain)
    layer = nn.Linear(c_in, c_out)
    return add_spectral_norm(layer) if spectral else layer


def act_norm(channels: int, norm: str) -> list[nn.Module]:
    """Activation and normalisation after a conv: pixel: LReLU, PN (paper order);
    batch: BN, LReLU; none: LReLU."""
    lrelu = nn.LeakyReLU(LRELU_SLOPE)
    if norm == "pixel":
        return [lrelu, PixelNorm()]
    if norm == "batch":
        return [nn.BatchNorm2d(channels), lrelu]
    return [lrelu]


def check_layer_options(key: str, norm: str, norms: tuple[str, ...], equalized: bool,
                        spectral: bool) -> None:
    if norm not in norms:
        raise ConfigError(f"{key}.norm={norm!r}: choose one of {norms}")
    if equalized and spectral:
        raise ConfigError(
            f"{key}.equalized_lr and {key}.spectral_norm are both true: choose one (paper: "
            f"equalized_lr=true; thesis: spectral_norm=true with equalized_lr=false)"
        )


# --------------------------------------------------------------------------- shared stage state
def _sync_after_load(module: Progressive, incompatible_keys: object) -> None:
    module._sync_mirrors()


class Progressive(nn.Module):
    """Stage state shared by G and D: buffers `stage` (int64 []) and `alpha` (float32 []), their
    python mirrors for control flow, and `set_stage`."""

    def __init__(self, resolution: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.max_stage = log2_int(resolution) - 2
        self.register_buffer("stage", torch.tensor(self.max_stage, dtype=torch.long))
        self.register_buffer("alpha", torch.tensor(1.0))
        self._stage, self._fading = self.max_stage, False
        self.register_load_state_dict_post_hook(_sync_after_load)

    @property
    def current_resolution(self) -> int:
        """Side of the images made / taken at the current stage, px."""
        return 4 << self._stage

    def set_stage(self, stage: int, alpha: float = 1.0) -> None:
        """Activate blocks up to side 4 * 2**stage; alpha in [0, 1] fades the newest one in
        (1 = fully in). Updates the buffers in place (no host sync)."""
        if not 0 <= stage <= self.max_stage:
            raise ValueError(f"stage {stage} outside 0..{self.max_stage} ({self.resolution} px)")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha={alpha} must be in [0, 1]")
        self.stage.fill_(stage)
        self.alpha.fill_(alpha)
        self._stage, self._fading = stage, stage > 0 and alpha < 1.0

    def _sync_mirrors(self) -> None:
        """After load_state_dict: python mirrors from the loaded buffers (one host sync)."""
        stage, alpha = int(self.stage), float(self.alpha)
        self._stage, self._fading = stage, stage > 0 and alpha < 1.0

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, stage={self._stage}, fading={self._fading}"


# --------------------------------------------------------------------------- generator
class GeneratorInput(nn.Module):
    """z [N, z_dim] -> 4x4 features [N, C, 4, 4]: (pixel-normalised z), dense, act/norm, conv."""

    def __init__(self, z_dim: int, channels: int, norm: str, equalized: bool, spectral: bool):
        super().__init__()
        self.normalize_z = PixelNorm() if norm == "pixel" else nn.Identity()
        # gain sqrt(2)/4 as in the official code (matches the original Theano implementation)
        self.dense = linear(z_dim, channels * 16, equalized, spectral, gain=math.sqrt(2) / 4)
        self.post_dense = nn.Sequential(*act_norm(channels, norm))
        self.conv = nn.Sequential(conv(channels, channels, 3, equalized, spectral),
                                  *act_norm(channels, norm))
        self.channels = channels

    def forward(self, z: Tensor) -> Tensor:
        h = self.dense(self.normalize_z(z)).view(-1, self.channels, 4, 4)
        return self.conv(self.post_dense(h))


class GeneratorBlock(nn.Module):
    """[N, C_in, r/2, r/2] -> [N, C_out, r, r]: nearest upsample x2, two 3x3 convs."""

    def __init__(self, c_in: int, c_out: int, norm: str, equalized: bool, spectral: bool):
        super().__init__()
        self.net = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            conv(c_in, c_out, 3, equalized, spectral), *act_norm(c_out, norm),
            conv(c_out, c_out, 3, equalized, spectral), *act_norm(c_out, norm),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Generator(Progressive):
    """z [N, z_dim] -> images [N, 3, r, r] at the current stage's side r (linear output as in the
    paper, or tanh), nominally in [-1, 1].

    Args:
        z_dim: latent size (paper: 512).
        resolution: final side R, a power of two in [4, 1024].
        widths: channels per side {4: C, 8: C, ...} for every side up to R (null: the paper's,
            512 up to 32 px then halving).
        width: cap on every side's channels (tiny test configs use 8).
        norm: pixel (paper; also normalises z) | batch (thesis) | none.
        equalized_lr: equalized learning rate (weights N(0, 1) scaled by He's constant).
        spectral_norm: spectral norm on every conv / linear (thesis; needs equalized_lr=false).
        tanh: squash the output with tanh (the paper's output is linear).
        conditioning: none, or concat / projection / acgan: the label vector is appended to z
            before the input's pixel norm (the official code's labels_in); see
            ganlab.nets.conditioning.
        num_classes: label length K (0 without labels).
    """

    def __init__(
        self,
        z_dim: int = 512,
        resolution: int = 64,
        widths: Mapping[int, int] | None = None,
        width: int = 512,
        norm: str = "pixel",
        equalized_lr: bool = True,
        spectral_norm: bool = False,
        tanh: bool = False,
        conditioning: str = "none",
        num_classes: int = 0,
    ) -> None:
        check_resolution(resolution, 4, 1024, "data.resolution")
        check_positive(z_dim, "model.generator.z_dim")
        conditioning = check_conditioning(conditioning, num_classes, "model.conditioning")
        check_layer_options("model.generator", norm, G_NORMS, equalized_lr, spectral_norm)
        super().__init__(resolution)
        self.z_dim, self.tanh = z_dim, tanh
        self.conditioning, self.num_classes = conditioning, num_classes
        self.label_input = conditioning != "none"  # [z, y] is the input
        self.channels = resolve_widths(resolution, widths, width, "model.generator")
        sides = list(self.channels)
        options = dict(norm=norm, equalized=equalized_lr, spectral=spectral_norm)
        c_z = z_dim + (num_classes if self.label_input else 0)
        self.input = GeneratorInput(c_z, self.channels[4], **options)
        self.blocks = nn.ModuleDict({
            str(side): GeneratorBlock(self.channels[side // 2], self.channels[side], **options)
            for side in sides[1:]
        })
        self.to_rgb = nn.ModuleDict({
            str(side): conv(self.channels[side], 3, 1, equalized_lr, spectral_norm, gain=1.0)
            for side in sides
        })

    def features(self, z: Tensor, side: int, y: Tensor | None = None) -> Tensor:
        """Feature map [N, C, side, side] after the blocks up to `side`."""
        h = self.input(with_labels(z, y, self.num_classes) if self.label_input else z)
        for s in range(3, log2_int(side) + 1):
            h = self.blocks[str(1 << s)](h)
        return h

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """z [N, z_dim] (+ labels y [N, K]) -> [N, 3, r, r], r = 4 * 2**stage."""
        side = self.current_resolution
        if not self._fading:
            out = self.to_rgb[str(side)](self.features(z, side, y))
        else:
            h = self.features(z, side // 2, y)
            new = self.to_rgb[str(side)](self.blocks[str(side)](h))
            old = F.interpolate(self.to_rgb[str(side // 2)](h), scale_factor=2, mode="nearest")
            out = torch.lerp(old, new, self.alpha.to(new.dtype))
        return torch.tanh(out) if self.tanh else out


# --------------------------------------------------------------------------- discriminator
class DiscriminatorBlock(nn.Module):
    """[N, C_in, r, r] -> [N, C_out, r/2, r/2]: two 3x3 convs, 2x2 average pool."""

    def __init__(self, c_in: int, c_out: int, norm: str, equalized: bool, spectral: bool):
        super().__init__()
        self.net = nn.Sequential(
            conv(c_in, c_in, 3, equalized, spectral), *act_norm(c_in, norm),
            conv(c_in, c_out, 3, equalized, spectral), *act_norm(c_out, norm),
            nn.AvgPool2d(2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class DiscriminatorOutput(nn.Module):
    """4x4 features [N, C, 4, 4] -> logits [N]: minibatch layers, conv 3x3, dense, dense."""

    def __init__(self, channels: int, norm: str, equalized: bool, spectral: bool,
                 minibatch_stddev: int, minibatch_discrimination: int,
                 minibatch_discrimination_dim: int) -> None:
        super().__init__()
        layers, c_mb = minibatch_layers(channels, 4, minibatch_stddev, minibatch_discrimination,
                                        minibatch_discrimination_dim)
        self.minibatch = nn.Sequential(*layers)
        self.conv = nn.Sequential(conv(c_mb, channels, 3, equalized, spectral),
                                  *act_norm(channels, norm))
        self.dense = nn.Sequential(
            linear(channels * 16, channels, equalized, spectral), nn.LeakyReLU(LRELU_SLOPE),
            linear(channels, 1, equalized, spectral, gain=1.0),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.dense(self.conv(self.minibatch(x)).flatten(1)).flatten()

    def with_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(logits [N], the hidden dense layer's output [N, C]: conditioning's features)."""
        hidden = self.dense[:2](self.conv(self.minibatch(x)).flatten(1))
        return self.dense[2](hidden).flatten(), hidden


class Discriminator(Progressive, LabelledDiscriminator):
    """images [N, 3, r, r] at the current stage's side r -> logits [N] (no sigmoid).

    Args:
        resolution: final side R, a power of two in [4, 1024].
        widths, width: channels per side and their cap, as in the generator.
        norm: none (paper) | batch (thesis; not with gradient penalties).
        equalized_lr, spectral_norm: as in the generator.
        minibatch_stddev: group size of the minibatch-stddev layer at 4x4 (paper: 4; 0 = off).
        minibatch_discrimination: kernels of minibatch discrimination at 4x4 (0 = off).
        minibatch_discrimination_dim: dimension of each such kernel.
        conditioning, num_classes: concat appends K label planes to the image at every fromRGB;
            projection and acgan read the hidden dense layer's output (the official code's
            label outputs are one more dense layer on it); see ganlab.nets.conditioning.
    """

    def __init__(
        self,
        resolution: int = 64,
        widths: Mapping[int, int] | None = None,
        width: int = 512,
        norm: str = "none",
        equalized_lr: bool = True,
        spectral_norm: bool = False,
        minibatch_stddev: int = 4,
        minibatch_discrimination: int = 0,
        minibatch_discrimination_dim: int = 5,
        conditioning: str = "none",
        num_classes: int = 0,
    ) -> None:
        check_resolution(resolution, 4, 1024, "data.resolution")
        check_layer_options("model.discriminator", norm, D_NORMS, equalized_lr, spectral_norm)
        super().__init__(resolution)
        self.setup_conditioning(conditioning, num_classes)
        self.channels = resolve_widths(resolution, widths, width, "model.discriminator")
        sides = list(self.channels)
        options = dict(norm=norm, equalized=equalized_lr, spectral=spectral_norm)
        self.from_rgb = nn.ModuleDict({
            str(side): nn.Sequential(conv(self.input_channels, self.channels[side], 1, equalized_lr,
                                          spectral_norm),
                                     nn.LeakyReLU(LRELU_SLOPE))
            for side in sides
        })
        self.blocks = nn.ModuleDict({
            str(side): DiscriminatorBlock(self.channels[side], self.channels[side // 2], **options)
            for side in sides[1:]
        })
        self.output = DiscriminatorOutput(
            self.channels[4], **options, minibatch_stddev=minibatch_stddev,
            minibatch_discrimination=minibatch_discrimination,
            minibatch_discrimination_dim=minibatch_discrimination_dim,
        )
        heads_wrap = (lambda m: add_spectral_norm(m)) if spectral_norm else None
        self.add_heads(self.channels[4], heads_wrap)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """x [N, 3, r, r], r = 4 * 2**stage (+ labels y [N, K]) -> logits [N]."""
        side = self.current_resolution
        assert x.shape[-2:] == (side, side), (
            f"D at stage {self._stage} takes {side}px, got {tuple(x.shape)}"
        )
        y = self.labels(y)
        x = self.input_planes(x, y)
        h = self.from_rgb[str(side)](x)
        if self._fading:
            new = self.blocks[str(side)](h)
            old = self.from_rgb[str(side // 2)](F.avg_pool2d(x, 2))
            h = torch.lerp(old, new, self.alpha.to(new.dtype))
            side //= 2
        while side > 4:
            h = self.blocks[str(side)](h)
            side //= 2
        if self.conditioning == "none":
            return self.output(h)
        logits, features = self.output.with_features(h)
        return self.conditional_output(logits, features, y)
