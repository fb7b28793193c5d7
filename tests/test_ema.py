"""The EMA generator: per-step decay (official PGGAN) and batch-norm statistics of its own."""

import copy

import pytest
import torch
from torch import nn

from ganlab.models.base import recalibrate_batchnorm
from ganlab.training.fit import build


class TinyBNGenerator(nn.Module):
    """z [N, 4] -> Linear -> BN -> ReLU -> Linear -> BN: two batch norms in a row."""

    z_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.lin1, self.bn1 = nn.Linear(4, 6), nn.BatchNorm1d(6)
        self.lin2, self.bn2 = nn.Linear(6, 5), nn.BatchNorm1d(5)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.lin2(torch.relu(self.bn1(self.lin1(z)))))


def latents(num: int, rng: torch.Generator) -> tuple[torch.Tensor]:
    return (torch.randn(num, 4, generator=rng),)


def test_recalibration_equals_the_statistics_computed_directly():
    torch.manual_seed(0)
    net = TinyBNGenerator().eval()
    with torch.no_grad():  # affine parameters away from identity, stale running statistics
        for bn in (net.bn1, net.bn2):
            bn.weight.uniform_(0.5, 2.0), bn.bias.uniform_(-1, 1)
            bn.running_mean.fill_(7.0), bn.running_var.fill_(3.0)
    params = copy.deepcopy(dict(net.named_parameters()))
    rng_before = torch.get_rng_state()
    assert recalibrate_batchnorm(net, latents, num_latents=512, batch_size=512, seed=3)
    # direct computation: the same latents through the network with batch statistics
    z = torch.randn(512, 4, generator=torch.Generator().manual_seed(3))
    h1 = net.lin1(z)
    a1 = torch.relu((h1 - h1.mean(0)) / (h1.var(0, unbiased=False) + net.bn1.eps).sqrt()
                    * net.bn1.weight + net.bn1.bias)
    h2 = net.lin2(a1)
    for bn, h in ((net.bn1, h1), (net.bn2, h2)):
        torch.testing.assert_close(bn.running_mean, h.mean(0).detach())
        torch.testing.assert_close(bn.running_var, h.var(0).detach())  # unbiased, as BN keeps
        assert bn.momentum == 0.1 and not bn.training  # restored
    assert torch.equal(torch.get_rng_state(), rng_before)  # the training RNG is untouched
    for name, p in net.named_parameters():
        assert torch.equal(p, params[name])


def test_recalibration_over_batches_is_the_average_of_batch_statistics():
    torch.manual_seed(1)
    net = TinyBNGenerator().eval()
    recalibrate_batchnorm(net, latents, num_latents=300, batch_size=100, seed=5)
    z = torch.randn(300, 4, generator=torch.Generator().manual_seed(5))
    h1 = net.lin1(z).detach()
    means = torch.stack([h1[i:i + 100].mean(0) for i in (0, 100, 200)])
    torch.testing.assert_close(net.bn1.running_mean, means.mean(0))
    assert not recalibrate_batchnorm(nn.Linear(4, 4), latents, num_latents=8)  # no batch norm


@pytest.mark.slow
def test_ema_generator_recalibrates_after_updates_and_checkpoints_hold_it(make_cfg):
    _, model, _ = build(make_cfg("model=dcgan", "model.ema_bn_latents=64"))
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(0.1)
    model.update_ema(images=100)
    stale = {n: b.clone() for n, b in model.generator_ema.named_buffers()}
    assert model._ema_bn_stale
    expected = copy.deepcopy(model.generator_ema)
    recalibrate_batchnorm(expected, model.generator_inputs, 64, seed=model.hparams.sample_seed)
    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    assert not model._ema_bn_stale
    changed = 0
    for name, buffer in expected.named_buffers():
        torch.testing.assert_close(checkpoint["state_dict"][f"generator_ema.{name}"], buffer)
        torch.testing.assert_close(dict(model.generator_ema.named_buffers())[name], buffer)
        changed += "running" in name and not torch.equal(buffer, stale[name])
    assert changed > 0  # the EMA's own statistics differ from the raw G's


@pytest.mark.slow
def test_ema_bn_latents_zero_copies_the_raw_statistics(make_cfg):
    _, model, _ = build(make_cfg("model=dcgan", "model.ema_bn_latents=0"))
    model.update_ema(images=100)
    assert not model._ema_bn_stale
    model.sample()
    for name, buffer in model.generator.named_buffers():
        torch.testing.assert_close(dict(model.generator_ema.named_buffers())[name], buffer)


@pytest.mark.slow
def test_ema_per_step_is_a_fixed_decay_per_g_step(make_cfg):
    _, model, _ = build(make_cfg("model.ema_per_step=0.9", "model.ema_kimg=0.001"))
    before = [p.clone() for p in model.generator_ema.parameters()]
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(1.0)
    model.update_ema(images=100_000)  # the image count does not matter, nor ema_kimg
    for b, e, p in zip(before, model.generator_ema.parameters(), model.generator.parameters(),
                       strict=True):
        torch.testing.assert_close(e, 0.9 * b + 0.1 * p)
