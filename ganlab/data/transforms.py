"""Batch conversions of image tensors shared by the datamodules, callbacks, metrics and tools:
uint8 <-> [-1, 1] floats, resizing, PGGAN's real-image fade, flips, grids. Torch only (no
Lightning), so command-line tools such as `ganlab-generate` start without importing Lightning."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.utils import make_grid


def to_float(images: Tensor) -> Tensor:
    """uint8 [N, C, H, W] in [0, 255] -> float32 in [-1, 1]."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: Tensor) -> Tensor:
    """float [N, C, H, W] in [-1, 1] -> uint8 in [0, 255], rounded as a saved PNG would be."""
    return images.float().add(1.0).mul(127.5).add_(0.5).clamp_(0, 255).to(torch.uint8)


def resize(images: Tensor, resolution: int, mode: str = "area") -> Tensor:
    """Resize float images [N, C, H, W] to [N, C, resolution, resolution].

    area: box filter (exact average of factor x factor blocks when downsampling by an integer);
    nearest: every factor-th pixel (the reference thesis); bilinear: antialiased bilinear.
    """
    if images.shape[-1] == resolution:
        return images
    if mode == "area" and images.shape[-1] % resolution == 0:
        return F.avg_pool2d(images, images.shape[-1] // resolution)
    if mode == "bilinear":
        return F.interpolate(
            images, size=resolution, mode="bilinear", antialias=True, align_corners=False
        )
    return F.interpolate(images, size=resolution, mode=mode)


def fade_reals(images: Tensor, alpha: float) -> Tensor:
    """PGGAN real-image fade: alpha * x + (1 - alpha) * upsample(downsample(x)) (2x box, nearest).

    images: float [N, C, R, R]; alpha in [0, 1]; same shape out.
    """
    if alpha >= 1.0:
        return images
    coarse = F.interpolate(F.avg_pool2d(images, 2), scale_factor=2, mode="nearest")
    return torch.lerp(coarse, images, alpha)


def random_hflip(images: Tensor) -> Tensor:
    """Mirror a random half of the batch [N, C, H, W] left-right (one draw per image)."""
    flip = torch.rand(images.shape[0], 1, 1, 1, device=images.device) < 0.5
    return torch.where(flip, images.flip(-1), images)


def collate_images(batch: Tensor | Sequence[Tensor]) -> Tensor:
    """Batches from `__getitems__` arrive stacked; single items are stacked here."""
    return batch if isinstance(batch, Tensor) else torch.stack(list(batch))


def images_to_grid(images: torch.Tensor, nrow: int = 8, size: int | None = None) -> torch.Tensor:
    """[N, 3, r, r] in [-1, 1] -> one grid [3, H, W] in [0, 1], optionally upscaled to `size` px."""
    images = images.float().clamp(-1, 1).add(1).div(2)
    if size is not None and images.shape[-1] != size:
        images = F.interpolate(images, size=size, mode="nearest")
    return make_grid(images.cpu(), nrow=nrow, padding=1)
