"""bf16 mixed precision: every model and loss, penalties (double backward) included, stays finite
and close to float32 under CPU autocast; `trainer.precision=bf16-mixed` trains every model."""

import copy
import math

import pytest
import torch
from hydra.utils import instantiate

from ganlab.training.fit import train
from ganlab.training.losses import Hinge, LeastSquares, NonSaturating, Wasserstein
from tests.conftest import read_metrics

LOSSES = {
    "nonsaturating": NonSaturating,
    "smoothed": lambda: NonSaturating(label_smoothing=[0.8, 1.0]),
    "hinge": Hinge,
    "lsgan": LeastSquares,
    "wgan_gp": lambda: Wasserstein(gp_weight=10.0),
    "wgan_gp_drift": lambda: Wasserstein(gp_weight=10.0, drift=0.001),
    "r1": lambda: NonSaturating(r1_gamma=10.0),
}
MODELS = ["model=dcgan", "model=sagan", "model=pggan"]
MODEL_LOSSES = {  # DCGAN: every loss; the others: their default and both penalties
    "model=dcgan": list(LOSSES),
    "model=sagan": ["hinge", "wgan_gp", "r1"],
    "model=pggan": ["wgan_gp_drift", "lsgan", "r1"],
}
# PGGAN halfway through fading its last side in (16 px) from 8 px
PGGAN_FADE = ["model.start_resolution=8", "model.schedule.stabilize_kimg=0.05",
              "model.schedule.fade_kimg=0.2", "model.schedule.batch_size_dict=null"]


def losses_at(module, real, z, bf16: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """D's total loss and logged parts, G's loss, and D's gradient norm after backward of the D
    loss (through the penalty's double backward) on copies of the module's nets."""
    G, D = copy.deepcopy(module.generator), copy.deepcopy(module.discriminator)
    torch.manual_seed(seed)  # same interpolation weights / smoothed targets in both precisions
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        fake = G(z)
        d_loss, logs = module.loss.discriminator_step(D, real, fake.detach())
        g_loss = module.loss.g_loss(D(fake))
        d_loss.backward()
    grad_norm = torch.stack([p.grad.norm() for p in D.parameters() if p.grad is not None]).norm()
    values = {**logs, "total": d_loss, "g_loss": g_loss, "d_grad_norm": grad_norm}
    return {name: value.detach() for name, value in values.items()}


BF16_UNIT_ROUNDOFF = 2.0**-8  # bf16 keeps 8 significand bits (7 stored + the implicit one)


def weight_layers(net: torch.nn.Module) -> int:
    """Layers with a weight matrix or kernel (convolutions, linear, attention projections)."""
    return sum(p.dim() >= 2 for p in net.parameters())


def bf16_tolerance(module) -> float:
    """Relative error of a bf16-autocast loss or D gradient against float32, bounded to first
    order from the format and the depth: every weight layer rounds its input and its weight to
    bf16 (2u each layer), and the longest path runs through G's forward and D's forward,
    backward and the penalty's double backward (n_G + 3 n_D layers in series). On CPUs with
    AMX / AVX512-BF16, autocast really computes in bf16, so the bound must hold there; a figure
    one machine printed is not a bound."""
    depth = weight_layers(module.generator) + 3 * weight_layers(module.discriminator)
    return 2 * BF16_UNIT_ROUNDOFF * depth


def close(a: torch.Tensor, b: torch.Tensor, tolerance: float) -> bool:
    """|a - b| within `tolerance` relative to |b| (to 1 for values near 0: the terms that
    cancel into a small loss are of order 1)."""
    return abs(float(a) - float(b)) <= tolerance * max(1.0, abs(float(b)))


@pytest.mark.parametrize("model", MODELS)
def test_bf16_autocast_losses_finite_float32_and_close(make_cfg, model):
    extra = PGGAN_FADE if model == "model=pggan" else ["model.generator.z_dim=32"]
    if model == "model=dcgan":
        extra.append("model.discriminator.batch_norm=false")
    cfg = make_cfg(model, *extra)
    torch.manual_seed(1)
    real = torch.rand(8, 3, 16, 16) * 2 - 1
    for loss_name in MODEL_LOSSES[model]:
        module = instantiate(cfg.model, loss=LOSSES[loss_name]())  # SAGAN: 2x-differentiable attn
        if model == "model=pggan":  # halfway through fading in 16 px
            for net in (module.generator, module.discriminator):
                net.set_stage(net.max_stage, 0.5)
        z = torch.randn(8, module.generator.z_dim)
        full = losses_at(module, real, z, bf16=False)
        half = losses_at(module, real, z, bf16=True)
        tolerance = bf16_tolerance(module)
        assert half.keys() == full.keys()
        for name, value in half.items():
            where = f"{model} {loss_name} {name}"
            assert value.dtype == torch.float32, f"{where}: reduced in {value.dtype}, not float32"
            assert torch.isfinite(value), f"{where} = {float(value)} under bf16 autocast"
            assert close(value, full[name], tolerance), (
                f"{where}: bf16 {value:.4f}, fp32 {full[name]:.4f}, bound {tolerance:.3f}"
            )
        penalty = "gp" if "gp" in full else "r1" if "r1" in full else None
        if penalty:  # the penalty really ran through bf16 convolutions
            assert float(half[penalty]) != float(full[penalty]), f"{model} {loss_name}"


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_bf16_mixed_trains_every_model(make_cfg, tmp_path, model):
    extra = [*PGGAN_FADE, "loss=wgan_gp_drift"] if model == "model=pggan" else ["loss=wgan_gp"]
    if model == "model=dcgan":  # no batch norm in a critic with a gradient penalty
        extra.append("model.discriminator.batch_norm=false")
    cfg = make_cfg(model, *extra, "trainer.precision=bf16-mixed", "kimg=0.064",
                   "callbacks.samples=null", "callbacks.checkpoint=null", "metric=none",
                   name=model.split("=")[1])
    train(cfg)
    columns = read_metrics(tmp_path / model.split("=")[1])
    assert len(columns["train/d_loss"]) >= 3
    for name in ("train/d_loss", "train/g_loss", "train/gp"):
        assert all(math.isfinite(v) for v in columns[name]), name
