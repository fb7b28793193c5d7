"""model.augment (DiffAugment, ADA) and data.max_images: gradients, per-sample draws, identity,
ADA's p (direction, resume), what R1 differentiates, bad input, tiny runs of every model."""

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from ganlab.augment import ADA, DiffAugment, NoAugment, resolve_augment
from ganlab.data.shapes import ShapesDataModule
from ganlab.training import losses
from ganlab.training.fit import build, train
from ganlab.training.losses import Hinge, LeastSquares, NonSaturating, Wasserstein
from ganlab.utils import ConfigError
from tests.conftest import CONF_DIR, read_metrics


def ada_at(p: float, **kwargs) -> ADA:
    ada = ADA(**kwargs)
    ada.p.fill_(p)
    return ada


AUGMENTS = {"diffaug": DiffAugment, "ada": lambda: ada_at(1.0)}


def images(n: int = 8, side: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, side, side) * 2 - 1


# ----------------------------------------------------------------------------- the transforms
@pytest.mark.parametrize("mode", AUGMENTS)
def test_gradients_reach_the_generator_through_the_augmentation(mode):
    generator = nn.Sequential(nn.Linear(4, 3 * 8 * 8), nn.Tanh(), nn.Unflatten(1, (3, 8, 8)))
    discriminator = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 1))
    fake = generator(torch.randn(16, 4))
    augmented = AUGMENTS[mode]()(fake)
    assert not torch.allclose(augmented, fake)  # it did augment
    NonSaturating().g_loss(discriminator(augmented).squeeze(1)).backward()
    grad = generator[0].weight.grad
    assert grad is not None and grad.isfinite().all() and grad.abs().sum() > 0


@pytest.mark.parametrize("mode", AUGMENTS)
def test_each_sample_gets_its_own_parameters(mode):
    same = images(1).expand(16, -1, -1, -1)
    out = AUGMENTS[mode]()(same)
    distinct = {tuple(out[i].flatten()[:64].round(decimals=4).tolist()) for i in range(16)}
    assert len(distinct) >= 12


def test_identity_at_p_zero_empty_policy_and_none():
    x = images()
    torch.testing.assert_close(ADA()(x), x, atol=1e-5, rtol=0)  # initial p = 0
    assert DiffAugment(policy="")(x) is x
    assert NoAugment()(x) is x
    assert isinstance(resolve_augment(None, NonSaturating()), NoAugment)


def test_ada_transforms_are_what_they_say():
    x = images(16)
    off = dict(xflip=False, rotate90=False, xint=0, scale_std=0, rotate=False, aniso_std=0,
               xfrac_std=0, brightness_std=0, contrast_std=0, lumaflip=False, hue=False,
               saturation_std=0)
    flipped = ada_at(1.0, **{**off, "xflip": True})(x)
    kinds = [torch.allclose(flipped[i], x[i].flip(-1), atol=1e-5) for i in range(16)]
    assert all(k or torch.allclose(flipped[i], x[i], atol=1e-5) for i, k in enumerate(kinds))
    assert 0 < sum(kinds) < 16
    turned = ada_at(1.0, **{**off, "rotate90": True})(x)
    assert all(any(torch.allclose(turned[i], x[i].rot90(k, (1, 2)), atol=1e-5) for k in range(4))
               for i in range(16))
    grey = images(16)[:, :1].expand(-1, 3, -1, -1)  # hue rotation keeps the grey axis
    torch.testing.assert_close(ada_at(1.0, **{**off, "hue": True})(grey), grey, atol=1e-5, rtol=0)


def test_diffaug_translation_and_cutout_move_and_zero_pixels():
    x = images(32, 16) * 0.5 + 1.5  # all > 0: zeros come only from padding / cutout
    cut = DiffAugment(policy="cutout")(x)
    zeros = (cut == 0).all(1).flatten(1).sum(1)
    assert zeros.max() == 64 and zeros.min() >= 16  # an 8x8 square, clipped at the border
    moved = DiffAugment(policy="translation")(x)
    assert ((moved == 0).all(1).flatten(1).sum(1) > 0).any()  # zero padding came in


# ----------------------------------------------------------------------------- ADA's p
def discriminator_saying(value: float):
    """A stand-in D whose every logit is `value` (an overfit D says 'real' to every real)."""
    return lambda x: x.flatten(1).mean(1) * 0 + value


@pytest.mark.parametrize(("loss", "logit", "direction"), [
    (NonSaturating(), 3.0, 1), (NonSaturating(), -3.0, -1), (Hinge(), 1.5, 1),
    (LeastSquares(), 0.7, 1), (LeastSquares(), 0.3, -1),  # LSGAN: boundary at 0.5, not 0
])
def test_p_moves_towards_the_target_every_interval(loss, logit, direction):
    ada = ADA(interval=4, speed_kimg=1.0, initial_p=0.5)
    for step in range(8):
        real, fake = images(), images()
        _, logs = loss.discriminator_step(discriminator_saying(logit), ada(real), ada(fake))
        ada.after_d_step(logs["d_real_sign"], real.shape[0])
        if step == 2:
            assert float(ada.p) == 0.5  # not before the 4th step
    # two adjustments of 4 steps x 8 images over 1 kimg each
    assert float(ada.p) == pytest.approx(0.5 + direction * 2 * 32 / 1000)
    assert float(ada.rt) == pytest.approx(direction)


