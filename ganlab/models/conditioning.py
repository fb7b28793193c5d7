"""The conditioning piece of the GAN module (models/base.py): labels out of the batch, labels bound
to D for an iteration, labels for fakes and sample grids, and AC-GAN's auxiliary loss.

The networks do the conditioning itself (ganlab.nets.conditioning); the training loop only asks
this piece for G's labels and binds D's, whatever the model and mode: no per-model branches.
Fakes are drawn with the batch's own labels, so D sees the same labels on both sides and the
labels of the fakes follow the data.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganlab.nets.conditioning import check_conditioning
from ganlab.utils import ConfigError

GRID_COLUMNS = 8  # images per row of a conditional sample grid (the same latents in every row)
MAX_GRID_ROWS = 16  # rows (classes or attribute combinations) of a conditional grid at most


def split_batch(batch: Tensor | Sequence[Tensor]) -> tuple[Tensor, Tensor | None]:
    """(images, labels [B, K] or None) of a batch: a plain tensor without labels."""
    if isinstance(batch, Tensor):
        return batch, None
    images, labels = batch
    return images, labels


class Labels:
    """What a conditional module knows about its labels (stored in its hyperparameters, so in
    every checkpoint): kind (class | attributes), names, training-set frequencies.

    Args:
        kind: class (one-hot) | attributes (multi-hot).
        names: the K class or attribute names.
        frequencies: class shares / each attribute's share of 1s in the training split (None:
            uniform classes, attributes at 0.5).
    """

    def __init__(self, kind: str, names: Sequence[str],
                 frequencies: Sequence[float] | None = None) -> None:
        if kind not in ("class", "attributes"):
            raise ConfigError(f"label kind {kind!r} must be class or attributes")
        self.kind, self.names = kind, [str(n) for n in names]
        k = len(self.names)
        default = [1.0 / k if kind == "class" else 0.5] * k
        self.frequencies = torch.tensor(list(frequencies or default), dtype=torch.float64)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def multi_label(self) -> bool:
        return self.kind == "attributes"

    def random(self, num: int, device: torch.device | str = "cpu",
               generator: torch.Generator | None = None) -> Tensor:
        """Labels [num, K] for fakes, drawn from the training frequencies (attributes:
        independently per attribute). `generator`: a CPU generator (None: the global RNG)."""
        if self.multi_label:
            draw = torch.rand(num, self.num_classes, generator=generator, dtype=torch.float64)
            return (draw < self.frequencies).float().to(device)
        weights = self.frequencies.clamp_min(1e-12)
        index = torch.multinomial(weights, num, replacement=True, generator=generator)
        return F.one_hot(index, self.num_classes).float().to(device)

    def of_class(self, name_or_index: str | int, num: int = 1) -> Tensor:
        """One-hot labels [num, K] of a class given by name (or index); ConfigError listing the
        known classes for an unknown one."""
        index = self.index(name_or_index)
        return F.one_hot(torch.full((num,), index), self.num_classes).float()

    def index(self, name_or_index: str | int) -> int:
        name = str(name_or_index)
        if name in self.names:
            return self.names.index(name)
        if name.isdigit() and int(name) < self.num_classes:
            return int(name)
        raise ConfigError(
            f"unknown {'attribute' if self.multi_label else 'class'} {name!r}; known: "
            f"{', '.join(self.names)}"
        )

    def of_attributes(self, values: Mapping[str, int], num: int = 1) -> Tensor:
        """Multi-hot labels [num, K] with the given attributes set to 0 / 1 (others 0)."""
        label = torch.zeros(self.num_classes)
        for name, value in values.items():
            if int(value) not in (0, 1):
                raise ConfigError(f"attribute {name}={value}: values are 0 or 1")
            label[self.index(name)] = float(value)
        return label.expand(num, -1).clone()

    def grid_rows(self) -> tuple[Tensor, list[str]]:
        """(labels [R, K], a name per row) of a sample grid: one row per class (the first
        MAX_GRID_ROWS), or per attribute combination (all 2^K for K <= 3; else none, then each
        attribute alone)."""
        k = self.num_classes
        if not self.multi_label:
            rows = min(k, MAX_GRID_ROWS)
            return torch.eye(k)[:rows], self.names[:rows]
        if k <= 3:
            combos = list(itertools.product((0, 1), repeat=k))
        else:
            combos = [tuple([0] * k)] + [tuple(int(i == j) for i in range(k)) for j in range(k)]
        combos = combos[:MAX_GRID_ROWS]
        names = [",".join(f"{n}={v}" for n, v in zip(self.names, combo)) for combo in combos]
        return torch.tensor(combos, dtype=torch.float32), names

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "names": list(self.names),
                "frequencies": [float(f) for f in self.frequencies]}


def classification_loss(logits: Tensor, labels: Tensor, multi_label: bool) -> Tensor:
    """Cross-entropy of class logits [N, K] against one-hot labels, or per-attribute binary
    cross-entropy against multi-hot ones (float32 scalar)."""
    logits = logits.float()
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, labels.float())
    return F.cross_entropy(logits, labels.argmax(1))


class AuxClassifierLoss:
    """AC-GAN's loss around a GANLoss (model.conditioning=acgan): D's step adds
    cond_weight * (CE(classifier(real), y) + CE(classifier(fake), y)) and G's loss
    cond_weight * CE(classifier(fake), y), as the official PGGAN's `cond_weight` label penalty.
    The classifier outputs are those D recorded (`class_logits`) while the labels were bound:
    D's step calls D on reals first, then fakes (GANLoss.discriminator_step). Everything else is
    the wrapped loss's."""

    def __init__(self, loss: Any, discriminator: nn.Module, weight: float, multi_label: bool):
        self.loss, self.discriminator = loss, discriminator
        self.weight, self.multi_label = float(weight), multi_label

    def __getattr__(self, name: str) -> Any:
        if name in ("loss", "__setstate__"):  # pickling / copy: no recursion before __init__
            raise AttributeError(name)
        return getattr(self.loss, name)

    def _ce(self, logits: Tensor) -> Tensor:
        return classification_loss(logits, self.discriminator.bound_labels, self.multi_label)

    def discriminator_step(self, discriminator, real: Tensor, fake: Tensor, **kwargs: Any):
        records = self.discriminator.class_logits
        records.clear()
        total, logs = self.loss.discriminator_step(discriminator, real, fake, **kwargs)
        aux = self._ce(records[0]) + self._ce(records[1])
        total = total + self.weight * aux
        logs = {**logs, "d_loss": total.detach(), "d_class": aux.detach()}
        records.clear()
        return total, logs

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        records = self.discriminator.class_logits
        aux = self._ce(records[-1])
        records.clear()
        return self.loss.g_loss(fake_logits) + self.weight * aux


