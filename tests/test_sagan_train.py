"""model=sagan through the composed config: defaults, presets, EMA with spectral norm,
attention logging and images, and tiny end-to-end runs (hinge, thesis preset, WGAN-GP)."""

import copy
from pathlib import Path

import pytest
import torch
from PIL import Image

from ganlab.models.sagan import SAGAN, AttentionMaps
from ganlab.nets.layers import SelfAttention
from ganlab.training.fit import build, train
from ganlab.training.losses import Hinge, NonSaturating, Wasserstein
from ganlab.utils import ConfigError
from tests.conftest import read_metrics

# a few iterations of 16 images at 16 px, widths 4; a sample grid every 2 iterations
SHORT = ["model.generator.width=4", "model.discriminator.width=4",
         "callbacks.samples.every_kimg=0.032"]


@pytest.mark.slow
def test_sagan_config_has_the_paper_defaults(make_cfg):
    _, model, _ = build(make_cfg("model=sagan"))
    assert isinstance(model, SAGAN) and isinstance(model.loss, Hinge)
    assert (model.hparams.lr_g, model.hparams.lr_d) == (1e-4, 4e-4)
    assert tuple(model.hparams.betas) == (0.0, 0.9)
    assert model.generator.z_dim == 128
    assert list(model.generator.attention) == ["16"]  # 32 at 16 px: the largest map
    assert "generator" not in model.hparams and model.hparams.attention_query == (0.5, 0.5)
    _, model64, _ = build(make_cfg("model=sagan", "data.resolution=64"))
    assert model64.generator.resolution == 64
    assert list(model64.generator.attention) == list(model64.discriminator.attention) == ["32"]


@pytest.mark.slow
def test_thesis_preset(make_cfg):
    _, model, _ = build(make_cfg("model=sagan_thesis"))
    assert isinstance(model, SAGAN) and type(model.loss) is NonSaturating
    assert model.loss.label_smoothing == (0.8, 1.0)
    assert model.hparams.lr_g == model.hparams.lr_d == 9e-5
    assert list(model.discriminator.attention) == ["16"]


@pytest.mark.slow
def test_every_switch_is_one_override(make_cfg):
    _, model, _ = build(make_cfg(
        "model=sagan", "model.generator.attention=[]", "model.discriminator.spectral_norm=false",
        "model.generator.batch_norm=false", "model.discriminator.minibatch_discrimination=10",
        "model.discriminator.minibatch_stddev=4",
    ))
    assert not any(isinstance(m, SelfAttention) for m in model.generator.modules())
    assert list(model.discriminator.attention) == ["16"]
    assert not any(hasattr(m, "parametrizations") for m in model.discriminator.modules())
    assert any(hasattr(m, "parametrizations") for m in model.generator.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.generator.modules())
    assert len(model.discriminator.minibatch) == 2


@pytest.mark.slow
@pytest.mark.parametrize(("override", "message"), [
    ("model.generator.attention=[12]", r"model.generator.attention=\[12\] is not valid"),
    ("model.attention_query=[1.5,0.5]", r"model.attention_query=\[1.5, 0.5\] must be"),
])
def test_bad_sagan_options_are_config_errors(make_cfg, override, message):
    with pytest.raises(ConfigError, match=message):
        build(make_cfg("model=sagan", override))


@pytest.mark.slow
def test_ema_generator_averages_spectral_norm_weights_and_copies_u_v(make_cfg):
    _, model, _ = build(make_cfg("model=sagan", "model.ema_kimg=0.1", "model.ema_rampup=null"))
    ema, gen = model.generator_ema, model.generator
    originals = [n for n, _ in ema.named_parameters() if n.endswith("weight.original")]
    assert len(originals) == 7 and not ema.training  # parametrizations survive deepcopy
    ema_stem, stem = ema.stem.parametrizations.weight, gen.stem.parametrizations.weight
    assert ema_stem.original is not stem.original and ema_stem[0]._u is not stem[0]._u
    before = copy.deepcopy(ema.state_dict())
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(1.0)
    gen(torch.randn(4, 128))  # a training forward: one power iteration updates G's u, v
    assert not torch.equal(gen.stem.parametrizations.weight[0]._u, before[
        "stem.parametrizations.weight.0._u"])
    model.update_ema(images=100)  # one half-life: beta = 0.5
    ema_params = dict(ema.named_parameters())
    for name, p in gen.named_parameters():
        torch.testing.assert_close(ema_params[name], 0.5 * before[name] + 0.5 * p)
    ema_buffers = dict(ema.named_buffers())
    for name, buffer in gen.named_buffers():
        torch.testing.assert_close(ema_buffers[name], buffer)  # u, v and BN statistics
    assert torch.isfinite(model.sample()).all()