def test_p_stays_in_zero_one_and_fixed_p_holds():
    ada = ADA(interval=1, speed_kimg=0.001, initial_p=0.9)
    ada.after_d_step(torch.tensor(1.0), 16)
    assert float(ada.p) == 1.0
    fixed = ADA(interval=1, initial_p=0.3, fixed_p=True)
    fixed.after_d_step(torch.tensor(1.0), 16)
    assert float(fixed.p) == pytest.approx(0.3) and float(fixed.rt) == 1.0


@pytest.mark.parametrize("r1_wrt", ["reals", "augmented"])
@pytest.mark.parametrize("r1_interval", [1, 2])  # in the D step, and the lazy R1 phase
def test_r1_differentiates_the_reals_the_training_step_chose(make_cfg, monkeypatch, r1_wrt,
                                                             r1_interval):
    """model.augment.r1_wrt=reals (default): R1 w.r.t. the un-augmented reals of the batch,
    through the augmentation (stylegan2-ada); =augmented: w.r.t. the augmented reals D saw."""
    cfg = make_cfg("model/augment=ada", "model.augment.initial_p=1.0", "loss.r1_gamma=1.0",
                   f"loss.r1_interval={r1_interval}", f"model.augment.r1_wrt={r1_wrt}",
                   "kimg=null", "trainer.max_steps=4", name=f"r1_{r1_wrt}_{r1_interval}")
    datamodule, model, trainer = build(cfg)
    seen = {"batch": [], "augmented": [], "penalised": []}
    augment, d_step, r1_penalty = model.augment.forward, model.d_step, losses.r1_penalty

    def spy_augment(x):
        seen["augmented"].append(augment(x))
        return seen["augmented"][-1]

    def spy_d_step(opt_d, real, fake):
        seen["batch"].append(real)
        return d_step(opt_d, real, fake)

    def spy_r1(real, real_logits):
        seen["penalised"].append(real)
        return r1_penalty(real, real_logits)

    model.augment.forward, model.d_step = spy_augment, spy_d_step
    monkeypatch.setattr(losses, "r1_penalty", spy_r1)
    trainer.fit(model, datamodule=datamodule)
    assert seen["penalised"], "R1 never ran"
    penalised = seen["penalised"][0]
    assert penalised.requires_grad and penalised.is_leaf  # what autograd.grad differentiates
    in_batch = any(torch.equal(penalised.detach(), x) for x in seen["batch"])
    augmented = any(torch.equal(penalised.detach(), x.detach()) for x in seen["augmented"])
    assert (in_batch, augmented) == ((True, False) if r1_wrt == "reals" else (False, True))


@pytest.mark.slow
def test_p_is_saved_and_restored_exactly_on_resume(make_cfg):
    # 5 iterations of interval 3: one adjustment of p, then 2 steps pending in the sums
    args = ("model/augment=ada", "model.augment.speed_kimg=0.1", "model.augment.interval=3",
            "model.augment.initial_p=0.5", "kimg=null", "trainer.max_steps=10")
    pl.seed_everything(0)
    datamodule, model, trainer = build(make_cfg(*args))
    trainer.fit(model, datamodule=datamodule)
    assert float(model.augment.p) != 0.5 and model.augment.steps == 2
    last = Path(make_cfg(*args).paths.output_dir) / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)["state_dict"]
    # the state is the module's extra state, not buffers (DDP would broadcast buffers)
    assert not any(key.startswith("augment.") for key in saved if key != "augment._extra_state")
    extra = saved["augment._extra_state"]
    # resuming at the saved step count trains nothing: the restored state is what was saved
    datamodule, resumed, trainer = build(make_cfg(*args))
    assert float(resumed.augment.p) == 0.5
    trainer.fit(resumed, datamodule=datamodule, ckpt_path=str(last))
    for key in ("p", "rt", "sign_sum", "sign_count"):
        assert torch.equal(getattr(resumed.augment, key), extra[key])
        assert torch.equal(getattr(resumed.augment, key), getattr(model.augment, key))
    assert resumed.augment.steps == extra["steps"] == 2


def test_checkpoints_with_the_old_buffers_still_load():
    """Before the state moved to the extra state, p, rt and the sums were buffers."""
    ada = ADA()
    old = {"p": torch.tensor(0.25), "rt": torch.tensor(0.5), "sign_sum": torch.tensor(3.0),
           "sign_count": torch.tensor(8.0), "_extra_state": {"steps": 2}}
    ada.load_state_dict(old)
    assert (float(ada.p), float(ada.rt), float(ada.sign_sum), float(ada.sign_count),
            ada.steps) == (0.25, 0.5, 3.0, 8.0, 2)
    assert set(ada.state_dict()) == {"_extra_state"}


