"""ADA against reference computations (issue 20 item 5, stylegan2-ada's training/augment.py):
one translation gate per image, the band-limited resampling (sym6 filter, reflect padding, 2x
grid, filtered downsampling) against a from-scratch computation and a band-limited test image,
images that do not move kept bit for bit, second derivatives through the augmentation, and R1
w.r.t. the un-augmented reals against a direct torch.autograd.grad computation."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import gradgradcheck

from ganlab.augment import ADA, DiffAugment
from ganlab.augment.ada import (
    RESAMPLERS,
    SYM6,
    SYM6_CENTRE,
    axis_matrices,
    downsample2x,
    is_blit,
    resample_bandlimited,
    resample_moved,
    sym6_taps,
    upsample2x,
)
from ganlab.training import losses
from ganlab.training.losses import NonSaturating, Wasserstein

GEOMETRY_ONLY = dict(brightness_std=0, contrast_std=0, lumaflip=False, hue=False,
                     saturation_std=0)
NOTHING = dict(xflip=False, rotate90=False, xint=0, scale_std=0, rotate=False, aniso_std=0,
               xfrac_std=0, **GEOMETRY_ONLY)


def ada_at(p: float, **kwargs) -> ADA:
    ada = ADA(**kwargs)
    ada.p.fill_(p)
    return ada


# ----------------------------------------------------------------------------- (a) gates
@pytest.mark.parametrize("kind", ["xint", "xfrac_std"])
def test_translation_draws_one_gate_per_image_for_both_axes(kind):
    torch.manual_seed(0)
    n, p = 20000, 0.3
    ada = ada_at(p, **{**NOTHING, kind: 0.125})
    g = ada.geometry(n, 32, torch.empty(0))
    tx, ty = g[:, 0, 2], g[:, 1, 2]
    if kind == "xfrac_std":  # continuous: a gated-on image moves along both axes, almost surely
        assert torch.equal(tx != 0, ty != 0)
    moved = ((tx != 0) | (ty != 0)).float().mean().item()
    # P(moved) = p (less the draws that round to no shift: 1/8 per axis at 32 px, both 1/64);
    # one gate per axis would move 1 - (1 - p)^2 = 51%. Binomial std at n = 20000: 0.0032.
    expected = p * (1 - 1 / 64) if kind == "xint" else p
    assert moved == pytest.approx(expected, abs=0.015)


# ----------------------------------------------------------------------------- (b) filters
def test_sym6_is_the_orthonormal_wavelet_filter():
    h = np.array(SYM6)
    assert h.sum() == pytest.approx(math.sqrt(2), abs=1e-11)  # the constants have 12 digits
    for shift in range(6):  # orthonormal to its even shifts: 2x down after 2x up = identity
        inner = np.dot(h[: len(h) - 2 * shift], h[2 * shift:])
        assert inner == pytest.approx(float(shift == 0), abs=1e-11)
    assert abs(SYM6_CENTRE - 5.098) < 1e-3  # centre of mass, in taps


def reference_up(x: np.ndarray) -> np.ndarray:
    """1-D: reflect padding by len - 1, zeros between samples, full convolution with 2 * taps
    (numpy), sample j of the result at padded pixel j / 2 (+ e): out[j] = full[j + k/2 - 1]."""
    size, taps = len(x), np.array(SYM6) / sum(SYM6)
    padded = np.pad(x, size - 1, mode="reflect")
    zeros = np.zeros(2 * len(padded))
    zeros[::2] = padded
    full = np.convolve(zeros, 2 * taps)
    k = len(taps)
    return full[k // 2 - 1: k // 2 - 1 + len(zeros)]


def reference_down(x: np.ndarray) -> np.ndarray:
    """1-D: out[i] = sum_m taps[m] x[2i + m]."""
    taps = np.array(SYM6) / sum(SYM6)
    k = len(taps)
    return np.array([np.dot(taps, x[2 * i: 2 * i + k]) for i in range((len(x) - k + 2) // 2)])


def reference_bandlimited(image: np.ndarray, g: np.ndarray) -> np.ndarray:
    """From scratch, for one [H, W] image and its map g [3, 3] (output -> input, normalised):
    padding and upsampling per axis (numpy), the map in pixel coordinates, bilinear sampling by
    hand (zeros outside), filtered downsampling per axis."""
    h, w = image.shape
    k = len(SYM6)
    e = (k / 2 - 1 - SYM6_CENTRE) / 2
    up = np.stack([reference_up(row) for row in image])  # along x, then along y
    up = np.stack([reference_up(col) for col in up.T]).T  # [2 (3H - 2), 2 (3W - 2)]
    # g in centred pixel units: scale the normalised coordinates by side / 2
    scale = np.diag([w / 2, h / 2, 1.0])
    pixel_map = scale @ g @ np.linalg.inv(scale)
    sampled = np.zeros((2 * h + k - 2, 2 * w + k - 2))
    for qy in range(sampled.shape[0]):
        for qx in range(sampled.shape[1]):
            out = np.array([(qx - k / 2 + 1) / 2 + e - (w - 1) / 2,
                            (qy - k / 2 + 1) / 2 + e - (h - 1) / 2, 1.0])
            x_in, y_in, _ = pixel_map @ out
            # centred input -> padded pixel -> upsampled sample index
            ux = 2 * (x_in + (w - 1) / 2 + (w - 1) - e)
            uy = 2 * (y_in + (h - 1) / 2 + (h - 1) - e)
            x0, y0 = math.floor(ux), math.floor(uy)
            value = 0.0
            for yy, wy in ((y0, 1 - (uy - y0)), (y0 + 1, uy - y0)):
                for xx, wx in ((x0, 1 - (ux - x0)), (x0 + 1, ux - x0)):
                    if 0 <= yy < up.shape[0] and 0 <= xx < up.shape[1]:
                        value += wy * wx * up[yy, xx]
            sampled[qy, qx] = value
    down = np.stack([reference_down(row) for row in sampled])
    return np.stack([reference_down(col) for col in down.T]).T


def random_map(seed: int, scale: float = 0.5, shift: float = 0.5) -> torch.Tensor:
    """[1, 3, 3]: a rotation, anisotropic scales in 2^(+-scale) and a shift in +-shift
    (normalised coordinates: the side is 2)."""
    gen = torch.Generator().manual_seed(seed)
    theta, sx, sy, tx, ty = (torch.rand(5, generator=gen, dtype=torch.float64) * 2 - 1).tolist()
    c, s = math.cos(math.pi * theta), math.sin(math.pi * theta)
    sx, sy = 2 ** (scale * sx), 2 ** (scale * sy)
    g = torch.tensor([[c * sx, -s * sy, shift * tx], [s * sx, c * sy, shift * ty], [0, 0, 1]],
                     dtype=torch.float64)
    return g[None]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bandlimited_resampling_equals_a_from_scratch_computation(seed):
    gen = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 1, 6, 6, generator=gen, dtype=torch.float64) * 2 - 1
    g = random_map(seed)
    expected = reference_bandlimited(image[0, 0].numpy(), g[0].numpy())
    torch.testing.assert_close(resample_bandlimited(image, g)[0, 0],
                               torch.from_numpy(expected), rtol=0, atol=1e-10)


def test_matrices_equal_the_filter_convolutions():
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    up, down = axis_matrices(8, x.device, x.dtype)
    taps = sym6_taps(x)
    padded = F.pad(x, (7, 7, 7, 7), mode="reflect")
    torch.testing.assert_close(up @ x @ up.T, upsample2x(padded, taps), rtol=0, atol=1e-12)
    v = torch.randn(2, 3, 26, 26, dtype=torch.float64)  # 2 * 8 + 12 - 2
    torch.testing.assert_close(down @ v @ down.T, downsample2x(v, taps), rtol=0, atol=1e-12)
    row = x[0, 0, 0].numpy()
    np.testing.assert_allclose((up @ x[0, 0, 0]).numpy(), reference_up(row), rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- (b) accuracy
SIDE = 64
FREQ = (0.09, 0.06)  # cycles per pixel, well below Nyquist (1/2): a band-limited image
BORDER = 20  # pixels: the maps below read inside the image (and the filters' reach) there


def cosine(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.cos(2 * math.pi * (FREQ[0] * x + FREQ[1] * y) + 0.3)


def test_image_and_truth(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The band-limited test image [1, 1, 64, 64] and its exact transform by g [1, 3, 3]."""
    i = torch.arange(SIDE, dtype=torch.float64)
    image = cosine(i[None, :], i[:, None])[None, None]
    centred = i - (SIDE - 1) / 2
    oy, ox = torch.meshgrid(centred, centred, indexing="ij")
    a, t = g[0, :2, :2], g[0, :2, 2] * SIDE / 2
    x_in = a[0, 0] * ox + a[0, 1] * oy + t[0] + (SIDE - 1) / 2
    y_in = a[1, 0] * ox + a[1, 1] * oy + t[1] + (SIDE - 1) / 2
    return image, cosine(x_in, y_in)


