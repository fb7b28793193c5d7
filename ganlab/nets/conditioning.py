"""Label conditioning layers shared by the networks (nets/dcgan.py, sagan.py, progressive.py).

A label is a float vector y [N, K]: one-hot for a class (`data.labels=class`), multi-hot 0/1 for
attributes (`data.labels=attributes`). `model.conditioning` chooses how the networks use it:

    none        unconditional (no label input; the networks are exactly the unconditional ones)
    concat      the thesis's cDCGAN (Mirza and Osindero 2014): G's input is [z, y]; D's input is
                the image with K constant planes appended, plane k filled with y_k (ones in the
                plane of the image's class, zeros elsewhere)
    projection  conditional batch norm in G (per-class gain and bias) and a projection D (Miyato
                and Koyama 2018): D(x, y) = psi(phi(x)) + <embed(y), phi(x)>, phi the pooled
                features before D's last layer
    acgan       [z, y] into G (official PGGAN) and an auxiliary classifier head on D's features
                (Odena et al. 2017); its loss: ganlab.models.conditioning.AuxClassifierLoss

D reads its labels from `LabelledDiscriminator.bound_labels` when called without `y`: the
training loop binds the batch's labels once per iteration, so the losses (D(real), D(fake),
gradient penalties, R1) call D(x) as they do unconditionally.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ganlab.utils import ConfigError

CONDITIONINGS = ("none", "concat", "projection", "acgan")


def check_conditioning(conditioning: str, num_classes: int, key: str) -> str:
    """The mode to build: ConfigError unless `conditioning` is known, with labels (num_classes
    >= 1) unless none. `auto` without labels is none: a model instantiated from its config
    outside a run (where `fit.configure_labels` resolves `auto` from the data) is unconditional."""
    if conditioning == "auto" and num_classes == 0:
        return "none"
    if conditioning not in CONDITIONINGS:
        raise ConfigError(
            f"{key}={conditioning!r} is not one of {list(CONDITIONINGS)}: set e.g. "
            "`model.conditioning=concat` (or auto: the model's default with labels)"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ConfigError(f"model.num_classes={num_classes!r} must be an integer >= 0")
    if conditioning != "none" and num_classes == 0:
        raise ConfigError(
            f"{key}={conditioning} needs labels: set data.labels=class (or attributes with "
            "data.attributes=[...]), or model.conditioning=none"
        )
    return conditioning


def label_planes(x: Tensor, y: Tensor | None, num_classes: int) -> Tensor:
    """x [N, C, H, W] -> [N, C + K, H, W]: plane k is the constant y_k (cDCGAN's D input); no
    labels (y None) give zero planes."""
    n, _, h, w = x.shape
    if y is None:
        planes = x.new_zeros(n, num_classes, h, w)
    else:
        assert y.shape == (n, num_classes), f"labels {tuple(y.shape)}, not [{n}, {num_classes}]"
        planes = y.to(x.dtype)[:, :, None, None].expand(n, num_classes, h, w)
    return torch.cat([x, planes], 1)


def with_labels(z: Tensor, y: Tensor | None, num_classes: int) -> Tensor:
    """z [N, Z] -> [N, Z + K]: the label vector appended to the latent (zeros without labels)."""
    if y is None:
        y = z.new_zeros(z.shape[0], num_classes)
    assert y.shape == (z.shape[0], num_classes), (
        f"labels {tuple(y.shape)}, expected [{z.shape[0]}, {num_classes}]"
    )
    return torch.cat([z, y.to(z.dtype)], 1)


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose gain and bias depend on the label (SAGAN / BigGAN's conditional BN).

    x [N, C, H, W], y [N, K] -> BN(x) * (1 + y @ W_gain) + y @ W_bias. The label matrices start
    at zero, so the layer starts as plain batch norm with gain 1 and bias 0; a multi-hot label
    sums its attributes' rows. Without labels (y None) it is that plain batch norm.
    """

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gain = nn.Linear(num_classes, num_features, bias=False)
        self.bias = nn.Linear(num_classes, num_features, bias=False)
        nn.init.zeros_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        out = self.bn(x)
        if y is None:
            return out
        y = y.to(out.dtype)
        return out * (1 + self.gain(y))[:, :, None, None] + self.bias(y)[:, :, None, None]


class LabelSequential(nn.Sequential):
    """nn.Sequential that hands the labels to its ConditionalBatchNorm2d layers."""

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, y) if isinstance(layer, (ConditionalBatchNorm2d, LabelSequential)) else (
                layer(x)
            )
        return x


