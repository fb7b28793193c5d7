"""PGGAN (Karras et al. 2018): the shared loop plus the progressive-growing callback.

The networks (nets/progressive.py) hold every block from the start and their stage and alpha as
buffers; the ProgressiveGrowing callback sets them from `nimg`. What differs from GANModule:
`configure_callbacks`, the `train/resolution`, `train/alpha`, `train/stage` scalars, and a check
that a resumed checkpoint was trained at the same final resolution and widths.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
from torch import nn

from ganlab.callbacks.progressive import GrowthPhase, ProgressiveGrowing
from ganlab.losses import GANLoss
from ganlab.models.base import CHECKPOINT_KEY, GANModule
from ganlab.utils import ConfigError

log = logging.getLogger("ganlab")


def per_device_batches(
    sizes: Mapping[int, int], world_size: int, global_batch: bool, announce: bool = True
) -> dict[int, int]:
    """The per-device batch of each side from `model.schedule.batch_size_dict`.

    The official dict is per device: under DDP the global batch is `world_size` times it, which
    is said once (`announce`). global_batch=True divides each entry by the world size (a
    ConfigError if one does not divide), so the global batch is the official one.
    """
    sizes = dict(sizes)
    if world_size == 1 or not sizes:
        return sizes
    if not global_batch:
        if announce:
            log.warning(
                "model.schedule.batch_size_dict is per device: with %d processes the global batch "
                "of each side is %dx the official one (%s); model.schedule.global_batch=true "
                "splits it over the processes instead", world_size, world_size,
                {side: n * world_size for side, n in sizes.items()},
            )
        return sizes
    bad = {side: n for side, n in sizes.items() if n % world_size}
    if bad:
        raise ConfigError(
            f"model.schedule.global_batch=true: model.schedule.batch_size_dict entries {bad} do "
            f"not divide by the {world_size} processes; set them to multiples of {world_size} or "
            "use model.schedule.global_batch=false (per-device batches)"
        )
    return {side: n // world_size for side, n in sizes.items()}


class PGGAN(GANModule):
    """GANModule with progressive-growing networks.

    Args:
        generator, discriminator: `ganlab.nets.progressive` networks of the same final side.
        loss: a `ganlab.losses.GANLoss` (paper: WGAN-GP with drift 0.001).
        start_resolution: side of the first stage, a power of two in [4, data.resolution].
        schedule: keyword arguments of `ProgressiveGrowing` other than the resolutions
            (stabilize_kimg, fade_kimg, their per-resolution dicts, batch_size_dict, lr_g_dict,
            lr_d_dict, reset_optimizer_on_grow).
        **kwargs: GANModule's arguments (lr_g, lr_d, betas, n_critic, ema_kimg, ...).
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        loss: GANLoss,
        start_resolution: int = 4,
        schedule: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        schedule = dict(schedule or {})
        global_batch = bool(schedule.pop("global_batch", False))
        super().__init__(generator=generator, discriminator=discriminator, loss=loss, **kwargs)
        if discriminator.resolution != generator.resolution:
            raise ConfigError(
                f"model.discriminator.resolution={discriminator.resolution} differs from "
                f"model.generator.resolution={generator.resolution}; both follow data.resolution"
            )
        self.growing = ProgressiveGrowing(start_resolution, generator.resolution, **schedule)
        self.global_batch, self.schedule_batches = global_batch, dict(
            self.growing.batch_size_dict
        )
        self.growth_phase: GrowthPhase = self.growing.schedule.at(0)
        for net in (self.generator, self.discriminator, self.generator_ema):
            net.set_stage(self.growth_phase.level, 1.0)

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.growing.batch_size_dict = per_device_batches(
            self.schedule_batches, self.trainer.world_size, self.global_batch,
            announce=self.trainer.is_global_zero,
        )

    def configure_callbacks(self) -> list[pl.Callback]:
        return [self.growing]

    def extra_train_logs(self) -> dict[str, float]:
        """The batch's side (px), fade-in weight and stage index."""
        phase = self.growth_phase
        return {"resolution": float(phase.resolution), "alpha": phase.alpha,
                "stage": float(phase.stage)}

    # ----------------------------------------------------------------- checkpoints
    def architecture(self) -> dict[str, Any]:
        """What a checkpoint must match to resume: final side and channels per side."""
        return {
            "resolution": self.generator.resolution,
            "generator_widths": dict(self.generator.channels),
            "discriminator_widths": dict(self.discriminator.channels),
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[CHECKPOINT_KEY]["pggan"] = self.architecture()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint[CHECKPOINT_KEY].get("pggan")
        if saved is None:
            return
        ours = self.architecture()
        if saved["resolution"] != ours["resolution"]:
            raise ConfigError(
                f"the checkpoint was trained to a final resolution of {saved['resolution']} px, "
                f"this run builds {ours['resolution']} px: resume with "
                f"data.resolution={saved['resolution']} (or start a new run)"
            )
        for net in ("generator", "discriminator"):
            key = f"{net}_widths"
            if saved[key] != ours[key]:
                raise ConfigError(
                    f"the checkpoint's {net} has channel widths {saved[key]} per side, this run "
                    f"builds {ours[key]}: resume with the same model.{net}.widths / "
                    f"model.{net}.width as that run"
                )