test_image_and_truth.__test__ = False  # a helper, not a test


def interpolation_error(resample: str, g: torch.Tensor) -> float:
    """Largest error inside the border (away from the padding) on the test image."""
    image, truth = test_image_and_truth(g)
    out = RESAMPLERS[resample](image, g)[0, 0]
    return (out - truth)[BORDER:-BORDER, BORDER:-BORDER].abs().max().item()


def shift_map(dx: float, dy: float) -> torch.Tensor:
    """[1, 3, 3] map that moves the image by (dx, dy) pixels (normalised: 2 / side per pixel)."""
    g = torch.eye(3, dtype=torch.float64)[None].clone()
    g[0, 0, 2], g[0, 1, 2] = -dx * 2 / SIDE, -dy * 2 / SIDE
    return g


def test_identity_and_integer_shifts_are_exact():
    for dx, dy in [(0, 0), (3, -2), (-5, 1)]:
        assert interpolation_error("bandlimited", shift_map(dx, dy)) < 1e-10


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_bandlimited_has_a_fraction_of_bilinear_interpolation_error(seed):
    g = random_map(seed, scale=0.3, shift=0.1)  # inside the image at the inner 24 pixels
    band, bilinear = interpolation_error("bandlimited", g), interpolation_error("bilinear", g)
    # seen here (seeds 0-7): band-limited 0.010-0.018, bilinear 0.055-0.056
    assert band < 0.025 and band < 0.4 * bilinear, (band, bilinear)