@pytest.mark.slow
def test_attention_image_has_no_side_effects(make_cfg):
    _, model, _ = build(make_cfg("model=sagan"))
    buffers = copy.deepcopy(dict(model.discriminator.named_buffers()))
    rng = torch.get_rng_state()
    image = AttentionMaps().render(model)
    assert image.shape == (3, 2 * 128 + 3 * 2, 3 * 128 + 4 * 2)  # rows g16, d16; 3 panels each
    assert torch.equal(torch.get_rng_state(), rng)
    for name, buffer in model.discriminator.named_buffers():
        assert torch.equal(buffer, buffers[name]), name
    assert model.discriminator.training  # restored
    _, plain, _ = build(make_cfg("model=sagan", "model.generator.attention=[]",
                                 "model.discriminator.attention=[]", name="plain"))
    assert AttentionMaps().render(plain) is None


@pytest.mark.slow
def test_attention_images_take_their_folder_and_interval_from_the_config(make_cfg, tmp_path):
    _, model, _ = build(make_cfg("model=sagan", *SHORT))
    (maps,) = model.configure_callbacks()
    assert maps.dirpath == tmp_path / "run" / "samples"  # ${paths.output_dir}/samples
    assert maps.every_nimg == 32  # callbacks.samples.every_kimg
    _, model, _ = build(make_cfg("model=sagan", *SHORT, "model.attention_every_kimg=0.064"))
    assert model.configure_callbacks()[0].every_nimg == 64
    _, off, _ = build(make_cfg("model=sagan", "callbacks.samples=null", name="off"))
    assert off.configure_callbacks() == []  # no sample grids: no attention images either


def check_run(run: Path) -> dict[str, list[float]]:
    columns = read_metrics(run)
    for column in ["train/attn_gamma_g16", "train/attn_gamma_d16", "train/d_loss",
                   "train/g_loss"]:
        assert column in columns, column
        assert all(torch.isfinite(torch.tensor(columns[column])))
    assert columns["train/attn_gamma_g16"][-1] != 0.0  # gamma is trained
    assert columns["train/attn_gamma_d16"][-1] != 0.0
    fakes = sorted(p.name for p in (run / "samples").glob("fakes_*.png"))
    attention = sorted(p.name for p in (run / "samples").glob("attention_*.png"))
    assert len(fakes) >= 2 and attention == [f.replace("fakes", "attention") for f in fakes]
    assert Image.open(run / "samples" / attention[-1]).size == (3 * 128 + 4 * 2, 2 * 128 + 3 * 2)
    return columns


@pytest.mark.slow
def test_tiny_sagan_run_logs_gammas_and_writes_attention_images(make_cfg, tmp_path):
    cfg = make_cfg("model=sagan", "kimg=0.096", *SHORT)
    train(cfg)
    run = tmp_path / "run"
    check_run(run)
    # spectral-norm parametrizations round-trip through the checkpoint
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    _, fresh, _ = build(make_cfg("model=sagan", *SHORT, name="fresh"))
    fresh.load_state_dict(saved["state_dict"], strict=True)
    assert any(k.endswith("parametrizations.weight.0._u") for k in saved["state_dict"])


@pytest.mark.slow
def test_tiny_thesis_preset_run(make_cfg, tmp_path):
    train(make_cfg("model=sagan_thesis", "kimg=0.064", *SHORT))
    check_run(tmp_path / "run")


@pytest.mark.slow
def test_tiny_wgan_gp_run_differentiates_through_attention_and_spectral_norm(make_cfg, tmp_path):
    cfg = make_cfg("model=sagan", "loss=wgan_gp", "model.n_critic=5", "kimg=0.08", *SHORT)
    _, model, _ = build(cfg)
    assert isinstance(model.loss, Wasserstein)
    assert all(m.double_backward for m in model.discriminator.attention.values())
    assert not any(m.double_backward for m in model.generator.attention.values())
    train(cfg)
    columns = check_run(tmp_path / "run")
    assert len(columns["train/gp"]) == 5  # 5 critic steps, then one G step
    assert columns["train/g_loss"] and len(set(columns["train/g_loss"])) == 1
    assert max(columns["train/gp"]) > 0
