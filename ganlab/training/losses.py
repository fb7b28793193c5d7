"""GAN losses as small objects on discriminator logits (never Sigmoid + BCELoss).

Every loss works on raw logits `[N]` (any float dtype; computed in float32) and exposes
`d_loss(real_logits, fake_logits)` and `g_loss(fake_logits)`. `discriminator_step` adds the
regularisers (gradient penalty, drift, R1) that need the discriminator itself. R1 runs either in
every D step (`r1_interval=1`) or lazily, as its own phase every `r1_interval` D steps
(`r1_step`, StyleGAN2); WGAN-GP's penalty is part of every D step (its interval is always 1).

With an augmentation (`augment=`, ganlab.augment), both steps apply it themselves, so that R1 is
the gradient w.r.t. the un-augmented reals through the augmentation (stylegan2-ada's loss.py);
WGAN-GP's penalty is taken on the augmented images D saw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganlab.utils import ConfigError, check_int

Discriminator = Callable[[Tensor], Tensor]
Augmentation = Callable[[Tensor], Tensor]


def gradient_penalty(discriminator: Discriminator, real: Tensor, fake: Tensor) -> Tensor:
    """WGAN-GP term E[(||grad D(x_hat)||_2 - 1)^2] on random interpolates of real and fake.

    real, fake: [N, C, H, W] (under bf16 autocast fakes are bf16: mixed in real's dtype).
    Returns a float32 scalar (weight not applied).
    """
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = torch.lerp(real.detach(), fake.detach().to(real.dtype), eps).requires_grad_(True)
    logits = discriminator(mixed).float()
    (grad,) = torch.autograd.grad(logits.sum(), mixed, create_graph=True)
    return (grad.float().flatten(1).norm(2, dim=1) - 1).square().mean()


def r1_penalty(real: Tensor, real_logits: Tensor) -> Tensor:
    """R1 term E[||grad_x D(x)||^2] on reals (Mescheder et al. 2018); `real` must require grad
    and `real_logits` [N] must be computed from it (through an augmentation, if any: then the
    gradient is w.r.t. the un-augmented reals, as in stylegan2-ada).

    Returns a float32 scalar (the gamma / 2 weight is not applied).
    """
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real, create_graph=True)
    return grad.float().square().flatten(1).sum(1).mean()


class GANLoss:
    """Base class. Subclasses define `d_loss` and `g_loss` on logits.

    Args:
        r1_gamma: weight of the R1 penalty on reals (gamma; the term is gamma / 2 * R1), 0 = off.
        r1_interval: D steps between R1 steps (StyleGAN2's lazy regularisation: 16, the config
            default); 1 = R1 in every D step (this class's default).
    """

    # D output where real and fake are equally likely (the optimal D's decision boundary): the
    # logged `d_real_sign` (ADA's overfitting heuristic r_t) is E[sign(D(real) - boundary)].
    # None: D's output has no such point (a Wasserstein critic), and ADA refuses the loss.
    decision_boundary: float | None = 0.0

    def __init__(self, r1_gamma: float = 0.0, r1_interval: int = 1) -> None:
        if r1_gamma < 0:
            raise ConfigError(f"loss.r1_gamma={r1_gamma} must be >= 0")
        check_int(r1_interval, "loss.r1_interval", 1)
        self.r1_gamma, self.r1_interval = r1_gamma, r1_interval

    @property
    def lazy_r1(self) -> bool:
        """True if R1 is a phase of its own every `r1_interval` D steps (not in every D step)."""
        return self.r1_gamma > 0 and self.r1_interval > 1

    @property
    def needs_double_backward(self) -> bool:
        """True if the D loss differentiates D's input gradient (R1 here; WGAN-GP's penalty too):
        D must then be twice differentiable (no compiled D, no fused attention kernels)."""
        return self.r1_gamma > 0

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        raise NotImplementedError

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        raise NotImplementedError

    def penalties(
        self, discriminator: Discriminator, real: Tensor, fake: Tensor, real_logits: Tensor,
        r1_real: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Weighted regularisation terms added to the D loss, by name (for logging).

        real, fake: the images D saw (augmented, if so); real_logits = D(real). r1_real: the
        tensor R1 differentiates w.r.t. (the un-augmented reals real_logits were computed from;
        default `real`)."""
        if self.r1_gamma > 0 and not self.lazy_r1:
            r1_real = real if r1_real is None else r1_real
            return {"r1": 0.5 * self.r1_gamma * r1_penalty(r1_real, real_logits)}
        return {}

    def discriminator_step(
        self, discriminator: Discriminator, real: Tensor, fake: Tensor,
        augment: Augmentation | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total D loss and its logged parts. real, fake: [N, C, H, W]; fake must be detached.

        augment: applied here to the reals, then the fakes, when given: R1 is then the gradient
        w.r.t. the un-augmented reals through it (stylegan2-ada); without it, real and fake are
        what D sees and R1 differentiates w.r.t. `real`. WGAN-GP's penalty interpolates the
        images D saw (augmented): the reference has no gradient penalty with augmentation, and
        the penalty's unit-norm target is about D's input, i.e. the augmented image."""
        real = real.detach().requires_grad_(self.r1_gamma > 0 and not self.lazy_r1)
        seen_real = real if augment is None else augment(real)
        seen_fake = fake if augment is None else augment(fake)
        real_logits = discriminator(seen_real)
        fake_logits = discriminator(seen_fake)
        terms = self.penalties(discriminator, seen_real, seen_fake, real_logits, r1_real=real)
        loss = self.d_loss(real_logits, fake_logits)
        total = loss + sum(terms.values()) if terms else loss
        logs = {
            "d_loss": total.detach(),
            "d_real": real_logits.detach().float().mean(),
            "d_fake": fake_logits.detach().float().mean(),
            **{name: value.detach() for name, value in terms.items()},
        }
        if self.decision_boundary is not None:
            shifted = real_logits.detach().float() - self.decision_boundary
            logs["d_real_sign"] = shifted.sign().mean()
        return total, logs

    def r1_step(
        self, discriminator: Discriminator, real: Tensor, augment: Augmentation | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The lazy R1 phase: `r1_interval * gamma / 2 * R1` on reals [N, C, H, W] (scaled by the
        interval, so its mean weight per D step is gamma / 2, as in StyleGAN2). With `augment`,
        D sees augment(real) and R1 is w.r.t. the un-augmented reals, through it. Returns the
        loss and {"r1": gamma / 2 * R1} for logging."""
        real = real.detach().requires_grad_(True)
        real_logits = discriminator(real if augment is None else augment(real))
        r1 = 0.5 * self.r1_gamma * r1_penalty(real, real_logits)
        # real_logits * 0 keeps D's output in the graph (no unused parameters under DDP)
        loss = r1 * self.r1_interval + 0.0 * real_logits.float().mean()
        return loss, {"r1": r1.detach()}


class NonSaturating(GANLoss):
    """Non-saturating BCE on logits (Goodfellow et al. 2014).

    Args:
        label_smoothing: optional [low, high]; real targets drawn uniformly from it per sample
            (one-sided: fake targets stay 0). The reference thesis used [0.8, 1.0].
    """

    def __init__(self, label_smoothing: Sequence[float] | None = None, r1_gamma: float = 0.0,
                 r1_interval: int = 1):
        super().__init__(r1_gamma, r1_interval)
        if label_smoothing is not None:
            low, high = (float(v) for v in label_smoothing)
            if not 0.0 <= low <= high <= 1.0:
                raise ConfigError(
                    f"loss.label_smoothing={list(label_smoothing)} must be [low, high] with "
                    "0 <= low <= high <= 1, e.g. [0.8, 1.0]"
                )
            label_smoothing = (low, high)
        self.label_smoothing = label_smoothing

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        real_logits, fake_logits = real_logits.float(), fake_logits.float()
        if self.label_smoothing is None:
            real_term = F.softplus(-real_logits).mean()
        else:
            low, high = self.label_smoothing
            targets = torch.empty_like(real_logits).uniform_(low, high)
            real_term = F.binary_cross_entropy_with_logits(real_logits, targets)
        return real_term + F.softplus(fake_logits).mean()

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        return F.softplus(-fake_logits.float()).mean()


class Hinge(GANLoss):
    """Hinge loss (Lim & Ye 2017; SAGAN, BigGAN)."""

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return F.relu(1 - real_logits.float()).mean() + F.relu(1 + fake_logits.float()).mean()

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        return -fake_logits.float().mean()


class LeastSquares(GANLoss):
    """LSGAN (Mao et al. 2017) with targets real = 1, fake = 0: 0.5 * E[(D - target)^2].

    The optimal D is p_data / (p_data + p_g), so real and fake are equally likely at 0.5.
    """

    decision_boundary = 0.5

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return 0.5 * (
            (real_logits.float() - 1).square().mean() + fake_logits.float().square().mean()
        )

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        return 0.5 * (fake_logits.float() - 1).square().mean()


class Wasserstein(GANLoss):
    """WGAN loss with gradient penalty (Gulrajani et al. 2017) and PGGAN's drift term.

    Args:
        gp_weight: lambda of the gradient penalty (10 in the paper), 0 = plain WGAN.
        drift: epsilon of the drift term eps * E[D(x_real)^2] (PGGAN: 0.001), 0 = off.
    """

    decision_boundary = None  # a critic's offset is arbitrary (drift only centres it on 0)

    def __init__(self, gp_weight: float = 10.0, drift: float = 0.0, r1_gamma: float = 0.0,
                 r1_interval: int = 1):
        super().__init__(r1_gamma, r1_interval)
        if gp_weight < 0 or drift < 0:
            raise ConfigError("loss.gp_weight and loss.drift must be >= 0")
        self.gp_weight = gp_weight
        self.drift = drift

    @property
    def needs_double_backward(self) -> bool:
        return self.gp_weight > 0 or super().needs_double_backward

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        real_logits = real_logits.float()
        loss = fake_logits.float().mean() - real_logits.mean()
        if self.drift > 0:
            loss = loss + self.drift * real_logits.square().mean()
        return loss

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        return -fake_logits.float().mean()

    def penalties(
        self, discriminator: Discriminator, real: Tensor, fake: Tensor, real_logits: Tensor,
        r1_real: Tensor | None = None,
    ) -> dict[str, Tensor]:
        terms = super().penalties(discriminator, real, fake, real_logits, r1_real)
        if self.gp_weight > 0:  # on the images D saw (augmented, if so)
            terms["gp"] = self.gp_weight * gradient_penalty(discriminator, real, fake)
        return terms


def has_gradient_penalty(loss: GANLoss) -> bool:
    """True if the loss penalises D's input gradient (WGAN-GP's penalty, R1)."""
    return loss.needs_double_backward


def check_batchnorm_with_penalty(discriminator: nn.Module, loss: GANLoss, allow: bool) -> None:
    """Raise ConfigError if D has batch norm and the loss has WGAN-GP's gradient penalty: the
    penalty is defined per sample, and batch norm makes each D output depend on the whole batch
    (Gulrajani et al. 2017 prescribe no batch norm in the critic). `allow` overrides."""
    gp_weight = getattr(loss, "gp_weight", 0.0)
    if allow or not gp_weight:
        return
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in discriminator.modules()):
        raise ConfigError(
            f"the discriminator has batch norm and the loss has a gradient penalty "
            f"(loss.gp_weight={gp_weight}); WGAN-GP's per-sample penalty needs a critic without "
            "batch norm. Fix: model.discriminator.batch_norm=false (DCGAN) or "
            "model.discriminator.norm=none (PGGAN), or another loss (e.g. loss=lsgan); to train "
            "this combination anyway: model.allow_batchnorm_with_penalty=true"
        )


def check_precision_with_penalty(precision: str, loss: GANLoss) -> None:
    """Raise ConfigError for fp16 mixed precision with a penalty on D's input gradient: the inner
    `autograd.grad` would run on unscaled fp16 values (underflow to 0, or inf) with no loss
    scaling of its own. bf16 has float32's range and needs no scaling."""
    if str(precision) in ("16-mixed", "16", "16-true") and has_gradient_penalty(loss):
        raise ConfigError(
            f"trainer.precision={precision} with a gradient penalty (loss.gp_weight / "
            "loss.r1_gamma): fp16 needs loss scaling, which the penalty's inner gradient does "
            "not get. Use trainer.precision=bf16-mixed (Ampere+ GPUs, no scaling needed) or "
            "32-true"
        )
