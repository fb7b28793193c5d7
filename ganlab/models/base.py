"""GANModule: the training loop every GAN variant shares.

Progress is counted in real images shown (`nimg`), never in `global_step`, which Lightning
advances once per optimizer call. Training is a list of phases with intervals, as in
stylegan2-ada's training_loop.py (`self.phases`): D every iteration, R1 every `loss.r1_interval`
(only with `loss.r1_gamma > 0` and an interval > 1; otherwise R1 is part of the D step, and
WGAN-GP's penalty always is), G every `model.n_critic`.

One iteration, in order (Lightning 2.x hook order; callbacks first, then the module's hook):
  before the batch
    1. Lightning draws batch k's indices (sampler, at the batch size set so far), then
       `ImageDataModule.on_after_batch_transfer` resizes / fades / flips the reals to the stage
       set at the end of batch k-1 (or in `on_train_start` for the first batch).
    2. `on_train_batch_start`: StopAtKimg (stop after this batch?), Throughput (at a logging
       batch: images/s since the last one, into `step_logs`); PGGAN logs a pending fade start /
       end row (models/pggan.py).
  training_step (this file)
    3. fakes = G(z) once (grad only if G steps and `regenerate_fakes` is off)
    4. phase D: `d_step` = loss.discriminator_step(D, augment(reals), augment(fakes.detach()))
       -> backward -> Adam; then `augment.after_d_step` (ADA: p moves every `interval` D steps)
    5. phase R1 (if due): `r1_step` = interval * gamma / 2 * R1(augment(reals)) -> backward ->
       Adam (D's lr * mb_ratio, betas ** mb_ratio)
    6. phase G (if due): fresh fakes if `regenerate_fakes`; `g_step` =
       loss.g_loss(D(augment(fakes))) -> backward -> Adam, D frozen
       (`augment` is `model.augment`: the identity unless diffaug / ada)
    7. `count_images`: nimg, iteration, images since the last EMA update; after a G step
       `update_ema` with beta = `ema_beta(images since the last update, ...)` (PGGAN: a fading
       block's EMA weights are G's)
    8. `log_train` at Lightning's logging interval only: the row of train/* scalars, written to
       the loggers (the one host sync)
  after the batch: `on_train_batch_end`
    9. callbacks in config order: PGGAN's StageGrids (a grid when the schedule is about to
       grow), SampleGrid, KimgCheckpoint (last.ckpt), then the FID evaluator
   10. the module: PGGAN applies `GrowthSchedule.at(nimg)` for batch k+1 (stage, alpha, data
       resolution / fade / batch size, lr, Adam reset at fade starts and ends)
   11. Lightning writes what else was logged with `self.log` (nothing of ganlab's).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from ganlab import lightning_api
from ganlab.augment import Augment, resolve_augment
from ganlab.lightning_api import attached_trainer
from ganlab.logs import get_logger
from ganlab.models.conditioning import (
    GRID_COLUMNS,
    attach_conditioning,
    bound_labels,
    split_batch,
)
from ganlab.training.checkpoints import CHECKPOINT_KEY
from ganlab.training.losses import GANLoss, check_batchnorm_with_penalty
from ganlab.training.resume import (
    gather_per_rank,
    rng_state,
    set_rng_state,
    this_rank,
    warn_inexact,
)
from ganlab.utils import ConfigError, check_int, check_positive

log = get_logger(__name__)

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class Phase:
    """A training phase that runs at every `interval`-th iteration (the last of each group of
    `interval`), as the phases of stylegan2-ada's training_loop.py."""

    name: str
    interval: int

    def due(self, iteration: int) -> bool:
        """True if the phase runs at `iteration` (0-based count of training batches)."""
        return (iteration + 1) % self.interval == 0


def ema_beta(images: int, ema_kimg: float, ema_rampup: float | None, nimg: int) -> float:
    """EMA decay after `images` real images (StyleGAN2-ADA): beta = 0.5 ** (images / ema_nimg),
    ema_nimg = the half-life in images, `ema_kimg * 1000`, at most `ema_rampup * nimg` (nimg:
    images shown so far) if ema_rampup is set. ema_kimg 0: beta 0, the EMA copies G."""
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, nimg * ema_rampup)
    return 0.5 ** (images / max(ema_nimg, 1e-8))


