"""ADA (Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data").

One probability p gates every transform, per image and per transform, on the device. p follows
the overfitting heuristic r_t = E[sign(D(real))] of the augmented reals: every `interval` D steps
p += sign(r_t - target) * (images in the interval) / (speed_kimg * 1000), clipped to [0, 1]. The
sums behind r_t are all-reduced over DDP ranks (a device all-reduce; nothing is read on the host)
and are plain attributes, not buffers: DDP would broadcast rank 0's buffers at every forward.

Transforms (the paper's 'bgc' pipeline, in its order), on images [N, C, H, W] in [-1, 1]:
  geometric, composed into one affine map and resampled once:
    x-flip, rotation by k x 90 degrees, integer translation (U(-xint, xint) x side, rounded to
    pixels), isotropic scaling 2^N(0, scale_std), rotation U(-180, 180) degrees (before and after
    the anisotropic scaling, each with probability 1 - sqrt(1 - p)), anisotropic scaling
    2^N(0, aniso_std) along x and its inverse along y, fractional translation N(0, xfrac_std) x side
    (one gate per image for both axes of each translation, as stylegan2-ada's augment.py)
  colour, composed into one 4x4 matrix on (r, g, b, 1): brightness + N(0, brightness_std),
    contrast x 2^N(0, contrast_std), luma flip, hue rotation U(-180, 180) degrees around the grey
    axis, saturation x 2^N(0, saturation_std)
Resampling (`resample`): 'bandlimited' (default, as stylegan2-ada) reflect-pads the image,
upsamples it 2x with the sym6 wavelet filter, samples the affine map bilinearly on the 2x grid and
downsamples 2x with the same filter; maps that take pixels to pixels (only x-flips, quarter turns
and integer shifts drawn) are exact gathers instead. 'bilinear' samples the map once on the image
itself (reflection padding; more interpolation error). Images whose geometric gates are all off
come back bit-identical. Everything is differentiable w.r.t. the images to any order (matrix
products, grid_sample, gathers), so R1 can be taken through the augmentation.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from ganlab.augment.base import Augment, check_r1_wrt
from ganlab.utils import ConfigError, check_int, check_positive

LUMA_AXIS = (1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3))  # the grey axis (paper)
# Low-pass decomposition filter of the sym6 wavelet (PyWavelets `pywt.Wavelet("sym6").dec_lo`):
# 12 taps, sum sqrt(2), orthonormal to its even shifts, so 2x down after 2x up is the identity.
SYM6 = (0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
        0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
        -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036,
        -0.007800708325034148)
SYM6_CENTRE = sum(i * tap for i, tap in enumerate(SYM6)) / sum(SYM6)  # centre of mass, tap 5.10
RESAMPLE = ("bandlimited", "bilinear")
STATE = ("p", "rt", "sign_sum", "sign_count")  # float32 tensors kept in the extra state


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


# ----------------------------------------------------------------------------- resampling
def sym6_taps(like: Tensor) -> Tensor:
    """The sym6 low-pass filter [12] normalised to sum 1, in `like`'s dtype and device."""
    taps = torch.tensor(SYM6, dtype=torch.float64)
    return (taps / taps.sum()).to(device=like.device, dtype=like.dtype)


