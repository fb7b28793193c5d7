"""DCGAN networks (Radford et al. 2016) for any power-of-two resolution from 8 to 256."""

from __future__ import annotations

from torch import Tensor, nn

from ganlab.nets.layers import doubling_widths, minibatch_layers
from ganlab.utils import check_positive, check_resolution


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN init: conv weights N(0, 0.02), batch-norm scale N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """z [N, z_dim] -> images [N, 3, R, R] in [-1, 1] (tanh).

    Args:
        z_dim: latent size.
        resolution: output side R, a power of two in [8, 256].
        width: channels of the last hidden feature map (R/2); doubles towards 4x4.
        max_width: cap on any feature map's channels.
    """

    def __init__(
        self, z_dim: int = 100, resolution: int = 64, width: int = 64, max_width: int = 512
    ):
        super().__init__()
        check_resolution(resolution, 8, 256, "data.resolution")
        check_positive(width, "model.generator.width")
        self.z_dim, self.resolution = z_dim, resolution
        widths = list(doubling_widths(resolution // 2, width, max_width).values())  # 4 ... R/2
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim, widths[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], 3, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_dcgan_weights(self)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    """images [N, 3, R, R] in [-1, 1] -> logits [N] (no sigmoid).

    Mirrors the generator: strided 4x4 convs halving the size, LeakyReLU(0.2), batch norm on
    all but the first layer (disable with `batch_norm=False`, e.g. for WGAN-GP). Optional
    minibatch layers before the last conv (0 = off, the default): `minibatch_stddev` (group
    size) and `minibatch_discrimination` (kernels B, each of dimension
    `minibatch_discrimination_dim`); see ganlab.nets.layers.
    """

    def __init__(
        self, resolution: int = 64, width: int = 64, max_width: int = 512, batch_norm: bool = True,
        minibatch_stddev: int = 0, minibatch_discrimination: int = 0,
        minibatch_discrimination_dim: int = 5,
    ):
        super().__init__()
        check_resolution(resolution, 8, 256, "data.resolution")
        check_positive(width, "model.discriminator.width")
        self.resolution = resolution
        widths = list(doubling_widths(resolution // 2, width, max_width).values())[::-1]
        layers: list[nn.Module] = [
            nn.Conv2d(3, widths[0], 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [
                nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not batch_norm),
                nn.BatchNorm2d(c_out) if batch_norm else nn.Identity(),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        extra, channels = minibatch_layers(widths[-1], 4, minibatch_stddev,
                                           minibatch_discrimination, minibatch_discrimination_dim)
        layers += [*extra, nn.Conv2d(channels, 1, 4, 1, 0)]
        self.net = nn.Sequential(*layers)
        init_dcgan_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        assert x.shape[-1] == self.resolution, f"expected {self.resolution}px, got {tuple(x.shape)}"
        return self.net(x).flatten()