@torch.no_grad()
def recalibrate_batchnorm(
    generator: nn.Module,
    inputs: Callable[[int, torch.Generator], tuple[Tensor, ...]],
    num_latents: int,
    batch_size: int = 256,
    seed: int = 0,
) -> bool:
    """Recompute the running mean and variance of every batch norm in `generator` from its own
    forward passes on `num_latents` inputs: `inputs(count, rng)` gives G's arguments for `count`
    images (z [count, z_dim], and labels for a conditional G) from a CPU generator seeded with
    `seed` (never the global RNG). Momentum None: the statistics are the plain average over the
    batches of `batch_size`. Only the batch norms run in training mode; parameters are untouched.
    An EMA generator needs this because its averaged weights make other activations than the
    raw G's, whose statistics it would otherwise copy. Returns False if there is no batch norm."""
    norms = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or num_latents <= 0:
        return False
    saved = [(m.momentum, m.training) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    rng = torch.Generator().manual_seed(seed)  # on the CPU: the same draws on every device
    try:
        for start in range(0, num_latents, batch_size):
            generator(*inputs(min(batch_size, num_latents - start), rng))
    finally:
        for m, (momentum, training) in zip(norms, saved, strict=True):
            m.momentum = momentum
            m.train(training)
    return True


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; training stops and last.ckpt keeps the last finite weights."""


ADAM_IMPLS = {  # model.adam_impl -> torch.optim.Adam keywords
    "auto": {},  # torch's choice: foreach on CUDA, the single-tensor loop on a CPU
    "foreach": {"foreach": True},  # one multi-tensor kernel per op over all parameters
    "fused": {"fused": True},  # one fused kernel for the whole step (CUDA, CPU since torch 2.4)
    "single": {"foreach": False},  # a loop of per-parameter ops
}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def adam_kwargs(adam_impl: str) -> dict[str, bool]:
    """torch.optim.Adam's implementation keywords for `model.adam_impl` (ADAM_IMPLS)."""
    if adam_impl not in ADAM_IMPLS:
        raise ConfigError(
            f"model.adam_impl={adam_impl!r} is not one of {list(ADAM_IMPLS)}: set e.g. "
            "`model.adam_impl=fused` (auto: torch's default)"
        )
    return dict(ADAM_IMPLS[adam_impl])


def check_compile_mode(compile_mode: str | None) -> None:
    """Raise ConfigError unless `model.compile_mode` is null or a torch.compile mode."""
    if compile_mode is not None and compile_mode not in COMPILE_MODES:
        raise ConfigError(
            f"model.compile_mode={compile_mode!r} is not one of {list(COMPILE_MODES)} or null: "
            "set e.g. `model.compile_mode=reduce-overhead` (CUDA graphs) or null (torch's default)"
        )


def speed_up(
    module: GANModule, channels_last: bool, compile: bool, backend: Any = "inductor",
    mode: str | None = None,
) -> None:
    """The `model.channels_last` / `model.compile` switches, applied to the module's networks.

    channels_last: weights of G, D, EMA-G in channels-last format (convs then output it too).
    compile: `nn.Module.compile` of G and D (in place: state-dict keys are unchanged), static
    shapes, so a network recompiles only when its graph changes (PGGAN: once per stabilise /
    fade phase, as stage and alpha are buffers; D once more for its G-step call), never per step.
    D stays eager if the loss needs double backward (gradient penalty, R1). `backend`: that of
    torch.compile (tests pass a counting one); `mode`: torch.compile's mode (None: its default;
    "reduce-overhead": CUDA graphs of the fixed-shape calls, on a GPU).
    """
    if channels_last:
        for net in (module.generator, module.discriminator, module.generator_ema):
            net.to(memory_format=torch.channels_last)
    if not compile:
        return
    from torch._dynamo import config as dynamo_config

    # one graph per PGGAN phase and D call kind: 2 * 17 phases at 1024 px; the default is 8
    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 64)
    options = {} if mode is None else {"mode": mode}
    module.generator.compile(dynamic=False, backend=backend, **options)
    if module.loss.needs_double_backward:
        log.warning("model.compile: D stays eager (the loss differentiates D's input gradient, "
                    "which compiled modules do not support); G is compiled")
    else:
        module.discriminator.compile(dynamic=False, backend=backend, **options)