def test_maps_from_pixels_to_pixels_are_exact_gathers():
    """x-flips, quarter turns and whole-pixel shifts (alone) bypass the filters: exact on noise,
    where the 2x path is not (sym6 is not symmetric, so a flip on the 2x grid is not undone)."""
    torch.manual_seed(0)
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    flip = torch.tensor([[-1.0, 0, 0], [0, 1, 0], [0, 0, 1]])
    quarter = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    shift = torch.tensor([[1.0, 0, -3 * 2 / 16], [0, 1, 2 * 2 / 16], [0, 0, 1]])  # (+3, -2) px
    g = torch.stack([flip, quarter, shift])
    out = resample_moved(x, g, "bandlimited", subset=True)
    assert torch.equal(out[0], x[0].flip(-1))
    assert any(torch.equal(out[1], x[1].rot90(k, (1, 2))) for k in range(4))
    padded = F.pad(x[2:], (15, 15, 15, 15), mode="reflect")[0]
    assert torch.equal(out[2], padded[:, 15 + 2: 15 + 2 + 16, 15 - 3: 15 - 3 + 16])
    assert torch.equal(resample_moved(x, g, "bandlimited", subset=False), out)
    filtered = resample_bandlimited(x[:1].double(), g[:1].double()).float()
    assert (filtered - out[:1]).abs().max() > 0.05  # what the gather avoids


