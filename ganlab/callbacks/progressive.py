"""Progressive growing (Karras et al. 2018) scheduled by real images shown, never by steps.

The schedule is data, in thousands of real images (kimg), as in the official code
(tkarras/progressive_growing_of_gans, train.py TrainingSchedule): stage p (0 = the start
resolution r_0) stabilises at r_p for `stabilize_kimg`, then fades r_{p+1} in over `fade_kimg`
with alpha rising linearly from 0 to 1. With constant durations,
stage = floor(kimg / (stabilize_kimg + fade_kimg)), capped at the last stage, which trains at the
final resolution until the run ends. Per-resolution overrides: `stabilize_kimg_dict[r]` (images
stabilising at r) and `fade_kimg_dict[r]` (images fading r in).

The callback derives everything from the module's `nimg` before each batch, so a run resumed
from any checkpoint, mid-fade included, continues at the exact same stage and alpha.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from torchvision.utils import save_image

from ganlab.callbacks.samples import SampleGrid, images_to_grid
from ganlab.utils import ConfigError, check_positive, check_resolution, is_power_of_two, log2_int

log = logging.getLogger(__name__)


def kimg_to_nimg(kimg: float, key: str) -> int:
    """A positive duration in kimg as a whole number of images (>= 1)."""
    check_positive(kimg, key)
    nimg = round(kimg * 1000)
    if nimg < 1:
        raise ConfigError(f"{key}={kimg!r} kimg is less than one image; use a value >= 0.001")
    return nimg


def per_resolution(values: Mapping | None, key: str) -> dict[int, Any]:
    """A {resolution: value} override dict with int keys, each a power of two in [4, 1024]
    (null = no overrides). Values are checked by the caller."""
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{key}={values!r} must be a dict keyed by resolution, e.g. {{64: 32}}")
    out = {}
    for side, value in values.items():
        try:
            side = int(side)
        except (TypeError, ValueError):
            side = None
        if side is None or not is_power_of_two(side) or not 4 <= side <= 1024:
            raise ConfigError(
                f"{key} has a key {side!r}: keys are resolutions, powers of two in [4, 1024]"
            )
        out[side] = value
    return out


@dataclass(frozen=True)
class GrowthPhase:
    """Where the schedule is: stage index (0 = start resolution), the side of the images G makes
    and D takes, and the fade-in weight of the newest block (1 = fully in)."""

    stage: int
    resolution: int
    alpha: float

    @property
    def fading(self) -> bool:
        return self.alpha < 1.0

    @property
    def level(self) -> int:
        """Network stage: active blocks up to 4 * 2**level px."""
        return log2_int(self.resolution) - 2


class GrowthSchedule:
    """Resolution and alpha as a function of images shown.

    Args:
        start_resolution: r_0, a power of two in [4, final_resolution].
        final_resolution: the last side, reached after log2(final / start) fades.
        stabilize_kimg: kimg stabilising at each resolution before the next fades in (paper 600).
        fade_kimg: kimg of each fade-in (paper 600).
        stabilize_kimg_dict, fade_kimg_dict: per-resolution overrides {resolution: kimg}.
    """

    def __init__(
        self,
        start_resolution: int,
        final_resolution: int,
        stabilize_kimg: float = 600.0,
        fade_kimg: float = 600.0,
        stabilize_kimg_dict: Mapping[int, float] | None = None,
        fade_kimg_dict: Mapping[int, float] | None = None,
    ) -> None:
        check_resolution(final_resolution, 4, 1024, "data.resolution")
        if not is_power_of_two(start_resolution) or not 4 <= start_resolution <= final_resolution:
            raise ConfigError(
                f"model.start_resolution={start_resolution!r} must be a power of two between 4 and "
                f"data.resolution={final_resolution}, e.g. `model.start_resolution=4`"
            )
        stabilize = kimg_to_nimg(stabilize_kimg, "model.schedule.stabilize_kimg")
        fade = kimg_to_nimg(fade_kimg, "model.schedule.fade_kimg")
        stabilize_dict = {
            r: kimg_to_nimg(v, f"model.schedule.stabilize_kimg_dict.{r}")
            for r, v in per_resolution(stabilize_kimg_dict, "model.schedule.stabilize_kimg_dict")
            .items()
        }
        fade_dict = {
            r: kimg_to_nimg(v, f"model.schedule.fade_kimg_dict.{r}")
            for r, v in per_resolution(fade_kimg_dict, "model.schedule.fade_kimg_dict").items()
        }
        num_growths = log2_int(final_resolution) - log2_int(start_resolution)
        self.resolutions = [start_resolution << p for p in range(num_growths + 1)]
        self.phases: list[tuple[int, int, int]] = []  # (start, fade start, end) in images
        start = 0
        for side in self.resolutions[:-1]:
            fade_start = start + stabilize_dict.get(side, stabilize)
            end = fade_start + fade_dict.get(2 * side, fade)
            self.phases.append((start, fade_start, end))
            start = end

    @property
    def growth_end_nimg(self) -> int:
        """Images shown when the final resolution is fully faded in."""
        return self.phases[-1][2] if self.phases else 0

    def at(self, nimg: int) -> GrowthPhase:
        """The phase for a batch that starts after `nimg` images. At a fade's first image the
        old resolution is still used (as in the official code); alpha is exactly 1 at its end."""
        for stage, (_, fade_start, end) in enumerate(self.phases):
            if nimg < end:
                if nimg <= fade_start:
                    return GrowthPhase(stage, self.resolutions[stage], 1.0)
                alpha = (nimg - fade_start) / (end - fade_start)
                return GrowthPhase(stage, self.resolutions[stage + 1], alpha)
        return GrowthPhase(len(self.phases), self.resolutions[-1], 1.0)


class ProgressiveGrowing(pl.Callback):
    """Drives G, D, EMA-G and the datamodule from the module's `nimg`.

    Before every batch it sets the networks' stage and alpha and the datamodule's resolution and
    real-image fade (`set_resolution(r, alpha)`); when the resolution changes it applies the
    per-resolution batch size (`set_batch_size`) and learning rates, and (optionally) resets
    the Adam moments at the start and end of every fade, as the official code does. It writes
    `samples/stage{p}_{r}px_{nimg}.png` (EMA G, upscaled to the final size) at the end of each
    stage's stabilisation and at the end of training, logs a row of `train/resolution`,
    `train/alpha`, `train/stage`, `train/kimg` at every fade start and end (the module logs them
    at every logging step too) and shows `res` and `alpha` in the progress bar.

    Args:
        start_resolution, final_resolution, stabilize_kimg, fade_kimg, stabilize_kimg_dict,
            fade_kimg_dict: the schedule (see GrowthSchedule).
        batch_size_dict: {resolution: images per batch per device} (others: data.batch_size).
        lr_g_dict, lr_d_dict: {resolution: learning rate} (others: model.lr_g / model.lr_d).
        reset_optimizer_on_grow: clear the Adam state when a fade starts and when it ends.
        grid_nrow: images per row of the stage grids.
    """

    def __init__(
        self,
        start_resolution: int,
        final_resolution: int,
        stabilize_kimg: float = 600.0,
        fade_kimg: float = 600.0,
        stabilize_kimg_dict: Mapping[int, float] | None = None,
        fade_kimg_dict: Mapping[int, float] | None = None,
        batch_size_dict: Mapping[int, int] | None = None,
        lr_g_dict: Mapping[int, float] | None = None,
        lr_d_dict: Mapping[int, float] | None = None,
        reset_optimizer_on_grow: bool = True,
        grid_nrow: int = 8,
    ) -> None:
        self.schedule = GrowthSchedule(start_resolution, final_resolution, stabilize_kimg,
                                       fade_kimg, stabilize_kimg_dict, fade_kimg_dict)
        self.batch_size_dict = per_resolution(batch_size_dict, "model.schedule.batch_size_dict")
        for side, value in self.batch_size_dict.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"model.schedule.batch_size_dict.{side}={value!r} must be a positive integer"
                )
        self.lr_dicts = {}
        for name, values in (("lr_g", lr_g_dict), ("lr_d", lr_d_dict)):
            key = f"model.schedule.{name}_dict"
            self.lr_dicts[name] = per_resolution(values, key)
            for side, value in self.lr_dicts[name].items():
                check_positive(value, f"{key}.{side}")
        self.reset_optimizer_on_grow = reset_optimizer_on_grow
        self.final_resolution, self.grid_nrow = final_resolution, grid_nrow
        self.phase: GrowthPhase | None = None
        self.base_batch_size: int | None = None
        self.pending_event = False

    # ------------------------------------------------------------------ hooks
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule
        if not hasattr(datamodule, "set_resolution"):
            raise TypeError("progressive growing needs a ganlab ImageDataModule (set_resolution)")
        if self.base_batch_size is None:
            self.base_batch_size = datamodule.batch_size
        self.warn_if_run_ends_early(trainer, pl_module)
        self.phase = self.network_phase(pl_module)
        self.apply(trainer, pl_module, self.schedule.at(pl_module.nimg), start=True)

    def network_phase(self, pl_module: pl.LightningModule) -> GrowthPhase:
        """The phase G's buffers hold: that of the last batch trained (from a checkpoint)."""
        generator = pl_module.generator
        side, fading = generator.current_resolution, generator._fading
        alpha = float(generator.alpha) if fading else 1.0
        sides = self.schedule.resolutions
        stage = max(sides.index(side) - int(fading), 0) if side in sides else 0
        return GrowthPhase(stage, side, alpha)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.pending_event:
            self.pending_event = False
            self.log_event(trainer, pl_module, self.phase)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        phase = self.schedule.at(pl_module.nimg)
        if phase != self.phase:
            self.apply(trainer, pl_module, phase)
        if trainer._logger_connector.should_update_logs:
            pl_module.log_dict(
                {"res": float(phase.resolution), "alpha": phase.alpha},
                prog_bar=True, logger=False, on_step=True, on_epoch=False, batch_size=1,
            )

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.phase is not None:
            self.save_grid(trainer, pl_module, self.phase)

    # ------------------------------------------------------------------ stage switch
    def apply(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, phase: GrowthPhase,
        start: bool = False,
    ) -> None:
        """Switch everything to `phase` (for the next batch)."""
        previous = self.phase
        grew = previous is not None and phase.resolution != previous.resolution
        fade_event = previous is not None and (grew or phase.fading != previous.fading)
        if grew and previous.resolution < phase.resolution:
            self.save_grid(trainer, pl_module, previous)  # end of stabilising at the old side
        for net in (pl_module.generator, pl_module.discriminator, pl_module.generator_ema):
            net.set_stage(phase.level, phase.alpha)
        trainer.datamodule.set_resolution(phase.resolution, phase.alpha)
        if grew or start:
            self.apply_resolution_settings(trainer, pl_module, phase.resolution)
        if fade_event and self.reset_optimizer_on_grow:
            for optimizer in pl_module.optimizers(use_pl_optimizer=False):
                optimizer.state.clear()  # Adam moments and step counts start afresh
        pl_module.growth_phase = self.phase = phase
        if fade_event or start:
            self.pending_event = True  # logged before the next batch, after this batch's row

    def apply_resolution_settings(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, resolution: int
    ) -> None:
        """Per-resolution batch size and learning rates (defaults: data and model config)."""
        trainer.datamodule.set_batch_size(
            self.batch_size_dict.get(resolution, self.base_batch_size)
        )
        optimizers = pl_module.optimizers(use_pl_optimizer=False)
        for name, optimizer in zip(("lr_g", "lr_d"), optimizers):
            lr = self.lr_dicts[name].get(resolution, pl_module.hparams[name])
            for group in optimizer.param_groups:
                group["lr"] = lr

    # ------------------------------------------------------------------ outputs
    def log_event(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, phase: GrowthPhase
    ) -> None:
        """One logger row at a fade start / end (so the steps show at any log interval)."""
        kimg = pl_module.nimg / 1000
        state = "fading in" if phase.fading else "stabilising"
        log.info("stage %d at %.3f kimg: %s %d px (alpha %.3f, batch %d)", phase.stage, kimg,
                 state, phase.resolution, phase.alpha, trainer.datamodule.batch_size)
        metrics = {"train/resolution": float(phase.resolution), "train/alpha": phase.alpha,
                   "train/stage": float(phase.stage), "train/kimg": kimg}
        step = trainer.fit_loop.epoch_loop._batches_that_stepped
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

    def grid_dir(self, trainer: pl.Trainer) -> Path:
        grids = [c for c in trainer.callbacks if isinstance(c, SampleGrid)]
        return grids[0].dirpath if grids else Path(trainer.default_root_dir) / "samples"

    def save_grid(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, phase: GrowthPhase
    ) -> Path | None:
        """EMA-G grid of the fixed latents at `phase`, upscaled (nearest) to the final side."""
        if not trainer.is_global_zero:
            return None
        grid = images_to_grid(pl_module.sample(), self.grid_nrow, size=self.final_resolution)
        path = self.grid_dir(trainer) / (
            f"stage{phase.stage:02d}_{phase.resolution}px_{pl_module.nimg:09d}.png"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, path)
        return path

    def warn_if_run_ends_early(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        stop = getattr(next((c for c in trainer.callbacks if hasattr(c, "max_nimg")), None),
                       "max_nimg", None)
        end = self.schedule.growth_end_nimg
        if stop is not None and stop < end:
            log.warning(
                "the run stops at %.1f kimg, before the schedule reaches %d px (at %.1f kimg): "
                "set e.g. kimg=%g, or shorten model.schedule.stabilize_kimg / fade_kimg",
                stop / 1000, self.final_resolution, end / 1000, (end + end // 4) / 1000,
            )
