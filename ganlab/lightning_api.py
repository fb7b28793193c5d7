"""The one seam between ganlab and Lightning's private API.

Lightning (`pytorch-lightning<3`, see pyproject.toml) exposes no public call for these; every
private attribute ganlab reads is read here and nowhere else, and tests/test_lightning_api.py pins
each one, so a Lightning upgrade that moves them fails one small test instead of a training run.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytorch_lightning as pl


def should_log(trainer: pl.Trainer) -> bool:
    """True on the steps where Lightning writes logged values (every `log_every_n_steps`
    batches, and the last one): the only steps where ganlab syncs with the host."""
    return bool(trainer._logger_connector.should_update_logs)


def logged_step(trainer: pl.Trainer) -> int:
    """The step index Lightning's loggers use for the current batch: batches that stepped so far
    (not `global_step`, which advances once per optimizer call: twice per GAN iteration)."""
    return int(trainer.fit_loop.epoch_loop._batches_that_stepped)


def log_out_of_band(trainer: pl.Trainer, metrics: Mapping[str, float]) -> None:
    """Write `metrics` (plain floats) once to every logger at the current logged step, outside
    `LightningModule.log` (which repeats a value in later rows until the epoch ends), and make
    them visible in `trainer.callback_metrics` (what sweeps and `run.train` read). Rank 0 writes;
    every rank updates its callback_metrics."""
    import torch

    # float64: run.train returns these values exactly as computed (e.g. val/fid_best)
    values = {k: torch.tensor(float(v), dtype=torch.float64) for k, v in metrics.items()}
    trainer.callback_metrics.update(values)
    if not trainer.is_global_zero:
        return
    step = logged_step(trainer)
    row = {**metrics, "epoch": trainer.current_epoch}  # as Lightning's own rows (metrics.csv)
    for logger in trainer.loggers:
        logger.log_metrics(row, step=step)
        logger.save()


def attached_trainer(module: pl.LightningModule) -> pl.Trainer | None:
    """The trainer `module` is attached to, or None (`module.trainer` raises when detached)."""
    return module._trainer


def resume_starts_new_epoch(trainer: pl.Trainer) -> bool:
    """True if a checkpoint saved now makes Lightning begin a new epoch (a fresh loader iterator)
    when resumed: saved inside a training batch's hooks (completed = processed - 1) after the
    epoch's last batch by count (`_TrainingEpochLoop.reset`). Saved at the end of training, or
    mid-epoch, the resumed run continues the epoch with a fresh iterator instead."""
    progress = trainer.fit_loop.epoch_loop.batch_progress.current
    in_batch = progress.completed == progress.processed - 1
    return in_batch and progress.processed >= trainer.num_training_batches


def fast_logging() -> None:
    """Make `LightningModule.log` cheap when nothing has to move (idempotent).

    Every `self.log` call moves the stored `_ResultMetric` to the value's device through
    `apply_to_collection` over the metric's whole `__dict__` (a torchmetrics Metric: ~50
    attributes, dataclasses copied): about 0.25 ms per logged name on a CPU, 3 ms per logging
    step of a GAN. The patched `to` returns at once when every tensor of the metric (its states
    and their defaults) already lies on the target device, which is all the original would have
    changed; otherwise it runs the original."""
    import torch
    from pytorch_lightning.trainer.connectors.logger_connector.result import _ResultMetric

    if getattr(_ResultMetric.to, "_ganlab_fast", False):
        return
    original = _ResultMetric.to

    def to(self, *args, **kwargs):  # noqa: ANN001, ANN202 (Lightning's signature)
        if len(args) == 1 and not kwargs and isinstance(args[0], torch.device):
            device = args[0]
            tensors = [v for v in (*self.__dict__.values(), *self._defaults.values())
                       if isinstance(v, torch.Tensor)]
            if tensors and all(t.device == device for t in tensors):
                return self
        return original(self, *args, **kwargs)

    to._ganlab_fast = True
    _ResultMetric.to = to
