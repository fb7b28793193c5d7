"""GANModule mechanics: EMA math, nimg accounting, one G forward per iteration, n_critic."""

import copy

import pytest
import torch
from hydra.utils import instantiate

from ganlab.run import build


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
