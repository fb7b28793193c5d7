"""GANModule mechanics: EMA math, nimg accounting, one G forward per iteration, n_critic."""

import copy

import pytest
import torch
from hydra.utils import instantiate

from ganlab.training.fit import build


@pytest.mark.slow
def test_ema_update_is_a_half_life_lerp(make_cfg):
    _, model, _ = build(make_cfg("model.ema_kimg=0.1", "model.ema_rampup=null"))
    ema_before = copy.deepcopy(model.generator_ema.state_dict())
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(1.0)
    model.update_ema(images=100)  # one half-life: beta = 0.5
    for name, p in model.generator.named_parameters():
        expected = 0.5 * ema_before[name] + 0.5 * p
        torch.testing.assert_close(dict(model.generator_ema.named_parameters())[name], expected)
    for name, buffer in model.generator.named_buffers():  # buffers are copied, not averaged
        torch.testing.assert_close(dict(model.generator_ema.named_buffers())[name], buffer)


@pytest.mark.slow
def test_ema_rampup_shortens_the_half_life_early(make_cfg):
    _, model, _ = build(make_cfg("model.ema_kimg=10", "model.ema_rampup=0.5"))
    model.nimg = 200  # half-life min(10000, 100) = 100 images
    before = [p.clone() for p in model.generator_ema.parameters()]
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(1.0)
    model.update_ema(images=100)
    for b, e, p in zip(before, model.generator_ema.parameters(), model.generator.parameters()):
        torch.testing.assert_close(e, 0.5 * b + 0.5 * p)


@pytest.mark.slow
@pytest.mark.parametrize("n_critic", [1, 3])
def test_nimg_counts_reals_and_g_runs_once_per_iteration(make_cfg, n_critic):
    cfg = make_cfg(f"model.n_critic={n_critic}", "kimg=null", "trainer.max_steps=-1",
                   "+trainer.limit_train_batches=6", "trainer.max_epochs=1")
    datamodule, model, trainer = build(cfg)
    calls = {"g": 0}
    model.generator.register_forward_hook(lambda *_: calls.__setitem__("g", calls["g"] + 1))
    trainer.fit(model, datamodule=datamodule)
    assert model.nimg == 6 * cfg.data.batch_size
    assert model.iteration == 6
    assert calls["g"] == 6  # fakes are generated once per iteration, reused for the G step
    opt_g, opt_d = model.optimizers()
    g_steps = opt_g.optimizer.state[next(iter(model.generator.parameters()))]["step"]
    d_steps = opt_d.optimizer.state[next(iter(model.discriminator.parameters()))]["step"]
    assert int(d_steps) == 6 and int(g_steps) == 6 // n_critic


def test_loss_config_swaps_the_loss_object(make_cfg):
    cfg = make_cfg("loss=wgan_gp", "model.discriminator.batch_norm=false")
    loss = instantiate(cfg.model).loss
    assert type(loss).__name__ == "Wasserstein" and loss.gp_weight == 10.0


@pytest.mark.slow
@pytest.mark.parametrize("n_critic", [1, 3])
def test_ema_half_life_counts_every_real_image_since_the_last_update(make_cfg, n_critic):
    """G held at 1, EMA from 0: after ema_kimg of real images the EMA is at 0.5, whatever
    n_critic (the EMA runs on G steps only, over all the images shown since its last one)."""
    batches, batch_size = 6, 16
    cfg = make_cfg(f"model.n_critic={n_critic}", "kimg=null", "trainer.max_steps=-1",
                   f"+trainer.limit_train_batches={batches}", "trainer.max_epochs=1",
                   f"model.ema_kimg={batches * batch_size / 1000}", "model.ema_rampup=null",
                   f"data.batch_size={batch_size}")
    datamodule, model, trainer = build(cfg)
    update_ema = model.update_ema

    def update_with_g_at_one(images):
        with torch.no_grad():
            for p in model.generator.parameters():
                p.fill_(1.0)
        update_ema(images)

    model.update_ema = update_with_g_at_one
    with torch.no_grad():
        for p in model.generator_ema.parameters():
            p.zero_()
    trainer.fit(model, datamodule=datamodule)
    assert model.nimg == batches * batch_size and model.ema_pending_nimg == 0
    for p in model.generator_ema.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 0.5))


