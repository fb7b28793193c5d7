"""The augmentation interface the training step calls, and the identity."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn


class Augment(nn.Module):
    """Differentiable augmentation: images [N, C, H, W] (in [-1, 1]) -> the same shape.

    Must be differentiable w.r.t. the images (G's gradient flows through it) and draw its random
    parameters per sample on the images' device, with no host synchronisation.
    """

    def forward(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    def after_d_step(self, real_sign: Tensor | None, batch_size: int) -> None:
        """Called once per D step with E[sign(D(real) - boundary)] over the batch (a 0-dim
        tensor on the device; None when the loss has no decision boundary) and the batch size."""

    def logs(self) -> dict[str, Tensor]:
        """Scalars logged as `train/<name>` at logging steps (e.g. ADA's p and r_t)."""
        return {}

    def check_loss(self, loss: Any) -> None:
        """Raise ConfigError if this augmentation cannot work with `loss` (a GANLoss)."""


class NoAugment(Augment):
    """`model.augment=none`: the identity, at zero cost (the same tensor comes back)."""

    def forward(self, images: Tensor) -> Tensor:
        return images
