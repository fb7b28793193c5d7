"""PGGAN networks, fade-in, equalized LR and the growth schedule (no training)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ganlab.models.pggan import GrowthPhase, GrowthSchedule
from ganlab.nets.layers import EqualizedConv2d, EqualizedLinear, MinibatchStdDev
from ganlab.nets.progressive import Discriminator, Generator, paper_widths
from ganlab.training.fit import build
from ganlab.utils import ConfigError

PG = ["model=pggan", "model.generator.z_dim=16", "model.schedule.batch_size_dict=null"]


def nets(resolution: int = 16, **kwargs) -> tuple[Generator, Discriminator]:
    generator = Generator(z_dim=16, resolution=resolution, width=8, **kwargs)
    return generator, Discriminator(resolution=resolution, width=8)


# --------------------------------------------------------------------------- networks
@pytest.mark.parametrize("resolution", [4, 16, 64])
def test_shapes_at_every_stage(resolution):
    generator, disc = nets(resolution)
    z = torch.randn(4, 16)
    for stage in range(generator.max_stage + 1):
        for alpha in (0.0, 0.5, 1.0):
            generator.set_stage(stage, alpha)
            disc.set_stage(stage, alpha)
            images = generator(z)
            side = 4 << stage
            assert images.shape == (4, 3, side, side)
            assert disc(images).shape == (4,)
    with pytest.raises(AssertionError, match="takes 4px"):
        disc.set_stage(0)
        disc(torch.zeros(2, 3, 8, 8))


def test_stage_and_alpha_are_buffers_restored_by_load_state_dict():
    generator, _ = nets()
    generator.set_stage(1, 0.25)
    state = generator.state_dict()
    assert int(state["stage"]) == 1 and float(state["alpha"]) == 0.25
    fresh, _ = nets()
    assert fresh.current_resolution == 16 and not fresh._fading  # full network by default
    fresh.load_state_dict(state)
    assert fresh.current_resolution == 8 and fresh._fading
    z = torch.randn(3, 16)
    torch.testing.assert_close(fresh(z), generator(z))


@pytest.mark.parametrize("stage", [1, 2])
def test_generator_fade_matches_the_paper(stage):
    generator, _ = nets()
    z = torch.randn(5, 16)
    side = 4 << stage
    generator.set_stage(stage - 1)
    old = generator(z)  # the smaller network's output, [5, 3, side/2, side/2]
    h = generator.features(z, side // 2)
    new = generator.to_rgb[str(side)](generator.blocks[str(side)](h))
    generator.set_stage(stage, 0.0)
    torch.testing.assert_close(generator(z), F.interpolate(old, scale_factor=2), rtol=0, atol=0)
    generator.set_stage(stage, 1.0)
    torch.testing.assert_close(generator(z), new)
    generator.set_stage(stage, 0.3)
    expected = 0.3 * new + 0.7 * F.interpolate(old, scale_factor=2)
    torch.testing.assert_close(generator(z), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stage", [1, 2])
def test_discriminator_fade_mirrors_the_generator(stage):
    _, disc = nets()
    side = 4 << stage
    x = torch.randn(8, 3, side, side)
    pooled = F.avg_pool2d(x, 2)
    disc.set_stage(stage - 1)
    old_logits = disc(pooled)  # the smaller network on the 2x-downsampled input
    disc.set_stage(stage, 0.0)
    torch.testing.assert_close(disc(x), old_logits, rtol=0, atol=0)

    def rest(h, from_side):  # blocks below `from_side`, then the 4x4 output
        while from_side > 4:
            h, from_side = disc.blocks[str(from_side)](h), from_side // 2
        return disc.output(h)

    new_features = disc.blocks[str(side)](disc.from_rgb[str(side)](x))
    old_features = disc.from_rgb[str(side // 2)](pooled)
    disc.set_stage(stage, 1.0)
    torch.testing.assert_close(disc(x), rest(new_features, side // 2))
    disc.set_stage(stage, 0.6)
    mixed = 0.6 * new_features + 0.4 * old_features
    torch.testing.assert_close(disc(x), rest(mixed, side // 2), rtol=1e-5, atol=1e-5)


def test_equalized_lr_weights_have_unit_variance_and_he_scale():
    conv = EqualizedConv2d(64, 64, 3, padding=1)
    dense = EqualizedLinear(256, 512)
    for layer, fan_in in ((conv, 64 * 9), (dense, 256)):
        assert abs(float(layer.weight.detach().std()) - 1.0) < 0.02
        assert abs(float(layer.weight.detach().mean())) < 0.02
        assert layer.scale == pytest.approx(math.sqrt(2) / math.sqrt(fan_in))
    x = torch.randn(2, 64, 5, 5)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight * conv.scale, conv.bias,
                                                 padding=1))
    generator, _ = Generator(z_dim=16, resolution=8, width=8), None
    assert generator.to_rgb["8"].scale == pytest.approx(1 / math.sqrt(8))  # toRGB gain 1
    assert generator.input.dense.scale == pytest.approx(math.sqrt(2) / 4 / math.sqrt(16))


def test_minibatch_stddev_appends_one_map():
    layer = MinibatchStdDev(group_size=4)
    x = torch.randn(8, 6, 4, 4)
    out = layer(x)
    assert out.shape == (8, 7, 4, 4)
    torch.testing.assert_close(out[:, :6], x)
    same = layer(torch.ones(8, 6, 4, 4))[:, 6]  # identical images: stddev ~ 0
    assert float(same.abs().max()) < 1e-3


def test_paper_widths_and_cap():
    assert paper_widths(1024) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128,
                                  256: 64, 512: 32, 1024: 16}
    generator = Generator(z_dim=16, resolution=64, widths={4: 64, 8: 32, 16: 32, 32: 16, 64: 8},
                          width=16)
    assert generator.channels == {4: 16, 8: 16, 16: 16, 32: 16, 64: 8}


def test_thesis_layers_build_and_copy():
    import copy

    generator = Generator(z_dim=16, resolution=8, width=8, norm="batch", equalized_lr=False,
                          spectral_norm=True, tanh=True)
    disc = Discriminator(resolution=8, width=8, norm="batch", equalized_lr=False,
                         spectral_norm=True, minibatch_stddev=0, minibatch_discrimination=4)
    images = copy.deepcopy(generator)(torch.randn(4, 16))
    assert images.shape == (4, 3, 8, 8) and images.abs().max() <= 1
    assert disc(images).shape == (4,)


# --------------------------------------------------------------------------- schedule
def official(kimg: float, start: int, final: int, stabilize: float, fade: float):
    """tkarras/progressive_growing_of_gans train.py TrainingSchedule, transcribed."""
    phase_dur = stabilize + fade
    phase_idx = int(np.floor(kimg / phase_dur))
    phase_kimg = kimg - phase_idx * phase_dur
    lod = np.log2(final) - np.floor(np.log2(start)) - phase_idx
    lod -= max(phase_kimg - stabilize, 0.0) / fade
    lod = max(lod, 0.0)
    resolution = 2 ** int(np.log2(final) - int(np.floor(lod)))
    alpha = 1.0 - (lod - np.floor(lod))  # weight of the newest block
    return phase_idx, resolution, alpha


@pytest.mark.parametrize(("start", "final", "stabilize", "fade"),
                         [(4, 64, 600, 600), (8, 32, 0.25, 0.125), (4, 16, 1.0, 2.5)])
def test_schedule_follows_the_official_formula(start, final, stabilize, fade):
    schedule = GrowthSchedule(start, final, stabilize, fade)
    num_growths = int(math.log2(final // start))
    phase_nimg = round((stabilize + fade) * 1000)
    boundaries = [p * phase_nimg + d for p in range(num_growths + 1)
                  for d in (0, 1, round(stabilize * 1000), round(stabilize * 1000) + 1)]
    grid = np.linspace(0, (num_growths + 2) * phase_nimg, 397).round().astype(int)
    for nimg in [*grid.tolist(), *boundaries]:
        stage, resolution, alpha = official(nimg / 1000, start, final, stabilize, fade)
        phase = schedule.at(nimg)
        assert phase.stage == min(stage, num_growths), nimg  # the last stage lasts
        assert phase.resolution == resolution, nimg
        assert phase.alpha == pytest.approx(alpha, abs=1e-9), nimg
    assert schedule.growth_end_nimg == round(num_growths * (stabilize + fade) * 1000)


def test_schedule_boundaries_and_per_resolution_overrides():
    schedule = GrowthSchedule(4, 32, stabilize_kimg=1, fade_kimg=2,
                              stabilize_kimg_dict={8: 3}, fade_kimg_dict={16: 0.5})
    # stage 0: 4 px [0, 1], fade 8 px (1, 3); stage 1: 8 px [3, 6], fade 16 px (6, 6.5);
    # stage 2: 16 px [6.5, 7.5], fade 32 px (7.5, 9.5); then 32 px
    expected = {
        0: (0, 4, 1.0), 1000: (0, 4, 1.0), 2000: (0, 8, 0.5), 2999: (0, 8, 0.9995),
        3000: (1, 8, 1.0), 6000: (1, 8, 1.0), 6250: (1, 16, 0.5), 6500: (2, 16, 1.0),
        7500: (2, 16, 1.0), 8000: (2, 32, 0.25), 9500: (3, 32, 1.0), 10**9: (3, 32, 1.0),
    }
    for nimg, (stage, resolution, alpha) in expected.items():
        assert schedule.at(nimg) == GrowthPhase(stage, resolution, pytest.approx(alpha)), nimg
    assert GrowthSchedule(16, 16, 1, 1).at(10**6) == GrowthPhase(0, 16, 1.0)  # nothing to grow


# --------------------------------------------------------------------------- bad input
@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.start_resolution=6", r"model.start_resolution=6 must be a power of two between 4"),
        ("model.start_resolution=32", r"model.start_resolution=32 .* data.resolution=16"),
        ("model.schedule.stabilize_kimg=0", r"model.schedule.stabilize_kimg=0 must be a positive"),
        ("model.schedule.fade_kimg=-1", r"model.schedule.fade_kimg=-1 must be a positive"),
        ("model.schedule.fade_kimg_dict={8:0}", r"fade_kimg_dict.8=0 must be a positive"),
        ("model.schedule.batch_size_dict={8:0}", r"batch_size_dict.8=0 must be a positive"),
        ("model.schedule.lr_g_dict={12:0.1}", r"lr_g_dict has a key 12: keys are resolutions"),
        ("model.generator.widths=null", None),  # null: the paper's widths, capped
        ("model.generator.widths={16:null}", r"widths.16=None must be a positive integer"),
        ("model.generator.width=0", r"model.generator.width=0 must be a positive number"),
        ("model.discriminator.norm=pixel", r"norm='pixel': choose one of \('batch', 'none'\)"),
        ("model.generator.spectral_norm=true", r"equalized_lr and .*spectral_norm are both true"),
    ],
)
def test_bad_config_fails_before_training(make_cfg, override, message):
    cfg = make_cfg(*PG, override)
    if message is None:
        build(cfg)
        return
    with pytest.raises(ConfigError, match=message):
        build(cfg)


def test_a_side_without_width_is_named():
    with pytest.raises(ConfigError, match=r"no channel width for side\(s\) \[16\] px"):
        Generator(resolution=16, widths={4: 8, 8: 8})


@pytest.mark.slow
def test_warns_when_the_run_ends_before_growth_does(make_cfg, caplog):
    """The run length comes from the config (`model.total_kimg: ${kimg}`), not from callbacks."""
    short = [*PG, "model.schedule.stabilize_kimg=0.016", "model.schedule.fade_kimg=0.032"]
    _, model, _ = build(make_cfg(*short, "kimg=0.05"))  # growth ends at 0.096 kimg
    assert model.hparams.total_kimg == 0.05
    with caplog.at_level("WARNING"):
        model.warn_if_run_ends_early()
    assert "stops at 0.1 kimg, before the schedule reaches 16 px" in caplog.text
    caplog.clear()
    _, model, _ = build(make_cfg(*short, "kimg=0.2"))
    model.warn_if_run_ends_early()
    assert "stops at" not in caplog.text


@pytest.mark.slow
def test_ema_half_life_bounded_by_a_fraction_of_the_phase(make_cfg):
    short = [*PG, "model.schedule.stabilize_kimg=0.016", "model.schedule.fade_kimg=0.032",
             "model.ema_kimg=10"]
    _, model, _ = build(make_cfg(*short))
    assert model.ema_kimg() == 10  # off by default
    _, model, _ = build(make_cfg(*short, "model.ema_phase_fraction=0.5"))
    for nimg, kimg in ((0, 0.008), (30, 0.016), (60, 0.008), (10**6, 10)):
        model.growth_phase = model.schedule.at(nimg)  # stabilise 16, fade 32, ..., final 16 px
        assert model.ema_kimg() == pytest.approx(kimg), nimg