def test_state_follows_the_module_and_stays_float32():
    ada = ADA(initial_p=0.3).double()
    assert all(getattr(ada, key).dtype == torch.float32 for key in ("p", "rt", "sign_sum"))
    assert float(ada.p) == pytest.approx(0.3)


def test_yaml_defaults_equal_the_mode_names():
    for name, cls in (("diffaug", DiffAugment), ("ada", ADA)):
        from_yaml = instantiate(OmegaConf.load(CONF_DIR / "model" / "augment" / f"{name}.yaml"))
        by_name = resolve_augment(name, NonSaturating())
        assert isinstance(by_name, cls)
        assert {k: v for k, v in vars(from_yaml).items() if not k.startswith("_")} == \
            {k: v for k, v in vars(by_name).items() if not k.startswith("_")}


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("build_it", "names"), [
    (lambda: DiffAugment(policy="color,zoom"), ["model.augment.policy", "zoom", "translation"]),
    (lambda: ADA(target=1.0), ["model.augment.target=1.0", "(0, 1)"]),
    (lambda: ADA(target=0), ["model.augment.target=0", "0.6"]),
    (lambda: resolve_augment("adaa", NonSaturating()), ["model.augment='adaa'", "diffaug"]),
    (lambda: resolve_augment("ada", Wasserstein()), ["Wasserstein", "loss=nonsaturating"]),
    (lambda: ShapesDataModule(max_images=0), ["data.max_images=0", "null"]),
    (lambda: ShapesDataModule(max_images=-5), ["data.max_images=-5"]),
])
def test_bad_input_names_the_value_and_the_fix(build_it, names):
    with pytest.raises(ConfigError) as error:
        build_it()
    for name in names:
        assert name in str(error.value)


@pytest.mark.slow
def test_bad_input_from_the_command_line_fails_before_training(make_cfg):
    with pytest.raises(ConfigError, match="Wasserstein"):  # PGGAN's default loss is WGAN-GP
        build(make_cfg("model=pggan", "model/augment=ada", name="wgan"))
    with pytest.raises(ConfigError, match="model.augment.policy"):
        build(make_cfg("model/augment=diffaug", "model.augment.policy=[color,flip]", name="pol"))
    with pytest.raises(ConfigError, match=r"data.max_images=300 is larger .* \(256 images\)"):
        train(make_cfg("data.max_images=300", name="big"))
    build(make_cfg("model=pggan", "model/augment=ada", "loss=nonsaturating", name="ok"))


# ----------------------------------------------------------------------------- data.max_images
def test_max_images_is_the_same_fixed_subset_everywhere():
    def subset(max_images, seed=0):
        data = ShapesDataModule(resolution=8, num_images=200, num_val_images=4,
                                max_images=max_images, seed=seed)
        data.setup("fit")
        return data.train_set

    first, second, larger = subset(50), subset(50), subset(120)
    assert len(first) == 50 and len(larger) == 120
    assert first.indices == second.indices and len(set(first.indices)) == 50
    assert set(first.indices) < set(larger.indices)  # smaller subsets lie inside larger ones
    assert first.indices != list(range(50))  # random, not the first 50
    torch.testing.assert_close(first.__getitems__([0, 1]), second.__getitems__([0, 1]))
    assert len(subset(None)) == 200


# ----------------------------------------------------------------------------- tiny runs
PG = ["model=pggan", "loss=nonsaturating", "model.generator.z_dim=16",
      "model.schedule.batch_size_dict=null", "data.batch_size=8",
      "model.schedule.stabilize_kimg=0.016", "model.schedule.fade_kimg=0.016"]
MODELS = {"dcgan": ["model=dcgan"], "sagan": ["model=sagan"], "pggan": PG}


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("mode", ["diffaug", "ada"])
def test_tiny_run_with_each_mode_and_model(make_cfg, tmp_path, model, mode):
    # dcgan: the mode name (its defaults); sagan, pggan: the config group (keys can be set)
    choice = f"model.augment={mode}" if model == "dcgan" else f"model/augment={mode}"
    args = [*MODELS[model], choice, "kimg=null", "trainer.max_steps=16", "data.max_images=64"]
    if mode == "ada" and model != "dcgan":
        args.append("model.augment.speed_kimg=0.1")  # p moves within the run
    train(make_cfg(*args))  # PGGAN: 8 iterations of 8 images, through 4 px and the 8 px fade
    columns = read_metrics(tmp_path / "run")
    assert columns["train/g_loss"] and all(map(torch.isfinite, map(torch.tensor,
                                                                   columns["train/d_loss"])))
    if mode == "ada":
        assert len(columns["train/ada_p"]) == len(columns["train/d_loss"])
        assert all(0 <= p <= 1 for p in columns["train/ada_p"])
    else:
        assert "train/ada_p" not in columns
    if model == "pggan":
        assert max(columns["train/resolution"]) > min(columns["train/resolution"])
