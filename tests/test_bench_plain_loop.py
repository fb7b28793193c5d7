"""The bench's hand-written loop (`ganlab.bench.paths.plain_step`) cannot drift from the real
training step: fed the same initial weights, batches and RNG state, both give the same G, D
and EMA-G after a few iterations.

Tolerance: both paths run the same float32 ops in the same order on the same device, so they
agree bit for bit today; the check allows a few float32 rounding steps (rtol 1e-5, atol 1e-6:
about 80 ulps of a weight of order 1, far below one Adam step of lr 2e-4..1e-3), so that a
harmless change of operation order in one path (fused vs per-tensor Adam, foreach EMA) passes
while any change of the math (a missed G step, another EMA rate, a missing fade) fails.
"""

from __future__ import annotations

import copy

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from ganlab.bench.paths import plain_step
from ganlab.training.fit import build

# EMA half-life 50 images (beta 0.8 per batch of 16): a wrong EMA rate shows in EMA-G at once
TINY_NETS = ["kimg=null", "callbacks.samples=null", "callbacks.checkpoint=null",
             "data.num_images=64", "model.ema_kimg=0.05"]
# PGGAN halfway through fading 16 px in (starting at 8 px): 8 iterations stay inside the fade;
# the plain loop has no fading-block EMA copy (model.ema_follows_growth, see plain_step)
PGGAN_FADE = ["model=pggan", "model.start_resolution=8", "model.schedule.stabilize_kimg=0.05",
              "model.schedule.fade_kimg=0.4", "model.schedule.batch_size_dict=null",
              "model.ema_follows_growth=false"]
CASES = {
    "dcgan": ["model=dcgan"],
    "sagan": ["model=sagan"],
    "pggan_fade": PGGAN_FADE,
    "dcgan_n_critic_2": ["model=dcgan", "model.n_critic=2", "data.hflip=true"],
    "pggan_fade_n_critic_2": [*PGGAN_FADE, "model.n_critic=2"],
}
ITERATIONS = 6


class Record(pl.Callback):
    """The weights at the start, then per iteration the reals D saw (after flips and the fade),
    the torch RNG state before the step and the images shown before it."""

    def __init__(self) -> None:
        self.initial: dict[str, torch.Tensor] = {}
        self.steps: list[tuple[torch.Tensor, torch.Tensor, int]] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self.initial = copy.deepcopy(pl_module.state_dict())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.steps.append((batch.clone(), torch.get_rng_state(), pl_module.nimg))
        if len(self.steps) == ITERATIONS:
            trainer.should_stop = True


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_plain_loop_matches_the_training_step(make_cfg, case):
    cfg = make_cfg(*TINY_NETS, *CASES[case])
    pl.seed_everything(0)
    datamodule, module, trainer = build(cfg)
    record = Record()
    trainer.callbacks.append(record)
    if "model=pggan" in CASES[case]:
        module.nimg = 150  # a quarter into the fade (50 to 450 images)
    trainer.fit(module, datamodule=datamodule)
    assert module.iteration == ITERATIONS

    plain = instantiate(cfg.model)  # a holder of G, D, EMA-G, loss and hyperparameters
    plain.load_state_dict(record.initial)
    plain.nimg = record.steps[0][2]
    step = plain_step(plain, "cpu", "32")
    schedule = getattr(plain, "schedule", None)  # PGGAN's GrowthSchedule
    for real, rng, nimg in record.steps:
        if schedule is not None:  # what PGGAN's module sets before the batch
            phase = schedule.at(nimg)
            assert phase.fading and real.shape[-1] == phase.resolution
            for net in (plain.generator, plain.discriminator, plain.generator_ema):
                net.set_stage(phase.level, phase.alpha)
        torch.set_rng_state(rng)
        step(real)

    if schedule is not None:  # the module already set the stage of the next batch
        phase = schedule.at(module.nimg)
        for net in (plain.generator, plain.discriminator, plain.generator_ema):
            net.set_stage(phase.level, phase.alpha)
    for name in ("generator", "discriminator", "generator_ema"):
        ours, theirs = getattr(plain, name).state_dict(), getattr(module, name).state_dict()
        for key, value in theirs.items():
            torch.testing.assert_close(ours[key], value, rtol=1e-5, atol=1e-6,
                                       msg=lambda m, k=f"{name}.{key}": f"{k}: {m}")
