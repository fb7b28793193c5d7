"""model.adam_impl picks Adam's kernels (auto | foreach | fused | single) for the module and the
bench's plain loop; model.compile_mode reaches torch.compile; bad values are ConfigErrors."""

import math

import pytest
import torch
from hydra.utils import instantiate
from torch._dynamo.testing import CompileCounter

from ganlab.models.base import speed_up
from ganlab.training.fit import build, train
from ganlab.utils import ConfigError
from tests.conftest import read_metrics


def adam_flags(optimizer: torch.optim.Optimizer) -> tuple:
    group = optimizer.param_groups[0]
    return group["foreach"], group["fused"]


@pytest.mark.slow
@pytest.mark.parametrize(("impl", "flags"), [("auto", (None, None)), ("foreach", (True, None)),
                                             ("fused", (None, True)), ("single", (False, None))])
def test_optimizers_use_the_chosen_implementation(make_cfg, impl, flags):
    module = instantiate(make_cfg(f"model.adam_impl={impl}").model)
    optimizers = module.configure_optimizers()
    assert len(optimizers) == 2
    assert all(isinstance(opt, torch.optim.Adam) for opt in optimizers)
    assert [adam_flags(opt) for opt in optimizers] == [flags, flags]


def test_plain_loop_uses_the_chosen_implementation(make_cfg, monkeypatch):
    from ganlab.bench.paths import plain_step

    built = []
    original = torch.optim.Adam

    def spy(*args, **kwargs):
        built.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", spy)
    module = instantiate(make_cfg("model.adam_impl=fused").model)
    plain_step(module, "cpu", "32")
    assert [kwargs.get("fused") for kwargs in built] == [True, True]


@pytest.mark.slow
def test_fused_adam_trains(make_cfg, tmp_path):
    cfg = make_cfg("model.adam_impl=fused", "kimg=0.064", "callbacks.samples=null",
                   "metric=none")
    train(cfg)
    assert all(math.isfinite(v) for v in read_metrics(tmp_path / "run")["train/d_loss"])


@pytest.mark.parametrize(("key", "value"), [("adam_impl", "fuzed"), ("compile_mode", "fast")])
def test_bad_value_is_a_config_error(make_cfg, key, value):
    with pytest.raises(ConfigError, match=f"model.{key}='{value}'"):
        build(make_cfg(f"model.{key}={value}"))  # before any training


def test_compile_mode_reaches_torch_compile(make_cfg, monkeypatch):
    import torch._dynamo

    seen = []
    original = torch.compile

    def spy(model, **kwargs):
        seen.append(kwargs.get("mode"))
        return original(model, **kwargs)

    monkeypatch.setattr(torch, "compile", spy)
    module = instantiate(make_cfg("model.discriminator.batch_norm=false").model)
    speed_up(module, channels_last=False, compile=True, backend=CompileCounter(),
             mode="max-autotune-no-cudagraphs")
    assert seen == ["max-autotune-no-cudagraphs"] * 2
    torch._dynamo.reset()


def test_bench_compile_mode_becomes_a_model_override():
    from ganlab.bench.cli import parse_args

    args = parse_args(["--compile", "--compile-mode", "reduce-overhead", "--", "seed=1"])
    assert args.overrides == ["model.compile_mode=reduce-overhead", "seed=1"]
    with pytest.raises(SystemExit):
        parse_args(["--compile-mode", "reduce-overhead"])  # only with --compile
