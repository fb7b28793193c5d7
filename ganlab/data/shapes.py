"""The embedded dataset: procedurally drawn coloured shapes, no files and no downloads.

Each image is a two-colour gradient background with one or two shapes (disc, square, triangle,
ring) of vivid colours at random positions, sizes and rotations. Rendering is vectorised in
torch (2x supersampled, then box-filtered) and deterministic per seed. `render_shapes(...,
return_labels=True)` also returns the parameters each image was drawn from (see `LABELS`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ganlab.data.base import ArrayImageDataset, ImageDataModule
from ganlab.data.labels import one_hot
from ganlab.utils import ConfigError

SHAPE_KINDS = ("disc", "square", "triangle", "ring")
PALETTE = torch.tensor(
    [
        [0.95, 0.25, 0.20],
        [0.20, 0.75, 0.30],
        [0.20, 0.45, 0.95],
        [0.98, 0.85, 0.15],
        [0.90, 0.35, 0.85],
        [0.15, 0.85, 0.85],
        [0.98, 0.55, 0.10],
        [0.97, 0.97, 0.97],
    ]
)


# rotational symmetry order of each kind (rotation label: sin/cos of order * angle); 0: none
# (a disc or ring looks the same at every angle, so it has no rotation label)
SYMMETRY = (0, 4, 3, 0)
NUM_SLOTS = 2  # shapes drawn per image at most (slot 1 on top of slot 0)
ABSENT = len(SHAPE_KINDS)  # kind label of an empty slot
# label name -> (shape per image, meaning); float labels are NaN where undefined
LABELS = {
    "num_shapes": ((), "int64: shapes drawn, 1 or 2"),
    "kind": ((NUM_SLOTS,), f"int64: index into SHAPE_KINDS, {ABSENT} = slot empty"),
    "palette": ((NUM_SLOTS,), "int64: index into PALETTE before jitter, -1 = slot empty"),
    "colour": ((NUM_SLOTS, 3), "float32: RGB in [0, 1] after jitter"),
    "centre": ((NUM_SLOTS, 2), "float32: x, y in [-0.5, 0.5] (image spans [-1, 1])"),
    "scale": ((NUM_SLOTS,), "float32: radius in [0.35, 0.65] image half-widths"),
    "rotation": ((NUM_SLOTS, 2), "float32: sin, cos of symmetry * angle (NaN: disc, ring)"),
    "background": ((2, 3), "float32: dark and light gradient colours, RGB in [0, 1]"),
    "gradient": ((2,), "float32: sin, cos of the gradient's angle"),
}


def _shape_masks(u: Tensor, v: Tensor, kind: Tensor) -> Tensor:
    """Boolean masks [n, S, S] of each image's shape in its own frame (u, v in shape units)."""
    radius = torch.sqrt(u * u + v * v)
    masks = torch.stack(
        [
            radius <= 1.0,
            torch.maximum(u.abs(), v.abs()) <= 0.8,
            (v >= -0.5) & (math.sqrt(3) * u.abs() + v <= 1.0),
            (radius <= 1.0) & (radius >= 0.55),
        ]
    )  # [kinds, n, S, S]
    return masks.gather(0, kind[None, :, None, None].expand(1, *u.shape)).squeeze(0)


def _render_chunk(
    num: int, size: int, generator: torch.Generator, max_shapes: int = NUM_SLOTS
) -> tuple[Tensor, dict[str, Tensor]]:
    """Float images [num, 3, size, size] in [0, 1] and their labels (see LABELS); `max_shapes`
    1: every image has one shape (the same random draws, the second shape left out)."""

    def rand(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=generator)

    axis = (torch.arange(size) + 0.5) / size * 2 - 1
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    angle = rand(num) * 2 * math.pi
    t = ((xx * angle.cos()[:, None, None] + yy * angle.sin()[:, None, None]) * 0.5 + 0.5).clamp(
        0, 1
    )
    dark, light = rand(num, 3) * 0.35, 0.25 + rand(num, 3) * 0.35
    images = torch.lerp(dark[:, :, None, None], light[:, :, None, None], t[:, None])
    num_shapes = 1 + (rand(num) < (0.3 if max_shapes > 1 else 0.0)).long()
    slots = []
    for k in range(NUM_SLOTS):
        centre = (rand(num, 2) - 0.5) * 1.0
        scale = 0.35 + rand(num) * 0.3
        rot = rand(num) * 2 * math.pi
        kind = torch.randint(len(SHAPE_KINDS), (num,), generator=generator)
        palette = torch.randint(len(PALETTE), (num,), generator=generator)
        colour = (PALETTE[palette] + (rand(num, 3) - 0.5) * 0.15).clamp(0, 1)
        dx, dy = xx - centre[:, 0, None, None], yy - centre[:, 1, None, None]
        c, s, r = rot.cos()[:, None, None], rot.sin()[:, None, None], scale[:, None, None]
        mask = _shape_masks((dx * c + dy * s) / r, (-dx * s + dy * c) / r, kind)
        mask &= (num_shapes > k)[:, None, None]
        images = torch.where(mask[:, None], colour[:, :, None, None], images)
        slots.append(_slot_labels(num_shapes > k, kind, palette, colour, centre, scale, rot))
    labels = {name: torch.stack([slot[name] for slot in slots], 1) for name in slots[0]}
    labels |= {
        "num_shapes": num_shapes,
        "background": torch.stack([dark, light], 1),
        "gradient": torch.stack([angle.sin(), angle.cos()], 1),
    }
    return images, labels