class GANModule(pl.LightningModule):
    """Shared GAN training loop with manual optimization.

    Args:
        generator: module mapping z [N, z_dim] -> images [N, 3, R, R] in [-1, 1]; must have `z_dim`.
        discriminator: module mapping images [N, 3, R, R] -> logits [N].
        loss: a `ganlab.losses.GANLoss`.
        lr_g, lr_d: Adam learning rates of G and D (TTUR when they differ).
        betas: Adam betas, shared by both optimizers.
        n_critic: D steps per G step.
        ema_kimg: half-life of the generator EMA, in thousands of real images.
        ema_rampup: if set, the half-life is at most `ema_rampup * nimg` (StyleGAN2 ramp-up).
        ema_per_step: if set, the EMA decay per G step instead (official PGGAN: 0.999, a
            half-life of 693 G steps whatever the batch); ema_kimg and ema_rampup are unused.
        ema_bn_latents: latents from which the EMA generator's batch-norm statistics are
            recomputed before it draws a grid, is scored or saved (`recalibrate_batchnorm`);
            0 = copy the raw G's statistics.
        num_samples: size of the fixed latent batch used for sample grids.
        sample_seed: seed of that fixed latent batch.
        channels_last: G, D and EMA-G weights in channels-last memory format (GPU tensor cores).
        compile: torch.compile G and D in place (see `speed_up`); D stays eager when the loss
            differentiates D's input gradient (WGAN-GP, R1: no double backward when compiled).
        compile_mode: torch.compile's mode with `compile` (None: its default; COMPILE_MODES).
        adam_impl: Adam's implementation (ADAM_IMPLS): auto (torch's default), foreach, fused,
            single.
        allow_batchnorm_with_penalty: train a D with batch norm under WGAN-GP's gradient penalty
            anyway (refused by default, see `losses.check_batchnorm_with_penalty`).
        regenerate_fakes: the G step draws fresh latents (official PGGAN, SAGAN) instead of
            reusing the D step's fakes (one G forward per iteration fewer).
        augment: differentiable augmentation of every image D sees (`ganlab.augment`: an
            Augment, a mode name none | diffaug | ada, or None = identity).
        conditioning: label conditioning none | concat | projection | acgan, the mode G and D
            were built with (ganlab.nets.conditioning; the run resolves `auto`).
        num_classes: label length K (0 without labels).
        labels: {kind, names, frequencies} of the data's labels (`models.conditioning.Labels`;
            the run passes them, checkpoints keep them); None without labels.
        cond_weight: weight of AC-GAN's classification loss (conditioning acgan).
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        loss: GANLoss,
        lr_g: float = 2e-4,
        lr_d: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        n_critic: int = 1,
        ema_kimg: float = 10.0,
        ema_rampup: float | None = None,
        ema_per_step: float | None = None,
        ema_bn_latents: int = 0,
        num_samples: int = 64,
        sample_seed: int = 0,
        channels_last: bool = False,
        compile: bool = False,
        compile_mode: str | None = None,
        adam_impl: str = "auto",
        allow_batchnorm_with_penalty: bool = False,
        regenerate_fakes: bool = False,
        augment: Augment | str | None = None,
        conditioning: str = "none",
        num_classes: int = 0,
        labels: dict[str, Any] | None = None,
        cond_weight: float = 1.0,
    ) -> None:
        super().__init__()
        check_batchnorm_with_penalty(discriminator, loss, allow_batchnorm_with_penalty)
        check_positive(lr_g, "model.lr_g")
        check_positive(lr_d, "model.lr_d")
        check_int(n_critic, "model.n_critic", 1)
        adam_kwargs(adam_impl)  # a bad model.adam_impl fails here, before training
        check_compile_mode(compile_mode)
        if ema_kimg < 0:
            raise ConfigError(f"model.ema_kimg={ema_kimg!r} must be >= 0 (0 = EMA follows G)")
        if ema_per_step is not None and not 0 <= ema_per_step < 1:
            raise ConfigError(f"model.ema_per_step={ema_per_step!r} must be in [0, 1) or null "
                              "(e.g. 0.999, the official PGGAN's G_smoothing)")
        check_int(ema_bn_latents, "model.ema_bn_latents", 0)
        betas = (float(betas[0]), float(betas[1]))  # plain floats: checkpoints load weights_only
        self.automatic_optimization = False
        self.save_hyperparameters(ignore=["generator", "discriminator", "loss", "augment"])
        self.generator = generator
        self.discriminator = discriminator
        self.loss = loss
        self.augment = resolve_augment(augment, loss)  # identity for none
        # the labels (None: unconditional); acgan wraps self.loss with its classification loss
        self.labels = attach_conditioning(self, conditioning, num_classes, labels, cond_weight)
        self.generator_ema = copy.deepcopy(generator).eval().requires_grad_(False)
        seeded = torch.Generator().manual_seed(sample_seed)
        fixed_z = torch.randn(num_samples, generator.z_dim, generator=seeded)
        self.register_buffer("fixed_z", fixed_z, persistent=False)
        self.nimg = 0  # real images shown so far, over all ranks
        self.iteration = 0  # training batches seen (D steps)
        self.ema_pending_nimg = 0  # real images shown since the last EMA update (checkpointed)
        self.step_logs: dict[str, float] = {}  # scalars callbacks add to the next logged row
        self.phases = (  # StyleGAN2-ADA's phases: name, every how many iterations
            Phase("D", 1),
            *([Phase("R1", loss.r1_interval)] if loss.lazy_r1 else []),
            Phase("G", n_critic),
        )
        self.run_config: dict | None = None  # resolved Hydra config, stored in checkpoints
        self._ema_pairs: tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]] | None = None
        self._ema_bn_stale = False  # EMA weights moved since its batch norms were recalibrated
        self._resume_rng: dict[str, Any] | None = None  # this rank's RNG state from ckpt_path
        speed_up(self, channels_last, compile, mode=compile_mode)

    # ----------------------------------------------------------------- optimizers
    @property
    def d_mb_ratio(self) -> float:
        """StyleGAN2's mb_ratio = interval / (interval + 1) of D's optimizer with lazy R1 (its lr
        is multiplied by it and its betas raised to it, so D's steps per image stay as they
        were); 1 without."""
        interval = self.loss.r1_interval
        return interval / (interval + 1) if self.loss.lazy_r1 else 1.0

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        betas, ratio = tuple(self.hparams.betas), self.d_mb_ratio
        impl = adam_kwargs(self.hparams.get("adam_impl", "auto"))  # model.adam_impl
        opt_g = torch.optim.Adam(
            self.generator.parameters(), lr=self.hparams.lr_g, betas=betas, **impl
        )
        d_betas = tuple(beta**ratio for beta in betas) if ratio != 1.0 else betas
        opt_d = torch.optim.Adam(
            self.discriminator.parameters(), lr=self.hparams.lr_d * ratio, betas=d_betas, **impl
        )
        return [opt_g, opt_d]

    # ----------------------------------------------------------------- sampling
    def sample_z(self, num: int) -> Tensor:
        """Latents [num, z_dim] ~ N(0, 1) on the module's device."""
        return torch.randn(num, self.generator.z_dim, device=self.device)

    @torch.no_grad()
    def sample(
        self, z: Tensor | None = None, ema: bool = True, labels: Tensor | None = None
    ) -> Tensor:
        """Images [N, 3, R, R] in [-1, 1] from the EMA (default) or raw generator; z defaults to
        the fixed latent batch. Conditional: labels [N, K] (default with z: drawn from the data's
        label frequencies; without z: the grid, a row of GRID_COLUMNS images per class or
        attribute combination, the same fixed latents in every row)."""
        net = self.ema_generator() if ema else self.generator
        if self.labels is None:
            return net(self.fixed_z if z is None else z)
        if z is None:
            z, labels = self.grid_inputs()
        elif labels is None:
            labels = self.labels.random(len(z), z.device)
        return net(z, labels.to(z.device, z.dtype))

    def grid_inputs(self) -> tuple[Tensor, Tensor]:
        """(z [R * C, z_dim], labels [R * C, K]) of the conditional sample grid: R rows
        (`Labels.grid_rows`), the first C = GRID_COLUMNS fixed latents in each."""
        rows, _ = self.labels.grid_rows()
        z = self.fixed_z[:GRID_COLUMNS]
        labels = rows.to(z.device).repeat_interleave(len(z), 0)
        return z.repeat(len(rows), 1), labels

    def generate(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """G(z) or, conditional, G(z, labels): the training generator's forward."""
        return self.generator(z) if labels is None else self.generator(z, labels)

    def ema_generator(self) -> nn.Module:
        """The EMA generator with batch-norm statistics of its own (recalibrated here if its
        weights moved since; `model.ema_bn_latents`). Use it, not `generator_ema`, to draw."""
        if self._ema_bn_stale:
            self._ema_bn_stale = False
            recalibrate_batchnorm(self.generator_ema, self.generator_inputs,
                                  self.hparams.get("ema_bn_latents", 0),
                                  seed=self.hparams.sample_seed)
        return self.generator_ema

    def generator_inputs(self, num: int, rng: torch.Generator) -> tuple[Tensor, ...]:
        """G's arguments for `num` images drawn from the CPU generator `rng`: (z [num, z_dim],)
        and for a conditional G also labels [num, K] at the data's label frequencies."""
        dtype = next(self.generator_ema.parameters()).dtype
        z = torch.randn(num, self.generator.z_dim, generator=rng).to(self.device, dtype)
        if self.labels is None:
            return (z,)
        return z, self.labels.random(num, self.device, generator=rng).to(dtype)

    # ----------------------------------------------------------------- training
    def training_step(self, batch: Tensor | tuple[Tensor, Tensor], batch_idx: int) -> None:
        """One iteration on reals [B, 3, R, R] in [-1, 1] at the current resolution (and, when
        conditional, their labels [B, K], which the fakes are drawn with and D reads): the
        phases due at this iteration (`self.phases`), in order D, R1, G, then the EMA."""
        real, labels = split_batch(batch)
        labels = labels if self.labels is not None else None  # conditioning none: unused
        opt_g, opt_d = self.optimizers()
        due = {phase.name: phase.due(self.iteration) for phase in self.phases}
        regenerate = self.hparams.regenerate_fakes
        with bound_labels(self.discriminator, labels):  # D(x) reads them in every phase
            with torch.set_grad_enabled(due["G"] and not regenerate):
                fake = self.generate(self.sample_z(real.shape[0]), labels)
            assert fake.shape == real.shape, (
                f"G made {tuple(fake.shape)}, reals are {tuple(real.shape)}"
            )
            logs = self.d_step(opt_d, real, fake.detach())
            if due.get("R1"):
                logs |= self.r1_step(opt_d, real)
            if due["G"]:
                if regenerate:  # fresh latents for the G step (official PGGAN and SAGAN code)
                    fake = self.generate(self.sample_z(real.shape[0]), labels)
                logs |= self.g_step(opt_g, fake)
        self.count_images(real.shape[0] * self.trainer.world_size, g_stepped=due["G"])
        if 0 < self.trainer.max_steps <= self.trainer.global_step:
            self.trainer.should_stop = True  # last step: Lightning then also logs this one
        self.log_train(logs)

    def d_step(self, opt_d: Any, real: Tensor, fake: Tensor) -> dict[str, Tensor]:
        """Phase D: one step on reals vs detached fakes [B, 3, R, R] (WGAN-GP's penalty and a
        non-lazy R1 included). Returns the logged parts."""
        # model.augment: every image D sees is augmented (reals and fakes, D, R1 and G phases).
        # R1 is the gradient w.r.t. the un-augmented reals, through the augmentation, which the
        # loss applies itself (stylegan2-ada); model.augment.r1_wrt=augmented: w.r.t. the
        # augmented reals. WGAN-GP's penalty is always on the augmented images.
        if self.augment.r1_through:
            d_loss, logs = self.loss.discriminator_step(
                self.discriminator, real, fake, augment=self.augment
            )
        else:
            d_loss, logs = self.loss.discriminator_step(
                self.discriminator, self.augment(real), self.augment(fake)
            )
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        opt_d.step()
        self.augment.after_d_step(logs.get("d_real_sign"), real.shape[0])  # ADA adjusts p
        return logs

    def r1_step(self, opt_d: Any, real: Tensor) -> dict[str, Tensor]:
        """Phase R1 (lazy, every `loss.r1_interval` iterations): one D step on the R1 penalty of
        reals [B, 3, R, R], scaled by the interval."""
        if self.augment.r1_through:  # R1 through the augmentation (see d_step)
            r1_loss, logs = self.loss.r1_step(self.discriminator, real, augment=self.augment)
        else:
            r1_loss, logs = self.loss.r1_step(self.discriminator, self.augment(real))
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(r1_loss)
        opt_d.step()
        return logs

    def g_step(self, opt_g: Any, fake: Tensor) -> dict[str, Tensor]:
        """Phase G (every `n_critic` iterations): one step on D(fake), fake [B, 3, R, R] with
        G's graph. D's weights get no gradient."""
        self.discriminator.requires_grad_(False)
        g_loss = self.loss.g_loss(self.discriminator(self.augment(fake)))
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(g_loss)
        opt_g.step()
        self.discriminator.requires_grad_(True)
        return {"g_loss": g_loss.detach()}

    def count_images(self, images: int, g_stepped: bool) -> None:
        """Advance `nimg` and `iteration` by one batch of `images` reals (all ranks); after a G
        step, update the EMA over every real image shown since its last update."""
        self.nimg += images
        self.iteration += 1
        self.ema_pending_nimg += images
        if g_stepped:
            self.update_ema(self.ema_pending_nimg)
            self.ema_pending_nimg = 0

    def ema_kimg(self) -> float:
        """The EMA half-life now, kimg: `model.ema_kimg` (PGGAN may bound it by its phase)."""
        return self.hparams.ema_kimg

    @torch.no_grad()
    def update_ema(self, images: int) -> None:
        """EMA of G after `images` real images: p_ema <- p.lerp(p_ema, beta), beta from
        `ema_beta` (or `ema_per_step`, per G step); buffers are copied (batch-norm statistics
        are recomputed before use with `ema_bn_latents`)."""
        beta = self.hparams.get("ema_per_step")
        if beta is None:
            beta = ema_beta(images, self.ema_kimg(), self.hparams.ema_rampup, self.nimg)
        self._ema_bn_stale = self.hparams.get("ema_bn_latents", 0) > 0
        if self._ema_pairs is None:
            self._ema_pairs = (
                list(self.generator_ema.parameters()),
                list(self.generator.parameters()),
                list(self.generator_ema.buffers()),
                list(self.generator.buffers()),
            )
        ema_params, params, ema_buffers, buffers = self._ema_pairs
        torch._foreach_lerp_(ema_params, params, 1.0 - beta)
        if ema_buffers:
            torch._foreach_copy_(ema_buffers, buffers)  # one launch, not one per buffer

    def on_fit_start(self) -> None:
        self._ema_pairs = None  # parameters may have moved device
        lightning_api.install_fast_paths()  # Lightning's per-step work, less of it
        if self.trainer.world_size > 1:  # DDP: other latents on every rank, not copies of rank 0's
            torch.manual_seed(torch.initial_seed() + self.global_rank)

    def on_train_start(self) -> None:
        # After Lightning made the loader iterator (its base seed comes from the loader's own
        # generator), so the next draw is the one the uninterrupted run would make: flips, z.
        if self._resume_rng is not None:
            set_rng_state(self._resume_rng, self.device)
            self._resume_rng = None

    # ----------------------------------------------------------------- logging
    def extra_train_logs(self) -> dict[str, float | Tensor]:
        """Scalars a variant adds to every logging step (e.g. PGGAN's resolution, alpha)."""
        return {}

    def log_train(self, logs: dict[str, Tensor]) -> None:
        """One row of `train/*` scalars at Lightning's logging interval (every
        `trainer.log_every_n_steps` batches), with the step's only host sync: the losses and D
        outputs of `logs`, the variant's and the augmentation's scalars, learning rates, kimg and
        what callbacks put in `step_logs`. Under DDP tensors are means over ranks. Written with
        `lightning_api.log_out_of_band`, not `self.log`: Lightning would keep every logged name
        in its result collection and walk it at every step. Raises NonFiniteLossError on a
        NaN / inf loss."""
        if not lightning_api.should_log(self.trainer):
            return
        named = {f"train/{name}": value for name, value in logs.items()}
        named |= {f"train/{name}": value for name, value in self.extra_train_logs().items()}
        named |= {f"train/{name}": value for name, value in self.augment.logs().items()}
        row = self.mean_over_ranks(named)  # plain floats
        self.check_finite({name: row[f"train/{name}"] for name in logs})
        opt_g, opt_d = self.optimizers()
        row["train/lr_g"] = opt_g.param_groups[0]["lr"]
        row["train/lr_d"] = opt_d.param_groups[0]["lr"]
        row |= {"train/kimg": self.nimg / 1000, **self.step_logs}
        self.step_logs = {}
        lightning_api.log_out_of_band(self.trainer, row, flush=False)

    def mean_over_ranks(self, values: dict[str, Tensor | float]) -> dict[str, float]:
        """Scalars as floats, tensors averaged over DDP ranks (one all-reduce of them stacked,
        one host sync); plain numbers as they are."""
        tensors = {name: value for name, value in values.items() if isinstance(value, Tensor)}
        floats = {name: float(value) for name, value in values.items() if name not in tensors}
        if tensors:
            stacked = torch.stack([v.detach().float().reshape(()) for v in tensors.values()])
            if self.trainer.world_size > 1:
                stacked = self.trainer.strategy.reduce(stacked, reduce_op="mean")
            floats |= dict(zip(tensors, stacked.tolist(), strict=True))
        return floats

    def check_finite(self, losses: dict[str, float]) -> None:
        """Raise NonFiniteLossError naming the iteration and loss if any value is NaN/inf."""
        bad = {name: value for name, value in losses.items() if not math.isfinite(value)}
        if not bad:
            return
        raise NonFiniteLossError(
            f"non-finite loss at iteration {self.iteration} (kimg {self.nimg / 1000:.3f}): {bad}. "
            "Training stopped; checkpoints/last.ckpt holds the last finite weights. Try a lower "
            "learning rate (model.lr_g / model.lr_d) or another loss."
        )

    def weights_are_finite(self) -> bool:
        """True if every parameter of G, D and EMA-G is finite (checked before saving)."""
        params = [
            p
            for m in (self.generator, self.discriminator, self.generator_ema)
            for p in m.parameters()
        ]
        return bool(torch.stack([p.isfinite().all() for p in params]).all())

    # ----------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._ema_bn_stale:  # the saved EMA G carries batch-norm statistics of its own
            state = checkpoint["state_dict"]
            for name, buffer in self.ema_generator().named_buffers():
                if f"generator_ema.{name}" in state:
                    state[f"generator_ema.{name}"] = buffer.detach().clone()
        checkpoint[CHECKPOINT_KEY] = {
            "format": CHECKPOINT_FORMAT,
            "model": type(self).__name__,
            "nimg": self.nimg,
            "iteration": self.iteration,
            "ema_pending_nimg": self.ema_pending_nimg,
            "config": self.run_config,
            # one entry per rank; a resumed state not yet applied (no batch trained) is the truth
            "rng": gather_per_rank(self._resume_rng or rng_state(self.device)),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(CHECKPOINT_KEY)
        if state is None:
            raise ConfigError("this checkpoint was not written by ganlab (no 'ganlab' entry)")
        self.nimg = int(state["nimg"])
        self.iteration = int(state["iteration"])
        self.ema_pending_nimg = int(state.get("ema_pending_nimg", 0))
        trainer = attached_trainer(self)  # None when loaded outside Trainer.fit
        warn_inexact(state.get("rng"), trainer)
        self._resume_rng = this_rank(state.get("rng"), trainer)
