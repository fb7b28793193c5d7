"""SAGAN networks: shapes per resolution and per switch, attention placement, spectral norm."""

import pytest
import torch
from torch import nn

from ganlab.nets.layers import (
    MinibatchDiscrimination,
    MinibatchStdDev,
    SelfAttention,
    doubling_widths,
)
from ganlab.nets.sagan import Discriminator, Generator, attention_sides
from ganlab.utils import ConfigError

TINY = {"width": 2, "max_width": 8}


def nets(resolution: int, **options) -> tuple[Generator, Discriminator]:
    d_only = {k: options.pop(k) for k in list(options) if k.startswith("minibatch")}
    return (Generator(z_dim=8, resolution=resolution, **TINY, **options),
            Discriminator(resolution=resolution, **TINY, **options, **d_only))


def check_shapes(generator: Generator, disc: Discriminator, batch: int = 4) -> None:
    images = generator(torch.randn(batch, 8))
    r = generator.resolution
    assert images.shape == (batch, 3, r, r)
    assert images.min() >= -1 and images.max() <= 1
    assert disc(images).shape == (batch,)


@pytest.mark.parametrize("resolution", [16, 32, 64, 128])
def test_shapes_at_every_resolution(resolution):
    generator, disc = nets(resolution)
    check_shapes(generator, disc)
    side = min(32, resolution)  # default attention at 32x32 (the largest map below 32 px)
    assert list(generator.attention) == list(disc.attention) == [str(side)]


@pytest.mark.parametrize("option", [{"attention": []}, {"spectral_norm": False},
                                    {"batch_norm": False}])
def test_shapes_with_each_option_off(option):
    generator, disc = nets(16, **option)
    check_shapes(generator, disc)
    modules = [*generator.modules(), *disc.modules()]
    if "attention" in option:
        assert not any(isinstance(m, SelfAttention) for m in modules)
    if "spectral_norm" in option:
        assert not any(hasattr(m, "parametrizations") for m in modules)
    if "batch_norm" in option:
        assert not any(isinstance(m, nn.BatchNorm2d) for m in generator.modules())


def test_switches_are_on_by_default_and_cover_every_layer():
    generator, disc = nets(16)
    for net in (generator, disc):
        layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d,
                                                             nn.Linear))]
        assert all(hasattr(m, "parametrizations") for m in layers)  # attention convs included
    assert any(isinstance(m, nn.BatchNorm2d) for m in generator.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in disc.modules())


def test_discriminator_minibatch_options():
    _, disc = nets(16, minibatch_stddev=2, minibatch_discrimination=6)
    kinds = [type(m) for m in disc.minibatch]
    assert kinds == [MinibatchDiscrimination, MinibatchStdDev]
    assert disc(torch.randn(4, 3, 16, 16)).shape == (4,)
    assert disc.out.in_channels == disc.widths[4] + 6 + 1


def test_attention_placement_and_validation():
    generator, disc = nets(64, attention=[8, 32])
    assert list(generator.attention) == list(disc.attention) == ["8", "32"]
    assert generator.attention["32"].value.in_channels == generator.widths[32]
    check_shapes(generator, disc, batch=2)
    assert attention_sides(64, 16, "k") == [16]       # larger than the image: the largest map
    assert attention_sides(None, 16, "k") == []
    with pytest.raises(ConfigError, match=r"model.generator.attention=\[12\] is not valid"):
        Generator(resolution=16, attention=[12])


def test_widths_double_towards_4x4_and_are_capped():
    """SAGAN's maps go up to R: `width` at the image side."""
    assert doubling_widths(64, 64, 256) == {4: 256, 8: 256, 16: 256, 32: 128, 64: 64}
    assert Generator(resolution=32, width=64).widths == {4: 512, 8: 256, 16: 128, 32: 64}


def top_singular_values(net: nn.Module) -> list[float]:
    values = []
    for m in net.modules():
        if hasattr(m, "parametrizations"):
            weight = m.weight.detach()
            if isinstance(m, nn.ConvTranspose2d):  # output channels are dim 1
                weight = weight.transpose(0, 1)
            values.append(float(torch.linalg.matrix_norm(weight.flatten(1), 2)))
    return values


def test_spectral_norm_makes_the_top_singular_value_one():
    generator, disc = nets(16, attention=[8])
    with torch.no_grad():
        for net in (generator, disc):
            for name, p in net.named_parameters():
                if name.endswith("original"):
                    p.mul_(3.0)
    for _ in range(5):  # a few power iterations (one per training forward)
        disc(generator(torch.randn(4, 8)))
    values = top_singular_values(generator) + top_singular_values(disc)
    assert len(values) == 14
    # sigma is a power-iteration estimate: close top singular values converge slowly
    assert values == pytest.approx([1.0] * 14, abs=0.05)
    originals = [float(torch.linalg.matrix_norm(p.detach().flatten(1), 2))
                 for name, p in disc.named_parameters() if name.endswith("original")]
    assert min(originals) > 1.5  # the raw weights are far from 1: the norm did the work


def test_bad_resolution_is_a_config_error():
    with pytest.raises(ConfigError, match="power of two between 8 and 256"):
        Discriminator(resolution=48)