@pytest.mark.slow
def test_ema_beta_formula_and_images_since_the_update_in_checkpoints(make_cfg):
    from ganlab.models.base import ema_beta

    assert ema_beta(100, 0.1, None, 0) == pytest.approx(0.5)
    assert ema_beta(300, 0.1, None, 0) == pytest.approx(0.125)
    assert ema_beta(100, 10.0, 0.5, 200) == pytest.approx(0.5)  # ramp-up: half-life 100 images
    assert ema_beta(16, 0.0, None, 16) == 0.0  # ema_kimg 0: the EMA copies G
    _, model, _ = build(make_cfg())
    model.ema_pending_nimg = 32
    checkpoint = {}
    model.on_save_checkpoint(checkpoint)
    _, other, _ = build(make_cfg())
    other.on_load_checkpoint(checkpoint)
    assert other.ema_pending_nimg == 32


def count_calls(module, counts, key):
    module.register_forward_hook(lambda *_: counts.__setitem__(key, counts[key] + 1))


@pytest.mark.slow
@pytest.mark.parametrize(("interval", "r1_steps"), [(1, 0), (4, 2)])
def test_lazy_r1_is_a_phase_every_interval_with_mb_ratio(make_cfg, interval, r1_steps):
    """R1 every `loss.r1_interval` iterations as its own D step (interval 1: inside every D step);
    D's lr and betas adjusted by mb_ratio = interval / (interval + 1)."""
    cfg = make_cfg("loss.r1_gamma=1.0", f"loss.r1_interval={interval}", "kimg=null",
                   "trainer.max_steps=-1", "+trainer.limit_train_batches=8", "trainer.max_epochs=1")
    datamodule, model, trainer = build(cfg)
    logged = []
    model.log_train = lambda logs: logged.append(sorted(logs))
    trainer.fit(model, datamodule=datamodule)
    assert [phase.name for phase in model.phases] == (["D", "G"] if interval == 1
                                                      else ["D", "R1", "G"])
    opt_d = model.optimizers()[1].optimizer
    d_steps = opt_d.state[next(iter(model.discriminator.parameters()))]["step"]
    assert int(d_steps) == 8 + r1_steps
    with_r1 = [i for i, keys in enumerate(logged) if "r1" in keys]
    assert with_r1 == (list(range(8)) if interval == 1 else [3, 7])
    ratio = interval / (interval + 1) if interval > 1 else 1.0
    group = opt_d.param_groups[0]
    assert group["lr"] == pytest.approx(cfg.model.lr_d * ratio)
    assert group["betas"] == pytest.approx([b**ratio for b in cfg.model.betas])


@pytest.mark.slow
def test_wgan_gp_penalty_stays_in_every_d_step(make_cfg):
    cfg = make_cfg("loss=wgan_gp", "model.discriminator.batch_norm=false", "model.n_critic=2",
                   "kimg=null", "trainer.max_steps=-1", "+trainer.limit_train_batches=4",
                   "trainer.max_epochs=1")
    datamodule, model, trainer = build(cfg)
    logged = []
    model.log_train = lambda logs: logged.append(sorted(logs))
    trainer.fit(model, datamodule=datamodule)
    assert all("gp" in keys for keys in logged) and len(logged) == 4
    assert ["g_loss" in keys for keys in logged] == [False, True, False, True]


@pytest.mark.slow
@pytest.mark.parametrize("regenerate", [False, True])
def test_regenerate_fakes_draws_fresh_latents_for_the_g_step(make_cfg, regenerate):
    cfg = make_cfg(f"model.regenerate_fakes={regenerate}", "model.n_critic=2", "kimg=null",
                   "trainer.max_steps=-1", "+trainer.limit_train_batches=6", "trainer.max_epochs=1")
    datamodule, model, trainer = build(cfg)
    counts = {"g": 0}
    count_calls(model.generator, counts, "g")
    trainer.fit(model, datamodule=datamodule)
    assert counts["g"] == 6 + (3 if regenerate else 0)
