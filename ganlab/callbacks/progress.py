"""A progress bar in kimg of the run's target, with an ETA (Lightning's counts epochs)."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar

BAR_FORMAT = ("{desc}{percentage:3.0f}%|{bar}| {n:.2f}/{total:g} kimg "
              "[{elapsed}<{remaining}{postfix}]")
OPEN_FORMAT = "{desc}{n:.2f} kimg [{elapsed}{postfix}]"  # kimg: null (until trainer.max_steps)
SHOWN = {"train/d_loss": "d", "train/g_loss": "g", "train/resolution": "res", "val/fid": "fid"}


class KimgProgressBar(ProgressBar):
    """tqdm bar of kimg shown out of `kimg`, redrawn at most every `refresh_s` seconds.

    Per batch it only reads the module's host-side `nimg` and the clock (no host sync); the
    losses in the postfix are those last logged (read at redraws only).

    Args:
        kimg: the run's target, thousands of real images (null: no total, no ETA).
        refresh_s: seconds between redraws.
    """

    def __init__(self, kimg: float | None = None, refresh_s: float = 1.0) -> None:
        super().__init__()
        # a total only for a positive target (ganlab.training.config_schema refuses others)
        self.kimg = kimg if isinstance(kimg, (int, float)) and kimg > 0 else None
        self.refresh_s = refresh_s
        self.enabled = True
        self.bar: Any = None
        self.last_draw = 0.0

    def enable(self) -> None:
        self.enabled = True

    def disable(self) -> None:
        self.enabled = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not (self.enabled and trainer.is_global_zero):
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.kimg, initial=pl_module.nimg / 1000, desc="train ",
                        bar_format=BAR_FORMAT if self.kimg else OPEN_FORMAT, file=sys.stderr,
                        dynamic_ncols=True, leave=True, smoothing=0.1)
        self.last_draw = time.monotonic()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.bar is not None and time.monotonic() - self.last_draw >= self.refresh_s:
            self.draw(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.bar is not None:
            self.draw(trainer, pl_module)
            self.bar.close()
            self.bar = None

    def draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Move the bar to the module's kimg and show the last logged losses."""
        kimg = pl_module.nimg / 1000
        self.bar.update((min(kimg, self.kimg) if self.kimg else kimg) - self.bar.n)
        metrics = trainer.callback_metrics  # tensors from the last logging step
        shown = {short: f"{float(metrics[key]):.4g}" for key, short in SHOWN.items()
                 if key in metrics}
        self.bar.set_postfix(shown, refresh=False)
        self.bar.refresh()
        self.last_draw = time.monotonic()
