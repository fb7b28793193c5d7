"""GANModule: the training loop every GAN variant shares.

One iteration (one real batch): fakes are generated once; D takes one step on real vs
fake.detach(); every `n_critic`-th iteration G takes one step on D(fake) and the EMA copy of G
is updated. Progress is counted in real images shown (`nimg`), never in `global_step`, which
Lightning advances once per optimizer call.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from ganlab.lightning_api import attached_trainer
from ganlab.losses import GANLoss
from ganlab.resume import gather_per_rank, rng_state, set_rng_state, this_rank, warn_inexact
from ganlab.utils import ConfigError, check_int, check_positive

log = logging.getLogger("ganlab")

CHECKPOINT_KEY = "ganlab"
CHECKPOINT_FORMAT = 1


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; training stops and last.ckpt keeps the last finite weights."""


def speed_up(
    module: GANModule, channels_last: bool, compile: bool, backend: Any = "inductor"
) -> None:
    """The `model.channels_last` / `model.compile` switches, applied to the module's networks.

    channels_last: weights of G, D, EMA-G in channels-last format (convs then output it too).
    compile: `nn.Module.compile` of G and D (in place: state-dict keys are unchanged), static
    shapes, so a network recompiles only when its graph changes (PGGAN: once per stabilise /
    fade phase, as stage and alpha are buffers; D once more for its G-step call), never per step.
    D stays eager if the loss needs double backward (gradient penalty, R1). `backend`: that of
    torch.compile (tests pass a counting one).
    """
    if channels_last:
        for net in (module.generator, module.discriminator, module.generator_ema):
            net.to(memory_format=torch.channels_last)
    if not compile:
        return
    from torch._dynamo import config as dynamo_config

    # one graph per PGGAN phase and D call kind: 2 * 17 phases at 1024 px; the default is 8
    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 64)
    module.generator.compile(dynamic=False, backend=backend)
    if module.loss.needs_double_backward:
        log.warning("model.compile: D stays eager (the loss differentiates D's input gradient, "
                    "which compiled modules do not support); G is compiled")
    else:
        module.discriminator.compile(dynamic=False, backend=backend)


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
        num_samples: size of the fixed latent batch used for sample grids.
        sample_seed: seed of that fixed latent batch.
        channels_last: G, D and EMA-G weights in channels-last memory format (GPU tensor cores).
        compile: torch.compile G and D in place (see `speed_up`); D stays eager when the loss
            differentiates D's input gradient (WGAN-GP, R1: no double backward when compiled).
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
        num_samples: int = 64,
        sample_seed: int = 0,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        check_positive(lr_g, "model.lr_g")
        check_positive(lr_d, "model.lr_d")
        check_int(n_critic, "model.n_critic", 1)
        if ema_kimg < 0:
            raise ConfigError(f"model.ema_kimg={ema_kimg!r} must be >= 0 (0 = EMA follows G)")
        betas = (float(betas[0]), float(betas[1]))  # plain floats: checkpoints load weights_only
        self.automatic_optimization = False
        self.save_hyperparameters(ignore=["generator", "discriminator", "loss"])
        self.generator = generator
        self.discriminator = discriminator
        self.loss = loss
        self.generator_ema = copy.deepcopy(generator).eval().requires_grad_(False)
        seeded = torch.Generator().manual_seed(sample_seed)
        fixed_z = torch.randn(num_samples, generator.z_dim, generator=seeded)
        self.register_buffer("fixed_z", fixed_z, persistent=False)
        self.nimg = 0  # real images shown so far, over all ranks
        self.iteration = 0  # training batches seen (D steps)
        self.run_config: dict | None = None  # resolved Hydra config, stored in checkpoints
        self._ema_pairs: tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]] | None = None
        self._resume_rng: dict[str, Any] | None = None  # this rank's RNG state from ckpt_path
        speed_up(self, channels_last, compile)

    # ----------------------------------------------------------------- optimizers
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        betas = tuple(self.hparams.betas)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr_g, betas=betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr_d, betas=betas)
        return [opt_g, opt_d]

    # ----------------------------------------------------------------- sampling
    def sample_z(self, num: int) -> Tensor:
        """Latents [num, z_dim] ~ N(0, 1) on the module's device."""
        return torch.randn(num, self.generator.z_dim, device=self.device)

    @torch.no_grad()
    def sample(self, z: Tensor | None = None, ema: bool = True) -> Tensor:
        """Images [N, 3, R, R] in [-1, 1] from the EMA (default) or raw generator; z defaults to
        the fixed latent batch."""
        z = self.fixed_z if z is None else z
        return (self.generator_ema if ema else self.generator)(z)

    # ----------------------------------------------------------------- training
    def training_step(self, batch: Tensor, batch_idx: int) -> None:
        """batch: reals [B, 3, R, R] in [-1, 1] at the current resolution."""
        real = batch
        opt_g, opt_d = self.optimizers()
        train_g = (self.iteration + 1) % self.hparams.n_critic == 0
        with torch.set_grad_enabled(train_g):
            fake = self.generator(self.sample_z(real.shape[0]))
        assert fake.shape == real.shape, (
            f"G made {tuple(fake.shape)}, reals are {tuple(real.shape)}"
        )

        d_loss, logs = self.loss.discriminator_step(self.discriminator, real, fake.detach())
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        opt_d.step()

        if train_g:
            self.discriminator.requires_grad_(False)
            g_loss = self.loss.g_loss(self.discriminator(fake))
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g_loss)
            opt_g.step()
            self.discriminator.requires_grad_(True)
            logs["g_loss"] = g_loss.detach()

        images_this_step = real.shape[0] * self.trainer.world_size
        self.nimg += images_this_step
        self.iteration += 1
        if train_g:
            self.update_ema(images_this_step)
        if 0 < self.trainer.max_steps <= self.trainer.global_step:
            self.trainer.should_stop = True  # last step: Lightning then also logs this one
        self.log_train(logs, batch_size=real.shape[0])

    @torch.no_grad()
    def update_ema(self, images: int) -> None:
        """EMA of G, half-life `ema_kimg`: p_ema <- beta * p_ema + (1 - beta) * p; buffers copy."""
        ema_nimg = self.hparams.ema_kimg * 1000
        if self.hparams.ema_rampup is not None:
            ema_nimg = min(ema_nimg, self.nimg * self.hparams.ema_rampup)
        beta = 0.5 ** (images / max(ema_nimg, 1e-8))
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

    def log_train(self, logs: dict[str, Tensor], batch_size: int) -> None:
        """Log at Lightning's logging interval only: the one host sync of the step happens here."""
        if not self.trainer._logger_connector.should_update_logs:
            return
        self.check_finite(logs)
        opt_g, opt_d = self.optimizers()
        scalars: dict[str, Any] = {f"train/{name}": value for name, value in logs.items()}
        scalars |= {f"train/{name}": value for name, value in self.extra_train_logs().items()}
        scalars["train/lr_g"] = opt_g.param_groups[0]["lr"]
        scalars["train/lr_d"] = opt_d.param_groups[0]["lr"]
        # sync_dist: under DDP the logged values are means over ranks (no-op on one device)
        self.log_dict(scalars, on_step=True, on_epoch=False, batch_size=batch_size, sync_dist=True)
        progress = {"kimg": self.nimg / 1000, "d": logs["d_loss"]}
        if "g_loss" in logs:
            progress["g"] = logs["g_loss"]
        self.log_dict(
            progress,
            prog_bar=True,
            logger=False,
            on_step=True,
            on_epoch=False,
            batch_size=batch_size,
        )
        self.log(
            "train/kimg", self.nimg / 1000, on_step=True, on_epoch=False, batch_size=batch_size
        )

    def check_finite(self, logs: dict[str, Tensor]) -> None:
        """Raise NonFiniteLossError naming the step and loss if any logged value is NaN/inf."""
        values = torch.stack([v.float() for v in logs.values()])
        if bool(torch.isfinite(values).all()):
            return
        bad = {k: float(v) for k, v in logs.items() if not torch.isfinite(v).all()}
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
        checkpoint[CHECKPOINT_KEY] = {
            "format": CHECKPOINT_FORMAT,
            "model": type(self).__name__,
            "nimg": self.nimg,
            "iteration": self.iteration,
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
        trainer = attached_trainer(self)  # None when loaded outside Trainer.fit
        warn_inexact(state.get("rng"), trainer)
        self._resume_rng = this_rank(state.get("rng"), trainer)
