"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

The paper's three policies, on images [N, C, H, W] in [-1, 1], new parameters per image:
  color:       brightness + U(-0.5, 0.5); saturation x U(0, 2) around the pixel's channel mean;
               contrast x U(0.5, 1.5) around the image mean
  translation: integer shift of up to `translation` x side in each axis, zero padding
  cutout:      one square of `cutout` x side zeroed at a random centre (clipped at the border)
Every op is differentiable w.r.t. the images (additions, products and index gathers).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ganlab.augment.base import Augment, check_r1_wrt
from ganlab.utils import ConfigError

POLICIES = ("color", "translation", "cutout")


def _uniform(images: Tensor, low: float, high: float) -> Tensor:
    """Per-image factors [N, 1, 1, 1] ~ U(low, high) in the images' dtype and device."""
    shape = (images.shape[0], 1, 1, 1)
    return torch.rand(shape, device=images.device, dtype=images.dtype) * (high - low) + low


def rand_color(images: Tensor) -> Tensor:
    """Brightness, saturation and contrast, each with its own per-image factor."""
    x = images + _uniform(images, -0.5, 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * _uniform(x, 0.0, 2.0) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(x, 0.5, 1.5) + mean


def _side(size: int, ratio: float) -> int:
    return int(size * ratio + 0.5)


def rand_translation(images: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each image by integers in [-ratio x side, ratio x side] (rows, columns); zeros in."""
    n, _, h, w = images.shape
    dy, dx = _side(h, ratio), _side(w, ratio)
    if dy == 0 and dx == 0:
        return images
    dev = images.device
    shift_y = torch.randint(-dy, dy + 1, (n, 1, 1), device=dev)
    shift_x = torch.randint(-dx, dx + 1, (n, 1, 1), device=dev)
    # source index + 1 in the zero-padded image; out-of-range indices land on the zero border
    rows = (torch.arange(h, device=dev)[None, :, None] + shift_y + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=dev)[None, None, :] + shift_x + 1).clamp(0, w + 1)
    batch = torch.arange(n, device=dev)[:, None, None]
    padded = F.pad(images, (1, 1, 1, 1))
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2)  # [N, H, W, C] -> [N, C, H, W]


def rand_cutout(images: Tensor, ratio: float = 0.5) -> Tensor:
    """Zero one (ratio x side)-square per image at a uniformly random centre."""
    n, _, h, w = images.shape
    ch, cw = _side(h, ratio), _side(w, ratio)
    if ch == 0 or cw == 0:
        return images
    dev = images.device
    top = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=dev) - ch // 2
    left = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=dev) - cw // 2
    rows = torch.arange(h, device=dev)[None, :, None]
    cols = torch.arange(w, device=dev)[None, None, :]
    inside = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
    return images * (~inside).unsqueeze(1).to(images.dtype)


def parse_policy(policy: str | Sequence[str] | None) -> tuple[str, ...]:
    """'color,translation' or ['color', 'translation'] -> ('color', 'translation'); '' -> ()."""
    if policy is None:
        return ()
    names = policy.split(",") if isinstance(policy, str) else list(policy)
    names = [str(name).strip() for name in names if str(name).strip()]
    unknown = [name for name in names if name not in POLICIES]
    if unknown:
        raise ConfigError(
            f"model.augment.policy={policy!r}: unknown policy {unknown}; choose a subset of "
            f"{', '.join(POLICIES)} (e.g. model.augment.policy=[color,translation,cutout])"
        )
    return tuple(names)


class DiffAugment(Augment):
    """`model.augment=diffaug`: fixed differentiable policies applied to every image D sees.

    Args:
        policy: comma-separated policies (or a list) from color, translation, cutout, applied in
            that order as given; empty = identity.
        translation: largest shift as a fraction of the side, in [0, 1] (paper: 1/8).
        cutout: side of the zeroed square as a fraction of the side, in [0, 1] (paper: 1/2).
        r1_wrt: what R1 differentiates: 'reals' (the un-augmented reals, through the
            augmentation: data-efficient-gans' `ns_DiffAugment_r1`) or 'augmented' (the
            augmented image D saw: its `ns_r1_DiffAugment`).
    """

    def __init__(
        self,
        policy: str | Sequence[str] | None = "color,translation,cutout",
        translation: float = 0.125,
        cutout: float = 0.5,
        r1_wrt: str = "reals",
    ) -> None:
        super().__init__()
        for name, value in (("translation", translation), ("cutout", cutout)):
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or not 0 <= value <= 1:
                raise ConfigError(
                    f"model.augment.{name}={value!r} must be a fraction of the side in [0, 1] "
                    f"(paper: translation=0.125, cutout=0.5)"
                )
        self.policy = parse_policy(policy)
        self.translation, self.cutout = float(translation), float(cutout)
        self.r1_wrt = check_r1_wrt(r1_wrt)

    def forward(self, images: Tensor) -> Tensor:
        """images [N, C, H, W] in [-1, 1] -> augmented, same shape (values may leave [-1, 1])."""
        for name in self.policy:
            if name == "color":
                images = rand_color(images)
            elif name == "translation":
                images = rand_translation(images, self.translation)
            else:
                images = rand_cutout(images, self.cutout)
        return images

    def extra_repr(self) -> str:
        return f"policy={','.join(self.policy) or 'none'}, r1_wrt={self.r1_wrt}"
