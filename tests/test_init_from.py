"""`init_from=RUN_OR_CKPT`: a new run from another run's G, D and EMA weights, with fresh
counters and optimizers; tensors of other shapes re-initialised and listed; other mismatches and
init_from with ckpt_path are ConfigErrors."""

from __future__ import annotations

import pytest
import torch

from ganlab.training.checkpoints import load_checkpoint
from ganlab.training.fit import build
from ganlab.training.fit import train as run_train
from ganlab.training.init_from import init_from
from ganlab.utils import ConfigError
from tests.test_conditioning_train import train

SHORT = ["kimg=0.032", "callbacks.samples=null"]


@pytest.fixture
def source(make_cfg):
    """A finished unconditional DCGAN run folder (2 iterations of 16)."""
    _, cfg = train(make_cfg, "model=dcgan", *SHORT, name="source")
    return cfg.paths.output_dir


def networks(module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in module.state_dict().items()
            if k.startswith(("generator.", "discriminator.", "generator_ema."))}


@pytest.mark.slow
def test_weights_loaded_counters_and_optimizers_fresh(make_cfg, source):
    saved = load_checkpoint(f"{source}/checkpoints/last.ckpt")
    cfg = make_cfg("model=dcgan", *SHORT, f"init_from={source}", "seed=3", name="new")
    _, module, _ = build(cfg)
    assert init_from(module, cfg.init_from) == []
    for name, tensor in networks(module).items():
        assert torch.equal(tensor, saved["state_dict"][name]), name
    assert module.nimg == 0 and module.iteration == 0
    run_train(cfg)  # the whole entry point: init_from, then training from image 0
    after = load_checkpoint(f"{cfg.paths.output_dir}/checkpoints/last.ckpt")
    assert after["ganlab"]["nimg"] == 32  # its own 2 batches, not the source's 32 + 32
    adam = after["optimizer_states"][0]["state"]
    assert int(adam[0]["step"]) == 2  # Adam's moments started fresh: 2 G steps


@pytest.mark.slow
def test_other_shapes_are_reinitialised_and_listed(make_cfg, source):
    cfg = make_cfg("model=dcgan", *SHORT, "data.labels=class", "model.conditioning=concat",
                   name="conditional")
    _, module, _ = build(cfg)
    fresh = networks(module)
    reinitialised = init_from(module, source)
    # G's first layer takes z + 4 label channels, D's first conv the image + 4 label planes
    assert reinitialised == ["discriminator.net.0.weight", "generator.net.0.weight",
                             "generator_ema.net.0.weight"]
    for name in reinitialised:
        assert torch.equal(module.state_dict()[name], fresh[name])
    saved = load_checkpoint(f"{source}/checkpoints/last.ckpt")["state_dict"]
    assert torch.equal(module.state_dict()["discriminator.net.2.weight"],
                       saved["discriminator.net.2.weight"])


@pytest.mark.slow
def test_another_architecture_or_with_ckpt_path_is_a_config_error(make_cfg, source, tmp_path):
    _, module, _ = build(make_cfg("model=sagan", *SHORT, name="sagan"))
    with pytest.raises(ConfigError, match="do not fit"):
        init_from(module, source)
    with pytest.raises(ConfigError, match="does not exist"):
        init_from(module, tmp_path / "nowhere")
    cfg = make_cfg("model=dcgan", *SHORT, f"init_from={source}",
                   f"ckpt_path={source}/checkpoints/last.ckpt", name="both")
    with pytest.raises(ConfigError, match="init_from and ckpt_path"):
        run_train(cfg)
