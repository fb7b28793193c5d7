"""ADA (Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data").

One probability p gates every transform, per image and per transform, on the device. p follows
the overfitting heuristic r_t = E[sign(D(real))] of the augmented reals: every `interval` D steps
p += sign(r_t - target) * (images in the interval) / (speed_kimg * 1000), clipped to [0, 1]. The
reduction over DDP ranks is a device all-reduce; nothing is read on the host.

Transforms (the paper's 'bgc' pipeline, in its order), on images [N, C, H, W] in [-1, 1]:
  geometric, composed into one affine map and sampled once (bilinear, reflection padding):
    x-flip, rotation by k x 90 degrees, integer translation (U(-xint, xint) x side, rounded to
    pixels), isotropic scaling 2^N(0, scale_std), rotation U(-180, 180) degrees (before and after
    the anisotropic scaling, each with probability 1 - sqrt(1 - p)), anisotropic scaling
    2^N(0, aniso_std) along x and its inverse along y, fractional translation N(0, xfrac_std) x side
  colour, composed into one 4x4 matrix on (r, g, b, 1): brightness + N(0, brightness_std),
    contrast x 2^N(0, contrast_std), luma flip, hue rotation U(-180, 180) degrees around the grey
    axis, saturation x 2^N(0, saturation_std)
Everything is differentiable w.r.t. the images (grid_sample and a matrix product).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from ganlab.augment.base import Augment
from ganlab.utils import ConfigError, check_int, check_positive

LUMA_AXIS = (1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3))  # the grey axis (paper)


# ----------------------------------------------------------------------------- batched matrices
def _eye(n: int, size: int, like: Tensor) -> Tensor:
    return torch.eye(size, device=like.device, dtype=like.dtype).expand(n, size, size).clone()


def translate2d(tx: Tensor, ty: Tensor) -> Tensor:
    """[N, 3, 3] translations by (tx, ty) (normalised coordinates: the side is 2)."""
    m = _eye(tx.shape[0], 3, tx)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def scale2d(sx: Tensor, sy: Tensor) -> Tensor:
    """[N, 3, 3] scalings by (sx, sy) around the centre."""
    m = _eye(sx.shape[0], 3, sx)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def rotate2d(theta: Tensor) -> Tensor:
    """[N, 3, 3] rotations by theta (radians) around the centre."""
    m = _eye(theta.shape[0], 3, theta)
    c, s = theta.cos(), theta.sin()
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    return m


def translate3d(t: Tensor) -> Tensor:
    """[N, 4, 4] colour offsets t [N] added to r, g and b."""
    m = _eye(t.shape[0], 4, t)
    m[:, :3, 3] = t[:, None]
    return m


def scale3d(s: Tensor) -> Tensor:
    """[N, 4, 4] colour scalings by s [N] (r, g, b alike)."""
    m = _eye(s.shape[0], 4, s)
    m[:, 0, 0] = m[:, 1, 1] = m[:, 2, 2] = s
    return m


def rotate3d(axis: Tensor, theta: Tensor) -> Tensor:
    """[N, 4, 4] rotations of (r, g, b) by theta [N] around the unit `axis` [3] (Rodrigues)."""
    x, y, z = axis
    cross = torch.stack([torch.stack([0 * x, -z, y]), torch.stack([z, 0 * x, -x]),
                         torch.stack([-y, x, 0 * x])])
    outer = torch.outer(axis, axis)
    c, s = theta.cos()[:, None, None], theta.sin()[:, None, None]
    m = _eye(theta.shape[0], 4, theta)
    eye = torch.eye(3, device=axis.device, dtype=axis.dtype)
    m[:, :3, :3] = c * eye + s * cross + (1 - c) * outer
    return m


# ----------------------------------------------------------------------------- the pipeline
class ADA(Augment):
    """`model.augment=ada`: adaptive discriminator augmentation.

    Args:
        target: r_t that p steers towards, in (0, 1) (paper: 0.6).
        interval: D steps between adjustments of p (paper: 4).
        speed_kimg: thousands of images over which p can go from 0 to 1 (paper: 500).
        initial_p: p at the start, in [0, 1].
        fixed_p: keep p at initial_p (the paper's fixed-p baselines); r_t is still measured.
        xflip, rotate90, rotate, lumaflip, hue: switch those transforms on or off.
        xint: largest integer translation, fraction of the side in [0, 0.5] (0 = off).
        scale_std, aniso_std, contrast_std, saturation_std: std of log2 of the factor (0 = off).
        xfrac_std: std of the fractional translation, fraction of the side (0 = off).
        brightness_std: std of the brightness offset, image units of [-1, 1] (0 = off).

    Buffers (saved in checkpoints, restored on resume): p, rt (the last adjustment's r_t, 0
    before the first) and the running sums of the current interval; the step count within the
    interval is the module's extra state.
    """

    def __init__(
        self,
        target: float = 0.6,
        interval: int = 4,
        speed_kimg: float = 500.0,
        initial_p: float = 0.0,
        fixed_p: bool = False,
        xflip: bool = True,
        rotate90: bool = True,
        xint: float = 0.125,
        scale_std: float = 0.2,
        rotate: bool = True,
        aniso_std: float = 0.2,
        xfrac_std: float = 0.125,
        brightness_std: float = 0.2,
        contrast_std: float = 0.5,
        lumaflip: bool = True,
        hue: bool = True,
        saturation_std: float = 1.0,
    ) -> None:
        super().__init__()
        if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target < 1:
            raise ConfigError(
                f"model.augment.target={target!r} must be in (0, 1): the fraction of reals D may "
                "score as real (r_t) before p rises; the paper uses 0.6 (model.augment.target=0.6)"
            )
        check_int(interval, "model.augment.interval", 1)
        check_positive(speed_kimg, "model.augment.speed_kimg")
        if not 0 <= initial_p <= 1:
            raise ConfigError(f"model.augment.initial_p={initial_p!r} must be in [0, 1]")
        if not 0 <= xint <= 0.5:
            raise ConfigError(f"model.augment.xint={xint!r} must be a fraction of the side "
                              "in [0, 0.5]")
        stds = dict(scale_std=scale_std, aniso_std=aniso_std, xfrac_std=xfrac_std,
                    brightness_std=brightness_std, contrast_std=contrast_std,
                    saturation_std=saturation_std)
        for name, value in stds.items():
            if value < 0:
                raise ConfigError(f"model.augment.{name}={value!r} must be >= 0 (0 = off)")
        self.target, self.interval, self.speed_kimg = float(target), interval, float(speed_kimg)
        self.fixed_p = bool(fixed_p)
        self.flags = dict(xflip=bool(xflip), rotate90=bool(rotate90), rotate=bool(rotate),
                          lumaflip=bool(lumaflip), hue=bool(hue))
        self.xint = float(xint)
        self.stds = {name: float(value) for name, value in stds.items()}
        self.register_buffer("p", torch.tensor(float(initial_p)))
        self.register_buffer("rt", torch.tensor(0.0))
        self.register_buffer("sign_sum", torch.tensor(0.0))  # sum of sign(D(real)) this interval
        self.register_buffer("sign_count", torch.tensor(0.0))  # images in it (all ranks)
        self.steps = 0  # D steps since the last adjustment

    # ------------------------------------------------------------------ heuristic
    def check_loss(self, loss: Any) -> None:
        if getattr(loss, "decision_boundary", 0.0) is None:
            raise ConfigError(
                f"model.augment=ada with loss {type(loss).__name__}: ADA's overfitting heuristic "
                "E[sign(D(real))] needs a D output whose sign says real or fake, and a Wasserstein "
                "critic has none (its offset is arbitrary; the drift term centres it on 0). Use "
                "loss=nonsaturating, loss=hinge or loss=lsgan with ADA, or model.augment=diffaug "
                "(fixed policies, no heuristic) with this loss"
            )

    def after_d_step(self, real_sign: Tensor | None, batch_size: int) -> None:
        """Accumulate the batch's mean sign; every `interval` steps adjust p (device only)."""
        if real_sign is None:
            return
        self.sign_sum += real_sign.detach().float() * batch_size
        self.sign_count += batch_size
        self.steps += 1
        if self.steps < self.interval:
            return
        self.steps = 0
        stats = torch.stack([self.sign_sum, self.sign_count])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stats)  # sums over ranks: every rank gets the same p
        self.rt.copy_(stats[0] / stats[1])
        if not self.fixed_p:
            step = torch.sign(self.rt - self.target) * stats[1] / (self.speed_kimg * 1000)
            self.p.copy_((self.p + step).clamp(0.0, 1.0))
        self.sign_sum.zero_()
        self.sign_count.zero_()

    def logs(self) -> dict[str, Tensor]:
        return {"ada_p": self.p, "ada_rt": self.rt}

    def get_extra_state(self) -> dict[str, int]:
        return {"steps": self.steps}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.steps = int(state["steps"])

    # ------------------------------------------------------------------ transforms
    def _gate(self, values: Tensor, identity: float, p: Tensor | None = None) -> Tensor:
        """values [N] where a U(0, 1) draw < p (per image), else the identity value."""
        p = self.p if p is None else p
        apply = torch.rand(values.shape[0], device=values.device) < p
        return torch.where(apply, values, torch.full_like(values, identity))

    def geometry(self, n: int, size: int, like: Tensor) -> Tensor:
        """[N, 3, 3] maps output -> input pixel positions (normalised to [-1, 1])."""
        f32 = dict(device=like.device, dtype=torch.float32)
        g = _eye(n, 3, torch.empty(0, **f32))
        if self.flags["xflip"]:
            flip = self._gate(torch.randint(0, 2, (n,), **f32), 0.0)
            g = g @ scale2d(1 - 2 * flip, torch.ones(n, **f32))
        if self.flags["rotate90"]:
            quarter = self._gate(torch.randint(0, 4, (n,), **f32), 0.0)
            g = g @ rotate2d(-math.pi / 2 * quarter)
        if self.xint > 0:
            shift = (torch.rand(2, n, **f32) * 2 - 1) * self.xint
            shift = torch.round(shift * size) * 2 / size  # whole pixels (the side is 2)
            g = g @ translate2d(-self._gate(shift[0], 0.0), -self._gate(shift[1], 0.0))
        if self.stds["scale_std"] > 0:
            s = self._gate(torch.exp2(torch.randn(n, **f32) * self.stds["scale_std"]), 1.0)
            g = g @ scale2d(1 / s, 1 / s)
        p_rot = 1 - torch.sqrt((1 - self.p).clamp(0, 1))  # two rotations: P(any) = p
        if self.flags["rotate"]:
            g = g @ rotate2d(-self._gate((torch.rand(n, **f32) * 2 - 1) * math.pi, 0.0, p_rot))
        if self.stds["aniso_std"] > 0:
            s = self._gate(torch.exp2(torch.randn(n, **f32) * self.stds["aniso_std"]), 1.0)
            g = g @ scale2d(1 / s, s)
        if self.flags["rotate"]:
            g = g @ rotate2d(-self._gate((torch.rand(n, **f32) * 2 - 1) * math.pi, 0.0, p_rot))
        if self.stds["xfrac_std"] > 0:
            shift = torch.randn(2, n, **f32) * self.stds["xfrac_std"] * 2
            g = g @ translate2d(-self._gate(shift[0], 0.0), -self._gate(shift[1], 0.0))
        return g

    def colour(self, n: int, like: Tensor) -> Tensor:
        """[N, 4, 4] colour matrices acting on (r, g, b, 1)."""
        f32 = dict(device=like.device, dtype=torch.float32)
        c = _eye(n, 4, torch.empty(0, **f32))
        axis = torch.tensor(LUMA_AXIS, **f32)
        v = torch.cat([axis, axis.new_zeros(1)])
        outer = torch.outer(v, v)  # projection onto the grey axis, [4, 4]
        if self.stds["brightness_std"] > 0:
            b = self._gate(torch.randn(n, **f32) * self.stds["brightness_std"], 0.0)
            c = translate3d(b) @ c
        if self.stds["contrast_std"] > 0:
            s = self._gate(torch.exp2(torch.randn(n, **f32) * self.stds["contrast_std"]), 1.0)
            c = scale3d(s) @ c
        if self.flags["lumaflip"]:
            flip = self._gate(torch.randint(0, 2, (n,), **f32), 0.0)
            c = (torch.eye(4, **f32) - 2 * outer * flip[:, None, None]) @ c
        if self.flags["hue"]:
            theta = self._gate((torch.rand(n, **f32) * 2 - 1) * math.pi, 0.0)
            c = rotate3d(axis, theta) @ c
        if self.stds["saturation_std"] > 0:
            s = self._gate(torch.exp2(torch.randn(n, **f32) * self.stds["saturation_std"]), 1.0)
            c = (outer + (torch.eye(4, **f32) - outer) * s[:, None, None]) @ c
        return c

    def forward(self, images: Tensor) -> Tensor:
        """images [N, C, H, W] (square, C = 3 for the colour transforms) -> same shape."""
        n, channels, h, w = images.shape
        g = self.geometry(n, w, images)
        grid = F.affine_grid(g[:, :2, :].to(images.dtype), list(images.shape), align_corners=False)
        x = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection",
                          align_corners=False)
        if channels != 3:
            return x
        c = self.colour(n, images).to(images.dtype)
        return torch.einsum("nij,njhw->nihw", c[:, :3, :3], x) + c[:, :3, 3, None, None]

    def extra_repr(self) -> str:
        return f"target={self.target}, interval={self.interval}, speed_kimg={self.speed_kimg}"
