"""Training speed as a logged scalar: `train/img_per_s`."""

from __future__ import annotations

import time

import pytorch_lightning as pl

from ganlab import lightning_api


class Throughput(pl.Callback):
    """Logs `train/img_per_s`: real images shown per second of wall clock, all ranks together,
    between the starts of two logging steps (so it includes data loading, samples and FID
    evaluations that fall in between), in the row the module writes for that step
    (`GANModule.step_logs`). Reads only the host-side image count and the clock."""

    def __init__(self) -> None:
        self.last: tuple[float, int] | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.last = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not lightning_api.should_log(trainer):  # true on the batch Lightning will log
            return
        now = time.perf_counter()
        if self.last is not None and now > self.last[0]:
            rate = (pl_module.nimg - self.last[1]) / (now - self.last[0])
            pl_module.step_logs["train/img_per_s"] = rate
        self.last = (now, pl_module.nimg)