def _slot_labels(
    present: Tensor,
    kind: Tensor,
    palette: Tensor,
    colour: Tensor,
    centre: Tensor,
    scale: Tensor,
    rot: Tensor,
) -> dict[str, Tensor]:
    """One slot's labels [num, ...]: empty slots get kind ABSENT, palette -1 and NaN values."""
    order = torch.tensor(SYMMETRY, dtype=rot.dtype)[kind]
    rotation = torch.stack([(order * rot).sin(), (order * rot).cos()], 1)
    rotation[order == 0] = math.nan
    nan = torch.tensor(math.nan)
    return {
        "kind": torch.where(present, kind, ABSENT),
        "palette": torch.where(present, palette, -1),
        "colour": torch.where(present[:, None], colour, nan),
        "centre": torch.where(present[:, None], centre, nan),
        "scale": torch.where(present, scale, nan),
        "rotation": torch.where(present[:, None], rotation, nan),
    }


def render_shapes(
    num: int, resolution: int, seed: int, chunk: int = 256, return_labels: bool = False,
    max_shapes: int = NUM_SLOTS,
) -> np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]:
    """Render `num` images as uint8 [num, 3, resolution, resolution], deterministic per seed.

    return_labels: also return {name: array [num, ...]} of the parameters each image was drawn
    from (see LABELS; the images are the same either way).
    max_shapes: 2 (one or two shapes, 30% two) or 1 (one shape per image: the class-labelled
    data, where `kind[:, 0]` is the image's class).
    """
    if max_shapes not in (1, NUM_SLOTS):
        raise ConfigError(f"data.max_shapes={max_shapes!r} must be 1 or {NUM_SLOTS}")
    generator = torch.Generator().manual_seed(seed)
    out = np.empty((num, 3, resolution, resolution), dtype=np.uint8)
    parts: list[dict[str, Tensor]] = []
    for start in range(0, num, chunk):
        n = min(chunk, num - start)
        images, labels = _render_chunk(n, resolution * 2, generator, max_shapes)
        images = torch.nn.functional.avg_pool2d(images, 2)
        out[start : start + n] = images.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).numpy()
        parts.append(labels)
    if not return_labels:
        return out
    labels = {name: torch.cat([part[name] for part in parts]).numpy() for name in LABELS}
    return out, {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in labels.items()}


class ShapesDataModule(ImageDataModule):
    """`data=shapes`: the embedded procedural dataset (default).

    Labels (`data.labels=class`): the kind of the image's shape, classes SHAPE_KINDS; with
    labels on, every image has one shape (`max_shapes` 1), so its class is what it shows.

    Args:
        num_images: training images rendered (held in memory).
        num_val_images: validation images (rendered from another seed).
        max_shapes: shapes per image at most, 1 or 2 (None: 2, or 1 with data.labels=class).
        **kwargs: ImageDataModule arguments (resolution, batch_size, labels, ...).
    """

    dataset_name = "shapes"
    supported_labels = ("class",)

    def __init__(self, num_images: int = 10000, num_val_images: int = 1000,
                 max_shapes: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        for name, value in (("num_images", num_images), ("num_val_images", num_val_images)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"data.{name}={value!r} must be a positive integer")
        if max_shapes is None:
            max_shapes = 1 if self.labels == "class" else NUM_SLOTS
        if max_shapes not in (1, NUM_SLOTS):
            raise ConfigError(f"data.max_shapes={max_shapes!r} must be 1 or {NUM_SLOTS} (or null)")
        self.num_images, self.num_val_images = num_images, num_val_images
        self.max_shapes = max_shapes
        self._rendered: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _render(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(images uint8 [N, 3, R, R], kind of each image's first shape [N]), rendered once."""
        if split not in self._rendered:
            num = self.num_images if split == "train" else self.num_val_images
            seed = self.seed * 2 + (0 if split == "train" else 1)
            images, labels = render_shapes(num, self.max_resolution, seed, return_labels=True,
                                           max_shapes=self.max_shapes)
            self._rendered[split] = images, labels["kind"][:, 0]
        return self._rendered[split]

    def build_split(self, split: str) -> ArrayImageDataset:
        if self.labels == "none":  # as before: no labels rendered or kept
            num = self.num_images if split == "train" else self.num_val_images
            seed = self.seed * 2 + (0 if split == "train" else 1)
            return ArrayImageDataset(render_shapes(num, self.max_resolution, seed,
                                                   max_shapes=self.max_shapes))
        return ArrayImageDataset(self._render(split)[0])

    def label_names(self) -> list[str]:
        return list(SHAPE_KINDS)

    def split_labels(self, split: str, images: Dataset) -> Tensor:
        return one_hot(self._render(split)[1], len(SHAPE_KINDS))
