import pytest
import torch

from ganlab.nets.dcgan import Discriminator, Generator
from ganlab.nets.layers import doubling_widths
from ganlab.utils import ConfigError


@pytest.mark.parametrize("resolution", [8, 16, 32, 64, 128, 256])
def test_shapes_at_every_resolution(resolution):
    generator = Generator(z_dim=8, resolution=resolution, width=2, max_width=8)
    disc = Discriminator(resolution=resolution, width=2, max_width=8)
    images = generator(torch.randn(2, 8))
    assert images.shape == (2, 3, resolution, resolution)
    assert images.min() >= -1 and images.max() <= 1
    assert disc(images).shape == (2,)


def test_widths_double_towards_4x4_and_are_capped():
    """DCGAN's maps end at R/2: `width` there, doubling towards 4x4."""
    assert doubling_widths(32, 64, 512) == {4: 512, 8: 256, 16: 128, 32: 64}
    assert list(doubling_widths(32, 64, 256).values()) == [256, 256, 128, 64]
    convs = [m for m in Generator(resolution=64, width=64).modules()
             if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [c.out_channels for c in convs] == [512, 256, 128, 64, 3]
    assert doubling_widths(2, 64, 512) == {}


@pytest.mark.parametrize("resolution", [4, 24, 512])
def test_bad_resolution_is_a_config_error(resolution):
    with pytest.raises(ConfigError, match="power of two between 8 and 256"):
        Generator(resolution=resolution)
