"""Sample grids of the EMA generator from the module's fixed latents, and of the training images
(`reals.png`) at the current stage; `save_grid` writes any image grid as PNG and to the loggers."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from torchvision.utils import save_image

from ganlab.data.labels import images_of
from ganlab.data.transforms import fade_reals, images_to_grid, resize, to_float
from ganlab.loggers import log_image
from ganlab.utils import next_multiple


def save_grid(
    trainer: pl.Trainer, images: torch.Tensor, path: str | Path, key: str, nrow: int = 8,
    size: int | None = None,
) -> Path | None:
    """Write images [N, 3, r, r] in [-1, 1] as one PNG grid at `path` and log it under `key` to the
    run's W&B / TensorBoard loggers (`ganlab.loggers.log_image`). Rank 0 only: returns the path
    there, None elsewhere. For PGGAN stage sheets, SAGAN attention maps, reals, ..."""
    if not trainer.is_global_zero:
        return None
    grid = images_to_grid(images, nrow, size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, path)
    log_image(trainer, key, grid)
    return path


def stage_reals(datamodule: pl.LightningDataModule, num: int) -> torch.Tensor | None:
    """The first `num` training images [num, 3, r, r] in [-1, 1] as D sees them now: resized to
    the datamodule's current resolution, faded with its alpha (no flips); None without a train set.
    """
    dataset = getattr(datamodule, "train_set", None)
    if dataset is None or len(dataset) == 0:
        return None
    items = [images_of(dataset[i]) for i in range(min(num, len(dataset)))]  # labels dropped
    images = to_float(torch.stack(items))
    resolution = getattr(datamodule, "resolution", images.shape[-1])
    images = resize(images, resolution, getattr(datamodule, "downsample", "area"))
    return fade_reals(images, getattr(datamodule, "fade_alpha", 1.0))


class SampleGrid(pl.Callback):
    """Writes `dirpath/fakes_{nimg:09d}.png` every `every_kimg` and at the end (rank 0 only), and
    `dirpath/reals.png` (training images at the stage's resolution) after the first batch; growth
    code calls `save_reals` again at each new stage.

    Args:
        dirpath: folder of the grids.
        every_kimg: interval in thousands of real images shown.
        nrow: images per grid row.
    """

    def __init__(self, dirpath: str, every_kimg: float = 5.0, nrow: int = 8) -> None:
        self.dirpath, self.every_nimg, self.nrow = Path(dirpath), int(every_kimg * 1000), nrow
        self.next_nimg = 0
        self.last_saved_nimg = -1
        self.reals_pending = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.next_nimg = next_multiple(pl_module.nimg, self.every_nimg)
        self.reals_pending = True  # after the first batch: stage callbacks have set resolution

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.reals_pending:
            self.reals_pending = False
            self.save_reals(trainer)
        if pl_module.nimg >= self.next_nimg:
            self.save(trainer, pl_module)
            self.next_nimg = next_multiple(pl_module.nimg, self.every_nimg)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if pl_module.nimg != self.last_saved_nimg:
            self.save(trainer, pl_module)

    def save(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Path | None:
        """Render the fixed latents with EMA G and write the grid; returns the path on rank 0."""
        self.last_saved_nimg = pl_module.nimg
        if not trainer.is_global_zero:
            return None
        path = self.dirpath / f"fakes_{pl_module.nimg:09d}.png"
        return save_grid(trainer, pl_module.sample(), path, "samples/fakes", self.nrow)

    def save_reals(self, trainer: pl.Trainer, name: str = "reals") -> Path | None:
        """`dirpath/{name}.png` + logged `samples/{name}`: nrow x nrow training images at the
        datamodule's current resolution and fade (PGGAN: call at each growth step)."""
        if not trainer.is_global_zero:
            return None
        reals = stage_reals(trainer.datamodule, self.nrow * self.nrow)
        if reals is None:
            return None
        return save_grid(trainer, reals, self.dirpath / f"{name}.png", f"samples/{name}", self.nrow)
