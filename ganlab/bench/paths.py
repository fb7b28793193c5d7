"""The two timed paths of a case: ganlab's real Lightning path and a plain PyTorch loop."""


from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor

from ganlab.bench.cases import Case, PathResult, Timing, start_nimg
from ganlab.bench.counters import Clock, ClockCallback, FlopCounter


# ----------------------------------------------------------------------------- ganlab path
def run_ganlab(cfg: DictConfig, case: Case, timing: Timing, train_set: Any) -> PathResult:
    """ganlab's real path: `ganlab.run.build` + `Trainer.fit`, timed by a callback."""
    from ganlab.training.fit import build

    pl.seed_everything(cfg.seed, verbose=False)
    with quiet_lightning():
        datamodule, module, trainer = build(cfg)
        datamodule.train_set = train_set  # rendered once per case; setup() keeps it
        module.nimg = start_nimg(case, module)
        clock = Clock(timing, timing.steps or cfg.trainer.log_every_n_steps, case.device)
        trainer.callbacks.append(ClockCallback(clock))
        trainer.fit(module, datamodule=datamodule)
    return clock.result()


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's start-up banners and warnings while a path runs."""
    names = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric")
    levels = {name: logging.getLogger(name).level for name in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            logging.getLogger(name).setLevel(logging.ERROR)
        try:
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)


# ----------------------------------------------------------------------------- plain path
def plain_step(module: Any, device: str, precision: str) -> Callable[[Tensor], None]:
    """One GAN iteration on reals [B, 3, r, r] in [-1, 1], written without any framework:
    the same math as GANModule.training_step (fakes once, D step, G step every n_critic, EMA
    over the images since its last update). Not here: the lazy R1 phase (off in the bench's
    configs) and PGGAN's fading-block EMA copy (`model.ema_follows_growth`, on by default: in
    fade rows the ganlab path copies that block's weights at every EMA update and the plain loop
    does not, so the ganlab path does slightly more work there)."""
    from ganlab.models.base import adam_kwargs, ema_beta

    G, D, G_ema, loss = module.generator, module.discriminator, module.generator_ema, module.loss
    hp = module.hparams
    betas = tuple(hp.betas)
    impl = adam_kwargs(hp.get("adam_impl", "auto"))  # model.adam_impl, as the module's
    opt_g = torch.optim.Adam(G.parameters(), lr=hp.lr_g, betas=betas, **impl)
    opt_d = torch.optim.Adam(D.parameters(), lr=hp.lr_d, betas=betas, **impl)
    ema_params, params = list(G_ema.parameters()), list(G.parameters())
    ema_buffers, buffers = list(G_ema.buffers()), list(G.buffers())
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
    state = {"iteration": 0, "nimg": module.nimg, "ema_images": 0}

    def step(real: Tensor) -> None:
        batch = real.shape[0]
        train_g = (state["iteration"] + 1) % hp.n_critic == 0
        with autocast:
            with torch.set_grad_enabled(train_g):
                fake = G(torch.randn(batch, G.z_dim, device=device))
            d_loss, _ = loss.discriminator_step(D, real, fake.detach())
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            if train_g:
                D.requires_grad_(False)
                g_loss = loss.g_loss(D(fake))
                opt_g.zero_grad(set_to_none=True)
                g_loss.backward()
                opt_g.step()
                D.requires_grad_(True)
        state["iteration"] += 1
        state["nimg"] += batch
        state["ema_images"] += batch
        if train_g:
            with torch.no_grad():
                beta = ema_beta(state["ema_images"], hp.ema_kimg, hp.ema_rampup, state["nimg"])
                state["ema_images"] = 0
                torch._foreach_lerp_(ema_params, params, 1.0 - beta)
                if ema_buffers:
                    torch._foreach_copy_(ema_buffers, buffers)

    return step


def plain_reals(module: Any, images: Tensor, data_cfg: DictConfig, batch: int | None) -> Callable:
    """reals(nimg) -> a random batch [B, 3, r, r] in [-1, 1] of `images` (uint8, on the device)
    at the stage of `nimg`; for PGGAN it also sets the networks' stage and alpha, as the
    PGGAN module does."""
    from ganlab.data.base import fade_reals, random_hflip, resize, to_float

    schedule = getattr(module, "schedule", None)
    nets = (module.generator, module.discriminator, module.generator_ema)
    base_batch = batch or data_cfg.batch_size
    current = {"phase": None}

    def reals(nimg: int) -> Tensor:
        side, alpha, size = data_cfg.resolution, 1.0, base_batch
        if schedule is not None:
            phase = schedule.at(nimg)
            if phase != current["phase"]:
                for net in nets:
                    net.set_stage(phase.level, phase.alpha)
                current["phase"] = phase
            side, alpha = phase.resolution, phase.alpha
            size = batch or module.batch_size_dict.get(side, base_batch)
        index = torch.randint(images.shape[0], (size,), device=images.device)
        x = fade_reals(resize(to_float(images[index]), side, data_cfg.downsample), alpha)
        return random_hflip(x) if data_cfg.hflip else x

    return reals


def plain_module(cfg: DictConfig, case: Case, compile: bool | None = None) -> Any:
    """The variant's module from the config, only as a holder of G, D, EMA-G, loss and
    hyperparameters (nothing of Lightning runs); on the case's device, at its start phase."""
    pl.seed_everything(cfg.seed, verbose=False)
    module = instantiate(cfg.model) if compile is None else instantiate(cfg.model, compile=compile)
    module.to(case.device)
    module.nimg = start_nimg(case, module)
    return module


def run_plain(cfg: DictConfig, case: Case, timing: Timing, images: Tensor) -> PathResult:
    """The plain loop: reals indexed from `images` on the device, `plain_step` per iteration."""
    module = plain_module(cfg, case)
    reals = plain_reals(module, images, cfg.data, case.batch)
    step = plain_step(module, case.device, case.precision)
    clock = Clock(timing, timing.steps or cfg.trainer.log_every_n_steps, case.device)
    nimg = module.nimg
    while not clock.done:
        clock.before_step()
        real = reals(nimg)
        step(real)
        nimg += real.shape[0]
        clock.after_step(nimg)
    return clock.result()


def flops_per_image(cfg: DictConfig, case: Case, images: Tensor) -> float:
    """Model FLOPs per real image over one full `n_critic` cycle (n_critic D steps, one G step;
    forward and backward, penalties with their double backward), counted on eager nets."""
    module = plain_module(cfg, case, compile=False)
    reals = plain_reals(module, images, cfg.data, case.batch)
    step = plain_step(module, case.device, case.precision)
    images_seen = 0
    with FlopCounter() as counter:
        for _ in range(module.hparams.n_critic):
            real = reals(module.nimg)
            step(real)
            images_seen += real.shape[0]
    return counter.total / images_seen
