"""PGGAN (Karras et al. 2018): the shared loop plus the progressive-growing callback.

The networks (nets/progressive.py) hold every block from the start and their stage and alpha as
buffers; the ProgressiveGrowing callback sets them from `nimg`. What differs from GANModule:
`configure_callbacks`, the `train/resolution`, `train/alpha`, `train/stage` scalars, and a check
that a resumed checkpoint was trained at the same final resolution and widths.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
from torch import nn

from ganlab.callbacks.progressive import GrowthPhase, ProgressiveGrowing
from ganlab.losses import GANLoss
from ganlab.models.base import CHECKPOINT_KEY, GANModule
from ganlab.utils import ConfigError


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
        super().__init__(generator=generator, discriminator=discriminator, loss=loss, **kwargs)
        if discriminator.resolution != generator.resolution:
            raise ConfigError(
                f"model.discriminator.resolution={discriminator.resolution} differs from "
                f"model.generator.resolution={generator.resolution}; both follow data.resolution"
            )
        self.growing = ProgressiveGrowing(start_resolution, generator.resolution, **schedule)
        self.growth_phase: GrowthPhase = self.growing.schedule.at(0)
        for net in (self.generator, self.discriminator, self.generator_ema):
            net.set_stage(self.growth_phase.level, 1.0)

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
