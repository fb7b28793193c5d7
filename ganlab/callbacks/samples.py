"""Sample grids of the EMA generator from the module's fixed latents."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from torchvision.utils import make_grid, save_image

from ganlab.loggers import log_image
from ganlab.utils import next_multiple


def images_to_grid(images: torch.Tensor, nrow: int = 8, size: int | None = None) -> torch.Tensor:
    """[N, 3, r, r] in [-1, 1] -> one grid [3, H, W] in [0, 1], optionally upscaled to `size` px."""
    images = images.float().clamp(-1, 1).add(1).div(2)
    if size is not None and images.shape[-1] != size:
        images = torch.nn.functional.interpolate(images, size=size, mode="nearest")
    return make_grid(images.cpu(), nrow=nrow, padding=1)


class SampleGrid(pl.Callback):
    """Writes `dirpath/fakes_{nimg:09d}.png` every `every_kimg` and at the end (rank 0 only).

    Args:
        dirpath: folder of the grids.
        every_kimg: interval in thousands of real images shown.
        nrow: images per grid row.
    """

    def __init__(self, dirpath: str, every_kimg: float = 5.0, nrow: int = 8) -> None:
        self.dirpath, self.every_nimg, self.nrow = Path(dirpath), int(every_kimg * 1000), nrow
        self.next_nimg = 0
        self.last_saved_nimg = -1

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.next_nimg = next_multiple(pl_module.nimg, self.every_nimg)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
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
        grid = images_to_grid(pl_module.sample(), self.nrow)
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"fakes_{pl_module.nimg:09d}.png"
        save_image(grid, path)
        log_image(trainer, "samples/fakes", grid)  # W&B / TensorBoard, if the run has them
        return path