@contextmanager
def bound_labels(discriminator: nn.Module, labels: Tensor | None) -> Iterator[None]:
    """D(x) reads `labels` [B, K] inside the block (its losses call D without labels); cleared
    after, with any recorded classifier outputs."""
    if labels is None or not hasattr(discriminator, "bound_labels"):
        yield
        return
    discriminator.bound_labels = labels
    try:
        yield
    finally:
        discriminator.bound_labels = None
        discriminator.class_logits.clear()


def attach_conditioning(module: nn.Module, conditioning: str, num_classes: int,
                        labels: Mapping[str, Any] | None, cond_weight: float) -> Labels | None:
    """The module's conditioning: checks that G and D were built with the same mode and label
    length, wraps `module.loss` in AuxClassifierLoss for acgan, and returns the Labels (None when
    unconditional). ConfigError for a mismatch."""
    conditioning = check_conditioning(conditioning, num_classes, "model.conditioning")
    for name in ("generator", "discriminator"):
        net = getattr(module, name)
        built = getattr(net, "conditioning", "none")
        if built != conditioning or getattr(net, "num_classes", 0) != num_classes:
            raise ConfigError(
                f"model.{name} was built with conditioning={built} for "
                f"{getattr(net, 'num_classes', 0)} labels, the model with {conditioning} for "
                f"{num_classes}: set model.{name}.conditioning=${{model.conditioning}} and "
                f"model.{name}.num_classes=${{model.num_classes}}"
            )
    if conditioning == "none":
        return None
    if cond_weight < 0:
        raise ConfigError(f"model.cond_weight={cond_weight!r} must be >= 0")
    info = Labels(**labels) if labels else Labels("class", [str(k) for k in range(num_classes)])
    if info.num_classes != num_classes:
        raise ConfigError(
            f"model.num_classes={num_classes} but the labels name {info.num_classes}: "
            f"{info.names}"
        )
    if conditioning == "acgan":
        module.loss = AuxClassifierLoss(module.loss, module.discriminator, cond_weight,
                                        info.multi_label)
    return info


def configure_labels(cfg: Any, datamodule: Any) -> None:
    """Fill the run config's conditioning from the data, before the model is built:
    model.conditioning (`auto`: none without labels, else the model class's
    `default_conditioning`), model.num_classes and model.labels ({kind, names, frequencies}).
    ConfigError for a conditioning without labels; a warning for labels no model uses."""
    from hydra.utils import get_class
    from omegaconf import open_dict

    from ganlab.logs import get_logger

    info = datamodule.label_info() if hasattr(datamodule, "label_info") else None
    model = cfg.model
    mode = model.get("conditioning", "none")
    if mode == "auto":
        default = getattr(get_class(model._target_), "default_conditioning", "concat")
        mode = "none" if info is None else default
    if info is None and mode != "none":
        raise ConfigError(
            f"model.conditioning={mode} needs labels from the data: set data.labels=class "
            "(shapes, folder) or data.labels=attributes data.attributes=[...] (celeba)"
        )
    if info is not None and mode == "none":
        get_logger(__name__).warning(
            "data.labels=%s but model.conditioning=none: the labels are not used", info.kind)
    with open_dict(cfg):
        model.conditioning = mode
        model.num_classes = info.num_classes if mode != "none" else 0
        model.labels = None if mode == "none" else {
            "kind": info.kind, "names": list(info.names), "frequencies": list(info.frequencies)}
