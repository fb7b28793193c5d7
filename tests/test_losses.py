import math

import pytest
import torch
from torch import nn

from ganlab.training.losses import (
    Hinge,
    LeastSquares,
    NonSaturating,
    Wasserstein,
    gradient_penalty,
    r1_penalty,
)
from ganlab.utils import ConfigError

REAL = torch.tensor([2.0, -1.0])
FAKE = torch.tensor([0.5, -3.0])


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_non_saturating_matches_hand_computed_bce():
    loss = NonSaturating()
    expected_d = (softplus(-2.0) + softplus(1.0)) / 2 + (softplus(0.5) + softplus(-3.0)) / 2
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx(expected_d, rel=1e-6)
    assert loss.g_loss(FAKE).item() == pytest.approx((softplus(-0.5) + softplus(3.0)) / 2, rel=1e-6)


def test_label_smoothing_draws_real_targets_in_range():
    loss = NonSaturating(label_smoothing=[0.8, 1.0])
    logits = torch.zeros(10000)
    # BCE at logit 0 is log 2 for any target; use a logit where the target matters instead.
    value = loss.d_loss(torch.full((10000,), 3.0), torch.full((10000,), -50.0)).item()
    # E[-t log s(3) - (1 - t) log(1 - s(3))] with t ~ U(0.8, 1): t mean 0.9.
    expected = 0.9 * softplus(-3.0) + 0.1 * softplus(3.0)
    assert value == pytest.approx(expected, rel=1e-2)
    assert loss.d_loss(logits, logits).item() == pytest.approx(2 * math.log(2), rel=1e-5)
    with pytest.raises(ConfigError, match="label_smoothing"):
        NonSaturating(label_smoothing=[0.9, 1.2])


def test_hinge_and_least_squares_and_wasserstein():
    assert Hinge().d_loss(REAL, FAKE).item() == pytest.approx((0 + 2) / 2 + (1.5 + 0) / 2)
    assert Hinge().g_loss(FAKE).item() == pytest.approx(1.25)
    ls = LeastSquares()
    assert ls.d_loss(REAL, FAKE).item() == pytest.approx(0.5 * ((1 + 4) / 2 + (0.25 + 9) / 2))
    assert ls.g_loss(FAKE).item() == pytest.approx(0.5 * (0.25 + 16) / 2)
    w = Wasserstein(drift=0.001)
    assert w.d_loss(REAL, FAKE).item() == pytest.approx(-1.25 - 0.5 + 0.001 * 2.5)
    assert w.g_loss(FAKE).item() == pytest.approx(1.25)


class Linear(nn.Module):
    """D(x) = <w, x>: its input gradient is w everywhere."""

    def __init__(self, scale: float):
        super().__init__()
        self.weight = nn.Parameter(torch.full((1, 3, 4, 4), scale))

    def forward(self, x):
        return (x * self.weight).flatten(1).sum(1)


def test_gradient_penalty_and_r1_on_a_linear_discriminator():
    disc = Linear(0.5)  # ||w|| = 0.5 * sqrt(48)
    real, fake = torch.randn(8, 3, 4, 4), torch.randn(8, 3, 4, 4)
    norm = 0.5 * math.sqrt(48)
    assert gradient_penalty(disc, real, fake).item() == pytest.approx((norm - 1) ** 2, rel=1e-5)
    real.requires_grad_(True)
    assert r1_penalty(real, disc(real)).item() == pytest.approx(norm**2, rel=1e-5)


def test_discriminator_step_adds_penalties_and_reports_parts():
    disc = Linear(0.5)
    real, fake = torch.randn(8, 3, 4, 4), torch.randn(8, 3, 4, 4)
    total, logs = Wasserstein(gp_weight=10.0).discriminator_step(disc, real, fake)
    expected = disc(fake).mean() - disc(real).mean() + 10 * (0.5 * math.sqrt(48) - 1) ** 2
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert set(logs) == {"d_loss", "d_real", "d_fake", "gp"}
    total, logs = NonSaturating(r1_gamma=2.0).discriminator_step(disc, real, fake)
    assert logs["r1"].item() == pytest.approx(48 * 0.25, rel=1e-5)  # gamma/2 * ||w||^2
    total.backward()  # the penalty is differentiable w.r.t. D's weights
    assert disc.weight.grad is not None


def test_lazy_r1_leaves_the_d_step_and_is_scaled_by_its_interval():
    disc = Linear(0.5)
    real, fake = torch.randn(4, 3, 4, 4), torch.randn(4, 3, 4, 4)
    lazy = NonSaturating(r1_gamma=2.0, r1_interval=16)
    assert lazy.lazy_r1 and not NonSaturating(r1_gamma=2.0).lazy_r1
    _, logs = lazy.discriminator_step(disc, real, fake)
    assert "r1" not in logs
    loss, logs = lazy.r1_step(disc, real)
    assert logs["r1"].item() == pytest.approx(48 * 0.25, rel=1e-5)  # gamma/2 * ||w||^2
    assert loss.item() == pytest.approx(16 * 48 * 0.25, rel=1e-5)
    loss.backward()
    assert disc.weight.grad is not None
    with pytest.raises(ConfigError, match="loss.r1_interval=0"):
        NonSaturating(r1_gamma=1.0, r1_interval=0)