def batch_norm(channels: int, num_classes: int, conditional: bool) -> nn.Module:
    """BatchNorm2d, or ConditionalBatchNorm2d when `conditional` (projection conditioning)."""
    if conditional:
        return ConditionalBatchNorm2d(channels, num_classes)
    return nn.BatchNorm2d(channels)


class ProjectionHead(nn.Module):
    """<embed(y), phi>: features phi [N, C], labels y [N, K] -> [N] (Miyato and Koyama 2018).

    embed(y) = y @ E, E [K, C] (a class's row; a multi-hot label sums its rows). `wrap`: e.g.
    spectral norm for the embedding, as in the paper's code."""

    def __init__(self, num_features: int, num_classes: int,
                 wrap: Callable[[nn.Module], nn.Module] | None = None) -> None:
        super().__init__()
        self.embed = nn.Linear(num_classes, num_features, bias=False)
        nn.init.xavier_uniform_(self.embed.weight)
        if wrap is not None:
            wrap(self.embed)

    def forward(self, features: Tensor, y: Tensor) -> Tensor:
        return (self.embed(y.to(features.dtype)) * features).sum(1)


class LabelledDiscriminator(nn.Module):
    """Base of the discriminators: the conditioning switch, the bound labels and the heads.

    Subclasses call `setup_conditioning` first and `add_heads` last in __init__, prepend
    `input_planes(x, y)` before their first layer and end with `conditional_output(logits,
    features, y)`, features [N, C] pooled from the map their last layer reads. `class_logits`
    holds the auxiliary classifier's outputs [N, K] of the calls made while labels are bound
    (acgan; the training loop clears it).
    """

    conditioning: str = "none"
    num_classes: int = 0

    def setup_conditioning(self, conditioning: str, num_classes: int) -> None:
        """The switch and the label state (call before building the first layer)."""
        conditioning = check_conditioning(conditioning, num_classes, "model.conditioning")
        self.conditioning, self.num_classes = conditioning, num_classes
        self.bound_labels: Tensor | None = None  # set per iteration by the training loop
        self.class_logits: list[Tensor] = []  # acgan: classifier outputs of the calls so far

    def add_heads(self, num_features: int,
                  wrap: Callable[[nn.Module], nn.Module] | None = None) -> None:
        """The projection embedding or the auxiliary classifier on features [N, num_features]
        (call after the other layers, so an unconditional net draws its init as before)."""
        if self.conditioning == "projection":
            self.projection = ProjectionHead(num_features, self.num_classes, wrap)
        elif self.conditioning == "acgan":
            self.classifier = nn.Linear(num_features, self.num_classes)
            if wrap is not None:
                wrap(self.classifier)

    @property
    def input_channels(self) -> int:
        """Channels of the first layer's input: 3, plus K label planes with concat."""
        return 3 + (self.num_classes if self.conditioning == "concat" else 0)

    def labels(self, y: Tensor | None) -> Tensor | None:
        return self.bound_labels if y is None else y

    def input_planes(self, x: Tensor, y: Tensor | None) -> Tensor:
        """The image, with K label planes appended under concat conditioning."""
        if self.conditioning != "concat":
            return x
        return label_planes(x, y, self.num_classes)

    def conditional_output(self, logits: Tensor, features: Tensor, y: Tensor | None) -> Tensor:
        """logits [N] -> with the projection term (projection) or the classifier recorded
        (acgan); features [N, C]."""
        if self.conditioning == "projection" and y is not None:
            return logits + self.projection(features, y)
        if self.conditioning == "acgan" and self.bound_labels is not None:  # training only
            self.class_logits.append(self.classifier(features))
        return logits
