"""PGGAN (Karras et al. 2018): the shared loop plus progressive growing, both in this module.

The schedule is data, in thousands of real images (kimg), as in the official code
(tkarras/progressive_growing_of_gans, train.py TrainingSchedule): stage p (0 = the start
resolution r_0) stabilises at r_p for `stabilize_kimg`, then fades r_{p+1} in over `fade_kimg`
with alpha rising linearly from 0 to 1. With constant durations,
stage = floor(kimg / (stabilize_kimg + fade_kimg)), capped at the last stage, which trains at the
final resolution until the run ends. Per-resolution overrides: `stabilize_kimg_dict[r]` (images
stabilising at r) and `fade_kimg_dict[r]` (images fading r in).

`GrowthSchedule.at(nimg)` is a pure function of the images shown; the module applies it (as
nanoGPT applies `get_lr(iter)`): at the start of training and after every batch (for the next
one, whose reals Lightning resizes before `on_train_batch_start`) it sets the networks' stage and
alpha, the datamodule's resolution, real-image fade and batch size, the learning rates, and resets
the Adam moments at fade starts and ends. The networks (nets/progressive.py) hold every block
from the start and their stage and alpha as buffers, so a run resumed from any checkpoint, mid-fade
included, continues at the exact stage and alpha. Stage grids: callbacks/progressive.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ganlab.lightning_api import log_out_of_band
from ganlab.logs import get_logger
from ganlab.models.base import CHECKPOINT_KEY, GANModule
from ganlab.training.losses import GANLoss
from ganlab.utils import ConfigError, check_positive, check_resolution, is_power_of_two, log2_int

log = get_logger(__name__)


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

    def phase_nimg(self, phase: GrowthPhase) -> int | None:
        """Images in the part of the schedule `phase` is in (its stabilisation or its fade);
        None for the final resolution's stabilisation, which lasts until the run ends."""
        if phase.stage >= len(self.phases):
            return None
        start, fade_start, end = self.phases[phase.stage]
        return end - fade_start if phase.fading else fade_start - start

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


def check_batch_sizes(values: Mapping | None) -> dict[int, int]:
    """`model.schedule.batch_size_dict` as {resolution: positive int}."""
    out = per_resolution(values, "model.schedule.batch_size_dict")
    for side, value in out.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(
                f"model.schedule.batch_size_dict.{side}={value!r} must be a positive integer"
            )
    return out


