"""Differentiable augmentation of every image D sees (`model.augment=none|diffaug|ada`).

The module applies `augment` to reals and fakes in both the D and the G step, so G's gradient
flows through it and D never sees an un-augmented image; the transforms are per sample, on the
device, at whatever resolution the batch has (PGGAN: every stage, fades included). After each D
step the module calls `after_d_step` with D's overfitting statistic (ADA adjusts its p from it).
"""

from __future__ import annotations

from typing import Any

from ganlab.augment.ada import ADA
from ganlab.augment.base import Augment, NoAugment
from ganlab.augment.diffaug import DiffAugment
from ganlab.utils import ConfigError

__all__ = ["ADA", "Augment", "DiffAugment", "NoAugment", "resolve_augment"]

MODES = {"none": NoAugment, "diffaug": DiffAugment, "ada": ADA}


def resolve_augment(augment: Augment | str | None, loss: Any) -> Augment:
    """The module's augmentation from what Hydra passed: an Augment (conf/model/augment/*.yaml),
    a mode name (`model.augment=ada`: that mode with its defaults) or None (identity).

    Raises ConfigError for an unknown name or a loss the augmentation cannot work with.
    """
    if augment is None:
        augment = "none"
    if isinstance(augment, str):
        if augment not in MODES:
            raise ConfigError(
                f"model.augment={augment!r} is not a mode: choose one of {' | '.join(MODES)}, "
                "e.g. model.augment=ada (and to set its keys: model/augment=ada "
                "model.augment.target=0.6)"
            )
        augment = MODES[augment]()
    if not isinstance(augment, Augment):
        raise ConfigError(
            f"model.augment={augment!r} must instantiate a ganlab.augment.Augment "
            "(none | diffaug | ada)"
        )
    augment.check_loss(loss)
    return augment
