"""The GPU fast-path switches, checked on the CPU: model.channels_last, model.compile (PGGAN's
fade does not recompile per step), tf32."""

import math

import pytest
import torch
from hydra.utils import instantiate
from torch._dynamo.testing import CompileCounter

from ganlab.models.base import speed_up
from ganlab.training.fit import build, set_tf32, train
from tests.conftest import read_metrics

PGGAN = ["model=pggan", "loss=lsgan", "model.start_resolution=8", "model.generator.z_dim=16",
         "model.schedule.stabilize_kimg=0.05", "model.schedule.fade_kimg=0.1",
         "model.schedule.batch_size_dict=null", "callbacks.samples=null",
         "callbacks.checkpoint=null", "metric=none"]


@pytest.mark.slow
def test_channels_last_trains_and_keeps_checkpoint_keys(make_cfg, tmp_path):
    cfg = make_cfg("model.channels_last=true", "kimg=0.064", "callbacks.samples=null",
                   "metric=none")
    _, module, _ = build(cfg)
    plain = instantiate(make_cfg(name="plain").model)
    assert module.state_dict().keys() == plain.state_dict().keys()
    convs = [p for net in (module.generator, module.discriminator, module.generator_ema)
             for p in net.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    train(cfg)
    assert all(math.isfinite(v) for v in read_metrics(tmp_path / "run")["train/d_loss"])


@pytest.mark.slow
def test_compile_skips_d_under_double_backward(make_cfg):
    for loss, d_compiled in (("loss=hinge", True), ("loss=wgan_gp", False),
                             ("loss.r1_gamma=1", False)):
        module = instantiate(make_cfg(loss, "model.discriminator.batch_norm=false").model)
        speed_up(module, channels_last=False, compile=True, backend="eager")
        assert module.generator._compiled_call_impl is not None, loss
        assert (module.discriminator._compiled_call_impl is not None) == d_compiled, loss
        assert module.generator_ema._compiled_call_impl is None  # samples stay eager


@pytest.mark.slow
def test_pggan_fade_compiles_once_per_phase_not_per_step(make_cfg, tmp_path):
    """8 px stable -> fade into 16 px (alpha changes every step) -> 16 px stable: one graph per
    phase for G, two for D (its D-step and G-step calls), whatever the number of steps."""
    cfg = make_cfg(*PGGAN, "kimg=0.25")
    datamodule, module, trainer = build(cfg)
    counter = CompileCounter()
    speed_up(module, channels_last=False, compile=True, backend=counter)
    trainer.fit(module, datamodule=datamodule)
    alphas = read_metrics(tmp_path / "run")["train/alpha"]
    fading = [a for a in alphas if 0 < a < 1]
    assert len(set(fading)) >= 4  # alpha moved on every step of the fade
    assert max(alphas) == 1.0 and module.generator.current_resolution == 16
    assert counter.frame_count == 3 * 3, counter.frame_count  # 3 phases x (G + 2 D graphs)


def test_tf32_switch():
    before = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    try:
        set_tf32(True)
        assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32
        set_tf32(False)
        assert torch.get_float32_matmul_precision() == "highest"
        assert not torch.backends.cudnn.allow_tf32
        set_tf32(None)  # leaves the settings alone
        assert torch.get_float32_matmul_precision() == "highest"
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cudnn.allow_tf32 = before[1]
