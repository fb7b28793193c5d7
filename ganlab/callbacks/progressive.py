"""PGGAN's stage grids: one EMA-G sample grid at the end of each stage's stabilisation, and a grid
of the training images as D sees them at each new resolution.

The growth itself (stage, alpha, data resolution, batch size, lr, optimizer resets) is applied by
the PGGAN module (models/pggan.py); this optional callback only writes pictures of it.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl

from ganlab.callbacks.samples import save_grid, stage_reals


class StageGrids(pl.Callback):
    """Writes `dirpath/stage{p}_{r}px_{nimg}.png` (EMA G of the fixed latents, upscaled to the
    final side) when a stage's stabilisation ends (before the next side fades in) and at the end
    of training, and `dirpath/reals_{r}px.png` (training images at the stage's side and fade) at
    the first batch of each side; both also go to W&B / TensorBoard (`samples/stage`,
    `samples/reals`). Rank 0. Needs a PGGAN module (`growth_phase`, `schedule`).

    Args:
        dirpath: folder of the grids (the config passes the samples folder).
        nrow: images per grid row.
    """

    def __init__(self, dirpath: str, nrow: int = 8) -> None:
        self.dirpath, self.nrow = Path(dirpath), nrow
        self.reals_resolution: int | None = None  # side of the last reals grid written

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        side = pl_module.growth_phase.resolution  # set for this batch by the module
        if side != self.reals_resolution:
            self.reals_resolution = side
            reals = stage_reals(trainer.datamodule, self.nrow * self.nrow)
            if reals is not None:
                path = self.dirpath / f"reals_{side}px.png"
                save_grid(trainer, reals, path, "samples/reals", self.nrow)

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
        name = f"stage{phase.stage:02d}_{phase.resolution}px_{pl_module.nimg:09d}.png"
        return save_grid(trainer, pl_module.sample(), self.dirpath / name, "samples/stage",
                         self.nrow, size=pl_module.generator.resolution)
