"""Training speed as a logged scalar: `train/img_per_s`."""

from __future__ import annotations

import time

import pytorch_lightning as pl

from ganlab import lightning_api


class Throughput(pl.Callback):
    """Logs `train/img_per_s`: real images shown per second of wall clock, all ranks together,
    since the previous logging step (so it includes data loading, samples and FID evaluations
    that fall in between). Measured at logging steps only, after their host sync."""

    def __init__(self) -> None:
        self.last: tuple[float, int] | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.last = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not lightning_api.should_log(trainer):
            return
        now = time.perf_counter()
        if self.last is not None and now > self.last[0]:
            rate = (pl_module.nimg - self.last[1]) / (now - self.last[0])
            pl_module.log("train/img_per_s", rate, on_step=True, on_epoch=False, batch_size=1)
        self.last = (now, pl_module.nimg)