def upsample2x(x: Tensor, taps: Tensor) -> Tensor:
    """[N, C, H, W] -> [N, C, 2H, 2W]: zeros inserted between samples, then `taps` [k] (k even)
    with gain 2 per axis: out[j] = 2 sum_i x[i] taps[j - 2i + k/2 - 1]. Output sample j of an axis
    lies at input pixel j / 2 + e, where e = (k/2 - 1 - centre) / 2 and `centre` is the filter's
    centre of mass (sym6: tap 5.10, e = -0.049; stylegan2-ada's code takes e = 0)."""
    n, c, h, w = x.shape
    k = taps.numel()
    weight = 2 * taps
    y = x.reshape(n * c, 1, h, w)  # out[j] = sum_i x[i] w[j - 2i + k/2 - 1]
    y = F.conv_transpose2d(y, weight.view(1, 1, 1, k), stride=(1, 2), padding=(0, k // 2 - 1))
    y = F.conv_transpose2d(y, weight.view(1, 1, k, 1), stride=(2, 1), padding=(k // 2 - 1, 0))
    return y.reshape(n, c, 2 * h, 2 * w)


def downsample2x(x: Tensor, taps: Tensor) -> Tensor:
    """[N, C, 2H + k - 2, 2W + k - 2] -> [N, C, H, W]: `taps` [k] (k even, gain 1), then every
    second sample: out[i] = sum_m taps[m] x[2i + m], so input sample q lies at output pixel
    (q - k/2 + 1) / 2 + e (e as in `upsample2x`). It inverts `upsample2x` exactly for an
    orthonormal wavelet filter."""
    n, c, h2, w2 = x.shape
    k = taps.numel()
    y = x.reshape(n * c, 1, h2, w2)
    y = F.conv2d(y, taps.view(1, 1, 1, k), stride=(1, 2))
    y = F.conv2d(y, taps.view(1, 1, k, 1), stride=(2, 1))
    return y.reshape(n, c, (h2 - k + 2) // 2, (w2 - k + 2) // 2)


@functools.lru_cache(maxsize=32)
def axis_matrices(size: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """The band-limited path's linear maps along one axis of `size` pixels, as matrices:
    up [2 (3 size - 2), size] = reflect padding by size - 1 then `upsample2x`'s filter, and
    down [size, 2 size + k - 2] = `downsample2x`'s filter. Built in float64 from the same
    convolutions (so `up @ x` equals `upsample2x(pad(x))` along that axis) and cached: two
    matrix products per axis are much faster on a CPU than single-channel convolutions."""
    taps = sym6_taps(torch.empty(0, dtype=torch.float64))
    k = taps.numel()
    eye = torch.eye(size, dtype=torch.float64)
    padded = F.pad(eye[:, None, :], (size - 1, size - 1), mode="reflect")  # [size, 1, 3 size - 2]
    up = F.conv_transpose1d(padded, 2 * taps.view(1, 1, k), stride=2, padding=k // 2 - 1)
    eye_down = torch.eye(2 * size + k - 2, dtype=torch.float64)[:, None, :]
    down = F.conv1d(eye_down, taps.view(1, 1, k), stride=2)  # [2 size + k - 2, 1, size]
    return (up[:, 0].T.contiguous().to(device, dtype),
            down[:, 0].T.contiguous().to(device, dtype))


def resample_bilinear(images: Tensor, g: Tensor) -> Tensor:
    """images [N, C, H, W] sampled at g [N, 3, 3] (output -> input positions, normalised,
    align_corners=False) in one bilinear grid_sample with reflection padding."""
    grid = F.affine_grid(g[:, :2, :].to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection",
                         align_corners=False)


def resample_bandlimited(images: Tensor, g: Tensor) -> Tensor:
    """images [N, C, H, W] sampled at g [N, 3, 3] (output -> input positions, normalised,
    align_corners=False), band-limited as stylegan2-ada's augment.py does it:

    1. reflect padding by H - 1 rows and W - 1 columns (the most `reflect` allows; the map may
       reach outside the image, and the filters need its surroundings; past that, zeros);
    2. 2x upsampling with the sym6 filter (`upsample2x`; 1 and 2 as matrices per axis);
    3. one bilinear grid_sample of the map on the 2x grid, at the 2H + k - 2 (by 2W + k - 2)
       positions the downsampling filter reads (k = 12 taps); the identity map hits the 2x
       grid's samples exactly, so an image that does not move comes back as it was;
    4. 2x downsampling with the same filter (`downsample2x`, as matrices per axis).
    The padding is the same for every batch (no host synchronisation). Returns [N, C, H, W].
    """
    n, c, h, w = images.shape
    k = len(SYM6)
    up_h, down_h = axis_matrices(h, images.device, images.dtype)
    up_w, down_w = axis_matrices(w, images.device, images.dtype)
    up = up_h @ (images @ up_w.T)  # [N, C, 2 (3H - 2), 2 (3W - 2)]
    out_h, out_w = 2 * h + k - 2, 2 * w + k - 2
    # Pixel positions (per axis of side s): sample j of the upsampled image lies at padded input
    # pixel j / 2 + e and sample q of the grid at output pixel (q - k/2 + 1) / 2 + e, where
    # e = (k/2 - 1 - centre) / 2 and `centre` is the filter's centre of mass (sym6: tap 5.10, so
    # e = -0.049; stylegan2-ada takes e = 0, which moves rotated and scaled images by about
    # (I - A) e pixels). In normalised coordinates (align_corners=False, padded side 3s - 2):
    # grid sample b is output position b * out / (2s) + (1 + 4e) / (2s), and input position x is
    # x * s / (3s - 2) - (1 + 4e) / (2 (3s - 2)) on the upsampled image. The identity map hits
    # the upsampled samples exactly, whatever e.
    shift = 1 + 4 * (k / 2 - 1 - SYM6_CENTRE) / 2
    f64 = dict(dtype=torch.float64)
    from_grid = torch.tensor([[out_w / (2 * w), 0, shift / (2 * w)],
                              [0, out_h / (2 * h), shift / (2 * h)], [0, 0, 1]], **f64)
    to_up = torch.tensor([[w / (3 * w - 2), 0, -shift / (2 * (3 * w - 2))],
                          [0, h / (3 * h - 2), -shift / (2 * (3 * h - 2))], [0, 0, 1]], **f64)
    theta = to_up.to(g) @ g @ from_grid.to(g)
    grid = F.affine_grid(theta[:, :2, :].to(images.dtype), [n, c, out_h, out_w],
                         align_corners=False)
    sampled = F.grid_sample(up, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return down_h @ (sampled @ down_w.T)


RESAMPLERS = {"bandlimited": resample_bandlimited, "bilinear": resample_bilinear}


def pixel_map(g: Tensor, h: int, w: int) -> Tensor:
    """g [N, 3, 3] (normalised coordinates) as a map of centred pixel coordinates [N, 3, 3]."""
    scale = torch.tensor([w / 2, h / 2, 1.0], device=g.device, dtype=g.dtype)
    return scale[:, None] * g / scale  # diag(scale) @ g @ diag(1 / scale)


def is_blit(g: Tensor, h: int, w: int, tol: float = 1e-4) -> Tensor:
    """[N] bool: g [N, 3, 3] takes pixels to pixels (x-flips, quarter turns, whole-pixel shifts:
    a signed permutation and an integer shift in pixel units, up to float error `tol`)."""
    m = pixel_map(g, h, w)[:, :2, :]
    whole = ((m - m.round()).abs() < tol).flatten(1).all(1)
    permutation = (m[:, :, :2].round().abs().sum(1) == 1).all(1)
    return whole & permutation


def resample_blit(images: Tensor, g: Tensor) -> Tensor:
    """images [N, C, H, W] moved by maps g [N, 3, 3] that take pixels to pixels (`is_blit`): an
    exact gather from the image reflect-padded as in `resample_bandlimited` (zeros beyond), which
    is what that path computes for such maps except for its filter error (the sym6 filter is not
    symmetric, so a flip of the 2x image is not undone exactly by the downsampling)."""
    n, c, h, w = images.shape
    m = pixel_map(g, h, w)
    ys = torch.arange(h, device=g.device, dtype=g.dtype) - (h - 1) / 2
    xs = torch.arange(w, device=g.device, dtype=g.dtype) - (w - 1) / 2
    m = m[:, :2, :, None, None]  # [N, 2, 3, 1, 1]
    x_in = m[:, 0, 0] * xs + m[:, 0, 1] * ys[:, None] + m[:, 0, 2]  # [N, H, W]
    y_in = m[:, 1, 0] * xs + m[:, 1, 1] * ys[:, None] + m[:, 1, 2]
    ix = torch.round(x_in + (w - 1) / 2).long() + (w - 1)  # in the padded image [3H-2, 3W-2]
    iy = torch.round(y_in + (h - 1) / 2).long() + (h - 1)
    inside = (ix >= 0) & (ix < 3 * w - 2) & (iy >= 0) & (iy < 3 * h - 2)  # [N, H, W]
    index = iy.clamp(0, 3 * h - 3) * (3 * w - 2) + ix.clamp(0, 3 * w - 3)
    padded = F.pad(images, (w - 1, w - 1, h - 1, h - 1), mode="reflect").flatten(2)
    out = padded.gather(2, index.flatten(1)[:, None, :].expand(-1, c, -1)).view(n, c, h, w)
    return torch.where(inside[:, None], out, torch.zeros_like(out))


def resample_moved(images: Tensor, g: Tensor, resample: str, subset: bool) -> Tensor:
    """images [N, C, H, W] resampled at g [N, 3, 3]: images whose g is the identity (every
    geometric gate off) come back bit-identical; with resample='bandlimited', maps that take
    pixels to pixels (flips, quarter turns, whole-pixel shifts and nothing else) are exact gathers
    (`resample_blit`) and the others band-limited; with 'bilinear', all moved are bilinear.

    subset=True resamples each kind only on its images (reads their indices on the host: free on
    a CPU, a synchronisation on an accelerator); subset=False computes every kind for the whole
    batch and picks per image with torch.where (no synchronisation). Both give the same images."""
    h, w = images.shape[-2:]
    moved = (g != torch.eye(3, device=g.device, dtype=g.dtype)).flatten(1).any(1)
    if resample == "bandlimited":
        blit = moved & is_blit(g, h, w)
        kinds = [(blit, resample_blit), (moved & ~blit, resample_bandlimited)]
    else:
        kinds = [(moved, RESAMPLERS[resample])]
    out = images
    for chosen, fn in kinds:
        if not subset:
            out = torch.where(chosen[:, None, None, None], fn(images, g), out)
            continue
        index = chosen.nonzero().squeeze(1)
        if index.numel() > 0:
            out = out.index_put((index,), fn(images[index], g[index]))
    return out


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
        resample: how the geometric map is sampled: 'bandlimited' (stylegan2-ada: 2x upsampling
            with the sym6 filter, bilinear on the 2x grid, filtered 2x downsampling) or
            'bilinear' (one bilinear grid_sample on the image; cheaper, blurrier).
        r1_wrt: what R1 differentiates: 'reals' (the un-augmented reals, through the
            augmentation, as stylegan2-ada) or 'augmented' (the augmented image D saw).

    State (float32 tensors on the module's device; plain attributes, not buffers, so DDP does not
    broadcast rank 0's at every forward; saved and restored exactly through the extra state):
    p, rt (the last adjustment's r_t, 0 before the first), sign_sum and sign_count (this rank's
    running sums of the current interval) and steps (D steps within it).
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
        resample: str = "bandlimited",
        r1_wrt: str = "reals",
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
        if resample not in RESAMPLE:
            raise ConfigError(f"model.augment.resample={resample!r} must be one of "
                              f"{' | '.join(RESAMPLE)} (stylegan2-ada: bandlimited)")
        self.resample = resample
        self.r1_wrt = check_r1_wrt(r1_wrt)
        self.target, self.interval, self.speed_kimg = float(target), interval, float(speed_kimg)
        self.fixed_p = bool(fixed_p)
        self.flags = dict(xflip=bool(xflip), rotate90=bool(rotate90), rotate=bool(rotate),
                          lumaflip=bool(lumaflip), hue=bool(hue))
        self.xint = float(xint)
        self.stds = {name: float(value) for name, value in stds.items()}
        self.p = torch.tensor(float(initial_p))
        self.rt = torch.tensor(0.0)
        self.sign_sum = torch.tensor(0.0)  # sum of sign(D(real)) this interval, this rank
        self.sign_count = torch.tensor(0.0)  # images in it, this rank
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

    # ------------------------------------------------------------------ state
    def _apply(self, fn: Any, recurse: bool = True) -> ADA:
        """Module moves (`.to(device)`) take the state along like a buffer; it stays float32
        under dtype casts (`.half()` too)."""
        super()._apply(fn, recurse)
        for name in STATE:
            setattr(self, name, fn(getattr(self, name)).float())
        return self

    def get_extra_state(self) -> dict[str, Any]:
        """What a checkpoint keeps: the state (CPU copies) and the step count."""
        return {"steps": self.steps, **{name: getattr(self, name).detach().cpu().clone()
                                         for name in STATE}}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        for name in STATE:
            if name in state:
                old = getattr(self, name)
                setattr(self, name, torch.as_tensor(state[name]).to(old.device, old.dtype))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              *args: Any, **kwargs: Any) -> None:
        """Checkpoints written while p, rt and the sums were buffers hold them as `<prefix>p`
        etc. beside `<prefix>_extra_state` (the step count): fold them into the extra state."""
        legacy = {name: state_dict.pop(prefix + name) for name in STATE
                  if prefix + name in state_dict}
        extra = prefix + "_extra_state"
        if legacy and isinstance(state_dict.get(extra), dict):
            state_dict[extra] = {**state_dict[extra], **legacy}
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ transforms
    def _gate(self, values: Tensor, identity: float, p: Tensor | None = None) -> Tensor:
        """values [N, ...] where one U(0, 1) draw per image < p, else the identity value (one
        gate per image for all its trailing entries, e.g. both axes of a translation)."""
        p = self.p if p is None else p
        apply = torch.rand(values.shape[0], device=values.device) < p
        apply = apply.view(-1, *[1] * (values.dim() - 1))
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
        if self.xint > 0:  # one gate per image for (x, y): P(translated) = p
            shift = (torch.rand(n, 2, **f32) * 2 - 1) * self.xint
            shift = self._gate(torch.round(shift * size) * 2 / size, 0.0)  # whole pixels (side 2)
            g = g @ translate2d(-shift[:, 0], -shift[:, 1])
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
        if self.stds["xfrac_std"] > 0:  # one gate per image for (x, y)
            shift = self._gate(torch.randn(n, 2, **f32) * self.stds["xfrac_std"] * 2, 0.0)
            g = g @ translate2d(-shift[:, 0], -shift[:, 1])
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
        # on a CPU only the moved images are resampled (reading which costs nothing there)
        x = resample_moved(images, g, self.resample, subset=images.device.type == "cpu")
        if channels != 3:
            return x
        c = self.colour(n, images).to(images.dtype)
        return torch.einsum("nij,njhw->nihw", c[:, :3, :3], x) + c[:, :3, 3, None, None]

    def extra_repr(self) -> str:
        return (f"target={self.target}, interval={self.interval}, speed_kimg={self.speed_kimg}, "
                f"resample={self.resample}, r1_wrt={self.r1_wrt}")