# ----------------------------------------------------------------------------- gates off
@pytest.mark.parametrize("resample", ["bandlimited", "bilinear"])
def test_images_no_transform_moves_come_back_bit_identical(resample):
    torch.manual_seed(0)
    x = torch.rand(64, 3, 16, 16) * 2 - 1
    ada = ada_at(0.15, resample=resample, **GEOMETRY_ONLY)
    torch.manual_seed(1)
    g = ada.geometry(64, 16, x)
    still = (g == torch.eye(3)).flatten(1).all(1)
    assert 10 < int(still.sum()) < 60  # both kinds present at this p
    if resample == "bandlimited":  # and both moved kinds: exact gathers and filtered
        assert 0 < int((is_blit(g, 16, 16) & ~still).sum()) < int((~still).sum())
    torch.manual_seed(1)  # forward draws the same maps
    out = ada(x)
    for i in range(64):
        assert torch.equal(out[i], x[i]) == bool(still[i])
    # the CPU path (resample only the moved) and the accelerator path (torch.where) agree
    subset, where = (resample_moved(x, g, resample, flag) for flag in (True, False))
    assert torch.equal(subset[still], x[still]) and torch.equal(where[still], x[still])
    torch.testing.assert_close(subset, where, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- (c) gradients
@pytest.mark.slow
@pytest.mark.parametrize("resample", ["bandlimited", "bilinear"])
def test_second_derivatives_flow_through_the_augmentation(resample):
    """R1 through the augmentation needs d/dtheta of d/dx: gradgradcheck in float64."""
    torch.manual_seed(0)
    x = (torch.rand(1, 3, 6, 6, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    ada = ada_at(1.0, resample=resample)

    def augment(images: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(3)  # the same draws at every evaluation
        return ada(images).square()  # a non-linear function of the augmented image

    assert gradgradcheck(augment, (x,), eps=1e-6, atol=1e-5, fast_mode=True)


def tiny_discriminator() -> nn.Module:
    """A smooth (twice differentiable, non-linear) D on [N, 3, 8, 8] -> [N], float64."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Softplus(), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 1), nn.Flatten(0)).double()


AUGMENTATIONS = {
    "ada_bandlimited": lambda: ada_at(1.0),
    "ada_bilinear": lambda: ada_at(1.0, resample="bilinear"),
    "diffaug": lambda: DiffAugment(),
}


def batches() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    real, fake = (torch.rand(2, 4, 3, 8, 8, generator=gen, dtype=torch.float64) * 2 - 1)
    return real, fake


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_r1_is_the_gradient_wrt_the_unaugmented_reals_through_the_augmentation(name):
    D, augment, (real, fake) = tiny_discriminator(), AUGMENTATIONS[name](), batches()
    loss = NonSaturating(r1_gamma=2.0)
    torch.manual_seed(5)
    total, logs = loss.discriminator_step(D, real, fake, augment=augment)
    grads = torch.autograd.grad(total, list(D.parameters()))

    torch.manual_seed(5)  # the same draws: reals first, then fakes
    x = real.clone().requires_grad_(True)
    real_logits, fake_logits = D(augment(x)), D(augment(fake))
    (grad_x,) = torch.autograd.grad(real_logits.sum(), x, create_graph=True)
    r1 = grad_x.square().flatten(1).sum(1).mean()
    direct = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean() + 0.5 * 2.0 * r1
    torch.testing.assert_close(logs["r1"], (0.5 * 2.0 * r1).detach().float())
    for got, want in zip(grads, torch.autograd.grad(direct, list(D.parameters())), strict=True):
        torch.testing.assert_close(got, want)

    # not the gradient w.r.t. the augmented image (what ganlab took before)
    torch.manual_seed(5)
    seen = augment(real).detach().requires_grad_(True)
    (grad_seen,) = torch.autograd.grad(D(seen).sum(), seen)
    assert not torch.allclose(grad_seen.square().flatten(1).sum(1).mean(), r1.detach(), rtol=1e-3)


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_lazy_r1_is_the_gradient_wrt_the_unaugmented_reals(name):
    D, augment, (real, _) = tiny_discriminator(), AUGMENTATIONS[name](), batches()
    loss = NonSaturating(r1_gamma=3.0, r1_interval=4)
    torch.manual_seed(5)
    r1_loss, logs = loss.r1_step(D, real, augment=augment)
    torch.manual_seed(5)
    x = real.clone().requires_grad_(True)
    (grad_x,) = torch.autograd.grad(D(augment(x)).sum(), x, create_graph=True)
    r1 = 0.5 * 3.0 * grad_x.square().flatten(1).sum(1).mean().float()  # the loss's dtype
    torch.testing.assert_close(r1_loss, 4 * r1)  # scaled by the interval
    torch.testing.assert_close(logs["r1"], r1.detach())
    got = torch.autograd.grad(r1_loss, list(D.parameters()), allow_unused=True)
    want = torch.autograd.grad(4 * r1, list(D.parameters()), allow_unused=True)
    for a, b, param in zip(got, want, D.parameters(), strict=True):  # None: no dependence
        zero = torch.zeros_like(param)
        torch.testing.assert_close(zero if a is None else a, zero if b is None else b)


def test_gradient_penalty_interpolates_the_augmented_images(monkeypatch):
    D, augment, (real, fake) = tiny_discriminator(), DiffAugment(), batches()
    seen = {}
    original = losses.gradient_penalty

    def spy(discriminator, r, f):
        seen["real"], seen["fake"] = r.detach().clone(), f.detach().clone()
        return original(discriminator, r, f)

    monkeypatch.setattr(losses, "gradient_penalty", spy)
    torch.manual_seed(5)
    Wasserstein(gp_weight=10.0, r1_gamma=1.0).discriminator_step(D, real, fake, augment=augment)
    torch.manual_seed(5)
    torch.testing.assert_close(seen["real"], augment(real))
    torch.testing.assert_close(seen["fake"], augment(fake))
