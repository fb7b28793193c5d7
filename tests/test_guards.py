"""Guards that stop a wrong experiment before it starts: batch norm in a critic with a gradient
penalty, fp16 with a penalty, PGGAN's per-device batch sizes under DDP; minibatch stddev in fp16."""

import logging

import pytest
import torch
from hydra.utils import instantiate

from ganlab.models.pggan import per_device_batches
from ganlab.nets.layers import MinibatchStdDev
from ganlab.training.fit import build
from ganlab.training.losses import Hinge, Wasserstein, check_precision_with_penalty
from ganlab.utils import ConfigError

PGGAN_TINY = ["model.start_resolution=8", "model.schedule.batch_size_dict=null"]


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [
    ["model=dcgan", "loss=wgan_gp"],
    ["model=pggan_thesis", "loss=wgan_gp_drift", *PGGAN_TINY],
])
def test_batchnorm_critic_with_gradient_penalty_is_refused_unless_allowed(make_cfg, overrides):
    with pytest.raises(ConfigError, match=r"batch norm.*loss\.gp_weight=10\.0.*"
                       r"model\.discriminator\.(batch_norm=false|norm=none).*"
                       r"model\.allow_batchnorm_with_penalty=true"):
        build(make_cfg(*overrides))
    build(make_cfg(*overrides, "model.allow_batchnorm_with_penalty=true"))  # explicit: allowed


@pytest.mark.slow
def test_critic_without_batchnorm_or_loss_without_penalty_builds(make_cfg):
    build(make_cfg("model=dcgan", "loss=wgan_gp", "model.discriminator.batch_norm=false"))
    build(make_cfg("model=dcgan", "loss=lsgan"))  # batch norm without a penalty is fine
    build(make_cfg("model=pggan", "loss=wgan_gp_drift", *PGGAN_TINY))  # paper: no batch norm


def test_fp16_with_a_penalty_is_refused(make_cfg):
    cfg = make_cfg("loss=wgan_gp", "model.discriminator.batch_norm=false",
                   "trainer.precision=16-mixed")
    with pytest.raises(ConfigError, match=r"trainer\.precision=16-mixed.*bf16-mixed"):
        build(cfg)
    with pytest.raises(ConfigError, match="loss.r1_gamma"):
        check_precision_with_penalty("16-mixed", Hinge(r1_gamma=1.0))
    check_precision_with_penalty("16-mixed", Hinge())  # no penalty: fp16 is fine
    check_precision_with_penalty("bf16-mixed", Wasserstein(gp_weight=10.0))


@pytest.mark.parametrize("group", [1, 4])
def test_minibatch_stddev_in_fp16_has_finite_gradients(group):
    x = torch.randn(4, 8, 4, 4).half()
    x[:] = x[:1]  # identical samples: variance exactly 0 in every group
    x.requires_grad_(True)
    y = MinibatchStdDev(group)(x)
    assert y.dtype == torch.float16 and y.shape == (4, 9, 4, 4)
    y.float().sum().backward()
    assert torch.isfinite(x.grad).all()


def test_pggan_batch_sizes_per_device_or_split_over_ranks(caplog):
    sizes = {4: 128, 8: 64, 16: 16}
    assert per_device_batches(sizes, 1, global_batch=True) == sizes
    with caplog.at_level(logging.WARNING, logger="ganlab"):
        assert per_device_batches(sizes, 4, global_batch=False) == sizes
    assert "global batch of each side is 4x the official one" in caplog.text
    assert "model.schedule.global_batch=true" in caplog.text
    assert per_device_batches(sizes, 4, global_batch=True) == {4: 32, 8: 16, 16: 4}
    with pytest.raises(ConfigError, match=r"global_batch=true.*\{16: 24\}.*32 processes"):
        per_device_batches({4: 128, 16: 24}, 32, global_batch=True)


def test_pggan_takes_the_global_batch_switch(make_cfg):
    module = instantiate(make_cfg("model=pggan", "model.start_resolution=8",
                                  "model.schedule.global_batch=true").model)
    assert module.global_batch and module.schedule_batch_sizes[8] == 128
