"""PGGAN's stage grids: one EMA-G sample grid at the end of each stage's stabilisation.

The growth itself (stage, alpha, data resolution, batch size, lr, optimizer resets) is applied by
the PGGAN module (models/pggan.py); this optional callback only writes pictures of it.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from torchvision.utils import save_image

from ganlab.callbacks.samples import images_to_grid


class StageGrids(pl.Callback):
    """Writes `dirpath/stage{p}_{r}px_{nimg}.png` (EMA G of the fixed latents, upscaled to the
    final side) when a stage's stabilisation ends (before the next side fades in) and at the end
    of training (rank 0). Needs a PGGAN module (`growth_phase`, `schedule`).

    Args:
        dirpath: folder of the grids (the config passes the samples folder).
        nrow: images per grid row.
    """

    def __init__(self, dirpath: str, nrow: int = 8) -> None:
        self.dirpath, self.nrow = Path(dirpath), nrow

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # runs before the module's own on_train_batch_end switches to the next phase
        phase = pl_module.growth_phase
        if pl_module.schedule.at(pl_module.nimg).resolution > phase.resolution:
            self.save(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.save(trainer, pl_module)

    def save(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Path | None:
        """The grid at the module's current phase; returns its path on rank 0."""
        if not trainer.is_global_zero:
            return None
        phase = pl_module.growth_phase
        grid = images_to_grid(pl_module.sample(), self.nrow, size=pl_module.generator.resolution)
        name = f"stage{phase.stage:02d}_{phase.resolution}px_{pl_module.nimg:09d}.png"
        path = self.dirpath / name
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, path)
        return path
