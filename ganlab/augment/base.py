"""The augmentation interface the training step calls, and the identity."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ganlab.utils import ConfigError

R1_WRT = ("reals", "augmented")


def check_r1_wrt(r1_wrt: str) -> str:
    """Return `r1_wrt` if it names what R1 may differentiate, else raise ConfigError."""
    if r1_wrt not in R1_WRT:
        raise ConfigError(
            f"model.augment.r1_wrt={r1_wrt!r} must be one of {' | '.join(R1_WRT)}: 'reals' takes "
            "R1 w.r.t. the un-augmented reals through the augmentation (stylegan2-ada, "
            "DiffAugment's StyleGAN2 loss), 'augmented' w.r.t. the augmented image D saw"
        )
    return r1_wrt


class Augment(nn.Module):
    """Differentiable augmentation: images [N, C, H, W] (in [-1, 1]) -> the same shape.

    Must be differentiable w.r.t. the images to any order (G's gradient flows through it, and R1
    differentiates D's gradient through it) and draw its random parameters per sample on the
    images' device, with no host synchronisation.

    `r1_wrt`: what the R1 penalty differentiates. 'reals' (default): the un-augmented reals, with
    the augmentation inside the differentiated function (stylegan2-ada's loss.py); 'augmented':
    the augmented image D saw. WGAN-GP's penalty is always taken on the augmented images.
    """

    r1_wrt: str = "reals"

    @property
    def r1_through(self) -> bool:
        """True if the loss must apply this augmentation itself (`augment=`), so that R1
        differentiates w.r.t. the un-augmented reals through it."""
        return self.r1_wrt == "reals"

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

    r1_through = False  # nothing to differentiate through: the loss gets the reals as they are

    def forward(self, images: Tensor) -> Tensor:
        return images