def check_lrs(values: Mapping | None, name: str) -> dict[int, float]:
    """`model.schedule.{name}_dict` as {resolution: positive learning rate}."""
    key = f"model.schedule.{name}_dict"
    out = per_resolution(values, key)
    for side, value in out.items():
        check_positive(value, f"{key}.{side}")
    return out



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
    """GANModule with progressive-growing networks, growing by the images shown.

    Args:
        generator, discriminator: `ganlab.nets.progressive` networks of the same final side.
        loss: a `ganlab.losses.GANLoss` (paper: WGAN-GP with drift 0.001).
        start_resolution: side of the first stage, a power of two in [4, data.resolution].
        schedule: `GrowthSchedule`'s durations (stabilize_kimg, fade_kimg, their per-resolution
            dicts) and what changes with the resolution: batch_size_dict {px: images per batch
            per device} (others: data.batch_size), lr_g_dict / lr_d_dict {px: learning rate}
            (others: lr_g / lr_d), reset_optimizer_on_grow (clear the Adam state when a fade
            starts and when it ends, as the official code does).
        total_kimg: the run's length in kimg (the config's `kimg`), to warn when it ends before
            the schedule reaches the final resolution (None: no warning).
        ema_follows_growth: while a block fades in, the EMA generator takes that block's weights
            (and its toRGB's) from G at every EMA update instead of averaging them with their
            untrained initial values; afterwards they are averaged like the rest.
        ema_phase_fraction: if set, the EMA half-life is at most this fraction of the current
            stabilisation or fade (in images; not bounded at the final resolution).
        **kwargs: GANModule's arguments (lr_g, lr_d, betas, n_critic, ema_kimg, ...).
    """

    default_conditioning = "acgan"  # model.conditioning=auto with data.labels set

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        loss: GANLoss,
        start_resolution: int = 4,
        schedule: Mapping[str, Any] | None = None,
        total_kimg: float | None = None,
        ema_follows_growth: bool = True,
        ema_phase_fraction: float | None = None,
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
        self.global_batch = global_batch
        self.schedule_batch_sizes = check_batch_sizes(schedule.pop("batch_size_dict", None))
        self.batch_size_dict = dict(self.schedule_batch_sizes)  # per device, set at fit start
        self.lr_dicts = {name: check_lrs(schedule.pop(f"{name}_dict", None), name)
                         for name in ("lr_g", "lr_d")}
        self.reset_optimizer_on_grow = bool(schedule.pop("reset_optimizer_on_grow", True))
        self.schedule = GrowthSchedule(start_resolution, generator.resolution, **schedule)
        if ema_phase_fraction is not None:
            check_positive(ema_phase_fraction, "model.ema_phase_fraction")
        self.growth_phase: GrowthPhase = self.schedule.at(0)
        for net in (self.generator, self.discriminator, self.generator_ema):
            net.set_stage(self.growth_phase.level, 1.0)
        self.base_batch_size: int | None = None  # data.batch_size, for sides without an entry
        self.pending_event = False  # a fade start / end to log before the next batch
        self._fading_pairs: tuple[list[Tensor], list[Tensor]] | None = None

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.batch_size_dict = per_device_batches(
            self.schedule_batch_sizes, self.trainer.world_size, self.global_batch,
            announce=self.trainer.is_global_zero,
        )

    # ----------------------------------------------------------------- growth, per batch
    def on_train_start(self) -> None:
        super().on_train_start()
        datamodule = self.trainer.datamodule
        if not hasattr(datamodule, "set_resolution"):
            raise TypeError("progressive growing needs a ganlab ImageDataModule (set_resolution)")
        if self.base_batch_size is None:
            self.base_batch_size = datamodule.batch_size
        self.warn_if_run_ends_early()
        self.growth_phase = self.network_phase()  # from a checkpoint: the last batch trained
        self.grow(self.schedule.at(self.nimg), start=True)

    def on_train_batch_start(self, batch: Tensor, batch_idx: int) -> None:
        if self.pending_event:  # logged now: after the previous batch's row
            self.pending_event = False
            self.log_event(self.growth_phase)

    def on_train_batch_end(self, outputs: Any, batch: Tensor, batch_idx: int) -> None:
        phase = self.schedule.at(self.nimg)  # the phase of the next batch
        if phase != self.growth_phase:
            self.grow(phase)

    def grow(self, phase: GrowthPhase, start: bool = False) -> None:
        """Switch G, D, EMA-G, the datamodule and the optimizers to `phase` (for the next batch);
        `start`: the first call of a fit (resolution settings applied whatever the phase)."""
        previous = self.growth_phase
        grew = phase.resolution != previous.resolution
        fade_event = grew or phase.fading != previous.fading
        for net in (self.generator, self.discriminator, self.generator_ema):
            net.set_stage(phase.level, phase.alpha)
        self.trainer.datamodule.set_resolution(phase.resolution, phase.alpha)
        if grew or start:
            self.apply_resolution_settings(phase.resolution)
        if fade_event and self.reset_optimizer_on_grow:
            for optimizer in self.optimizers(use_pl_optimizer=False):
                optimizer.state.clear()  # Adam moments and step counts start afresh
        self.growth_phase = phase
        self._fading_pairs = self.fading_block_pairs(phase) if phase.fading else None
        if fade_event or start:
            self.pending_event = True

    def apply_resolution_settings(self, resolution: int) -> None:
        """Per-resolution batch size and learning rates (defaults: data and model config)."""
        self.trainer.datamodule.set_batch_size(
            self.batch_size_dict.get(resolution, self.base_batch_size)
        )
        opt_g, opt_d = self.optimizers(use_pl_optimizer=False)
        for name, optimizer, ratio in (("lr_g", opt_g, 1.0), ("lr_d", opt_d, self.d_mb_ratio)):
            lr = self.lr_dicts[name].get(resolution, self.hparams[name]) * ratio
            for group in optimizer.param_groups:
                group["lr"] = lr

    def network_phase(self) -> GrowthPhase:
        """The phase G's buffers hold: that of the last batch trained (from a checkpoint)."""
        side, fading = self.generator.current_resolution, self.generator._fading
        alpha = float(self.generator.alpha) if fading else 1.0
        sides = self.schedule.resolutions
        stage = max(sides.index(side) - int(fading), 0) if side in sides else 0
        return GrowthPhase(stage, side, alpha)

    # ----------------------------------------------------------------- EMA
    def fading_block_pairs(self, phase: GrowthPhase) -> tuple[list[Tensor], list[Tensor]]:
        """(EMA-G, G) parameters of the block fading in at `phase` and of its toRGB."""
        side = str(phase.resolution)
        pairs = [
            (list(net.blocks[side].parameters()) + list(net.to_rgb[side].parameters()))
            for net in (self.generator_ema, self.generator)
        ]
        return pairs[0], pairs[1]

    def ema_kimg(self) -> float:
        """`model.ema_kimg`, at most `ema_phase_fraction` of the current phase's length."""
        fraction, phase_nimg = self.hparams.ema_phase_fraction, None
        if fraction is not None:
            phase_nimg = self.schedule.phase_nimg(self.growth_phase)
        if phase_nimg is None:
            return self.hparams.ema_kimg
        return min(self.hparams.ema_kimg, fraction * phase_nimg / 1000)

    @torch.no_grad()
    def update_ema(self, images: int) -> None:
        """GANModule's EMA; with `ema_follows_growth`, the fading block's EMA weights are G's."""
        super().update_ema(images)
        if self.hparams.ema_follows_growth and self._fading_pairs is not None:
            torch._foreach_copy_(*self._fading_pairs)

    # ----------------------------------------------------------------- logging
    def extra_train_logs(self) -> dict[str, float]:
        """The batch's side (px), fade-in weight and stage index."""
        phase = self.growth_phase
        return {"resolution": float(phase.resolution), "alpha": phase.alpha,
                "stage": float(phase.stage)}

    def log_event(self, phase: GrowthPhase) -> None:
        """One logger row at a fade start / end (so the steps show at any log interval)."""
        kimg = self.nimg / 1000
        state = "fading in" if phase.fading else "stabilising"
        log.info("stage %d at %.3f kimg: %s %d px (alpha %.3f, batch %d)", phase.stage, kimg,
                 state, phase.resolution, phase.alpha, self.trainer.datamodule.batch_size)
        log_out_of_band(self.trainer, {
            "train/resolution": float(phase.resolution), "train/alpha": phase.alpha,
            "train/stage": float(phase.stage), "train/kimg": kimg,
        })

    def warn_if_run_ends_early(self) -> None:
        total_kimg, end = self.hparams.total_kimg, self.schedule.growth_end_nimg
        if total_kimg is not None and total_kimg * 1000 < end:
            log.warning(
                "the run stops at %.1f kimg, before the schedule reaches %d px (at %.1f kimg): "
                "set e.g. kimg=%g, or shorten model.schedule.stabilize_kimg / fade_kimg",
                total_kimg, self.generator.resolution, end / 1000, (end + end // 4) / 1000,
            )

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
