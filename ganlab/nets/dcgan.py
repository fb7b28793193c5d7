"""DCGAN networks (Radford et al. 2016) for any power-of-two resolution from 8 to 256."""

from __future__ import annotations

from torch import Tensor, nn

from ganlab.nets.conditioning import (
    LabelledDiscriminator,
    LabelSequential,
    batch_norm,
    check_conditioning,
    with_labels,
)
from ganlab.nets.layers import doubling_widths, minibatch_layers
from ganlab.utils import check_positive, check_resolution


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN init: conv weights N(0, 0.02), batch-norm scale N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """z [N, z_dim] (+ labels y [N, K]) -> images [N, 3, R, R] in [-1, 1] (tanh).

    Args:
        z_dim: latent size.
        resolution: output side R, a power of two in [8, 256].
        width: channels of the last hidden feature map (R/2); doubles towards 4x4.
        max_width: cap on any feature map's channels.
        conditioning: none | concat / acgan (the input is [z, y], cDCGAN) | projection
            (conditional batch norm); see ganlab.nets.conditioning.
        num_classes: label length K (0 without labels).
    """

    def __init__(
        self, z_dim: int = 100, resolution: int = 64, width: int = 64, max_width: int = 512,
        conditioning: str = "none", num_classes: int = 0,
    ):
        super().__init__()
        check_resolution(resolution, 8, 256, "data.resolution")
        check_positive(width, "model.generator.width")
        conditioning = check_conditioning(conditioning, num_classes, "model.conditioning")
        self.z_dim, self.resolution = z_dim, resolution
        self.conditioning, self.num_classes = conditioning, num_classes
        self.label_input = conditioning in ("concat", "acgan")  # [z, y] is the input
        cbn = conditioning == "projection"
        widths = list(doubling_widths(resolution // 2, width, max_width).values())  # 4 ... R/2
        c_z = z_dim + (num_classes if self.label_input else 0)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(c_z, widths[0], 4, 1, 0, bias=False),
            batch_norm(widths[0], num_classes, cbn),
            nn.ReLU(inplace=True),
        ]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                batch_norm(c_out, num_classes, cbn),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], 3, 4, 2, 1), nn.Tanh()]
        self.net = LabelSequential(*layers)
        init_dcgan_weights(self)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.label_input:
            z = with_labels(z, y, self.num_classes)
        return self.net(z[:, :, None, None], y)


class Discriminator(LabelledDiscriminator):
    """images [N, 3, R, R] in [-1, 1] (+ labels y [N, K]) -> logits [N] (no sigmoid).

    Mirrors the generator: strided 4x4 convs halving the size, LeakyReLU(0.2), batch norm on
    all but the first layer (disable with `batch_norm=False`, e.g. for WGAN-GP). Optional
    minibatch layers before the last conv (0 = off, the default): `minibatch_stddev` (group
    size) and `minibatch_discrimination` (kernels B, each of dimension
    `minibatch_discrimination_dim`); see ganlab.nets.layers. Conditioning (`conditioning`,
    `num_classes`): concat appends K label planes to the image; projection and acgan read the
    4x4 map before the last conv, summed over positions (ganlab.nets.conditioning).
    """

    def __init__(
        self, resolution: int = 64, width: int = 64, max_width: int = 512, batch_norm: bool = True,
        minibatch_stddev: int = 0, minibatch_discrimination: int = 0,
        minibatch_discrimination_dim: int = 5, conditioning: str = "none", num_classes: int = 0,
    ):
        super().__init__()
        check_resolution(resolution, 8, 256, "data.resolution")
        check_positive(width, "model.discriminator.width")
        self.resolution = resolution
        widths = list(doubling_widths(resolution // 2, width, max_width).values())[::-1]
        self.setup_conditioning(conditioning, num_classes)
        layers: list[nn.Module] = [
            nn.Conv2d(self.input_channels, widths[0], 4, 2, 1),
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
        self.add_heads(channels)
        init_dcgan_weights(self)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        assert x.shape[-1] == self.resolution, f"expected {self.resolution}px, got {tuple(x.shape)}"
        if self.conditioning == "none":
            return self.net(x).flatten()
        y = self.labels(y)
        h = self.input_planes(x, y)
        for layer in self.net[:-1]:
            h = layer(h)
        return self.conditional_output(self.net[-1](h).flatten(), h.sum((2, 3)), y)
