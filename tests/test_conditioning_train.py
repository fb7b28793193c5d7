"""Conditional training end to end: unconditional runs bit-identical to before conditioning
existed, the modes per model, labels reaching G and D, the grids, exact resume with labels, the
AC-GAN loss and the config errors."""

from __future__ import annotations

import hashlib

import pytest
import pytorch_lightning as pl
import torch

from ganlab.models.conditioning import AuxClassifierLoss
from ganlab.training.fit import build
from ganlab.utils import ConfigError
from tests.test_exact_resume import assert_same_state, fit

SHORT = ["kimg=0.128", "callbacks.samples=null", "callbacks.checkpoint=null"]
PGGAN_SHORT = ["model.schedule.stabilize_kimg=0.032", "model.schedule.fade_kimg=0.032",
               "model.schedule.batch_size_dict=null"]
# sha256 (first 16 hex digits) of the state dict (G, D, EMA-G: names and bytes) after a tiny
# fixed-seed unconditional run (debug=tiny, 8 iterations of 16, CPU, torch.set_num_threads(1)),
# recorded at commit 6d6b24e, before conditioning existed. A change that legitimately alters
# unconditional training (another init, loss or EMA rule) re-records them with `weights_hash`.
UNCONDITIONAL = {"dcgan": "ff469f17edacaebb", "pggan": "fa5ad279d633536d"}


def weights_hash(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def train(make_cfg, *overrides: str, name: str = "run"):
    cfg = make_cfg(*overrides, name=name)
    pl.seed_everything(0)
    datamodule, model, trainer = build(cfg)
    trainer.fit(model, datamodule=datamodule)
    return model, cfg


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(UNCONDITIONAL))
def test_unconditional_runs_are_bit_identical_to_before(make_cfg, model):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        extra = PGGAN_SHORT if model == "pggan" else []
        trained, cfg = train(make_cfg, f"model={model}", *SHORT, *extra,
                             "model.ema_bn_latents=0")
    finally:
        torch.set_num_threads(threads)
    assert cfg.model.conditioning == "none" and trained.labels is None
    assert weights_hash(trained) == UNCONDITIONAL[model]


@pytest.mark.parametrize(("model", "mode"), [("dcgan", "concat"), ("sagan", "projection"),
                                             ("pggan", "acgan")])
@pytest.mark.slow
def test_auto_conditioning_is_the_models_default_with_labels(make_cfg, model, mode):
    extra = PGGAN_SHORT if model == "pggan" else []
    cfg = make_cfg(f"model={model}", "data.labels=class", *SHORT, *extra)
    _, module, _ = build(cfg)
    assert cfg.model.conditioning == mode and cfg.model.num_classes == 4
    assert module.generator.conditioning == module.discriminator.conditioning == mode
    assert module.labels.names == ["disc", "square", "triangle", "ring"]
    assert isinstance(module.loss, AuxClassifierLoss) == (mode == "acgan")


@pytest.mark.slow
def test_the_batchs_labels_reach_g_and_d(make_cfg):
    cfg = make_cfg("model=dcgan", "data.labels=class", *SHORT, "kimg=0.032")
    pl.seed_everything(0)
    datamodule, module, trainer = build(cfg)
    seen = {"g": [], "d": []}
    module.generator.register_forward_pre_hook(
        lambda m, args: seen["g"].append(args[1].clone()))
    module.discriminator.register_forward_pre_hook(
        lambda m, args: seen["d"].append(m.bound_labels.clone()))
    batches = []
    original = datamodule.on_after_batch_transfer
    datamodule.on_after_batch_transfer = lambda b, i: batches.append(original(b, i)) or batches[-1]
    trainer.fit(module, datamodule=datamodule)
    labels = [b[1] for b in batches]
    assert len(labels) == 2 and all(y.shape == (16, 4) for y in labels)
    assert torch.equal(seen["g"][0], labels[0]) and torch.equal(seen["g"][1], labels[1])
    assert all(torch.equal(y, labels[0]) for y in seen["d"][:3])  # real, fake, G step
    assert module.discriminator.bound_labels is None  # unbound after the step


@pytest.mark.slow
def test_grid_has_one_row_per_class_from_the_same_latents(make_cfg):
    module, _ = train(make_cfg, "model=dcgan", "data.labels=class", *SHORT, "kimg=0.016")
    z, labels = module.grid_inputs()
    assert z.shape == (32, module.generator.z_dim) and labels.shape == (32, 4)
    rows_z, rows_y = z.view(4, 8, -1), labels.view(4, 8, 4)
    assert all(torch.equal(rows_z[r], rows_z[0]) for r in range(4))  # same latents every row
    assert torch.equal(rows_y.argmax(2), torch.arange(4)[:, None].expand(4, 8))
    images = module.sample()
    assert images.shape == (32, 3, 16, 16)
    assert not torch.allclose(images[:8], images[8:16])  # another class, another image


@pytest.mark.slow
def test_acgan_adds_the_classification_loss(make_cfg):
    module, cfg = train(make_cfg, "model=pggan", "data.labels=class", *SHORT, *PGGAN_SHORT,
                        "kimg=0.032", "logger=csv")
    from tests.conftest import read_metrics

    metrics = read_metrics(cfg.paths.output_dir)
    assert "train/d_class" in metrics and all(v > 0 for v in metrics["train/d_class"])


@pytest.mark.slow
def test_exact_resume_with_labels(make_cfg):
    overrides = ["model=dcgan", "data.labels=class", "model.conditioning=projection",
                 "kimg=null", "data.num_images=64", "callbacks.samples=null",
                 "callbacks.checkpoint.every_kimg=0.016", "data.hflip=true"]
    straight, saves = fit(make_cfg, "straight", overrides, iterations=8)
    resumed, _ = fit(make_cfg, "resumed", overrides, iterations=8, ckpt_path=saves[3])
    assert_same_state(resumed, straight)
    assert resumed.labels.names == straight.labels.names


@pytest.mark.slow
def test_conditioning_without_labels_is_a_config_error(make_cfg):
    with pytest.raises(ConfigError, match="needs labels from the data"):
        build(make_cfg("model=dcgan", "model.conditioning=concat"))
    with pytest.raises(ConfigError, match="model.conditioning"):
        build(make_cfg("model=dcgan", "data.labels=class", "model.conditioning=cgan"))


@pytest.mark.slow
def test_celeba_attributes_and_folder_classes_train(make_cfg, tmp_path):
    from tests.data_makers import write_celeba
    from tests.test_conditioning_data import write_attributes, write_classes

    celeba = write_celeba(tmp_path / "celeba", "kaggle")
    write_attributes(celeba, "kaggle")
    folder = write_classes(tmp_path / "folder")
    small = ["data.resolution=8", "data.batch_size=4", "kimg=0.008", "callbacks.samples=null",
             "data.cache_workers=0"]
    module, cfg = train(make_cfg, "model=dcgan", "data=celeba", f"data.root={celeba}",
                        "data.labels=attributes", "data.attributes=[Smiling]", *small,
                        name="celeba")
    assert module.labels.kind == "attributes" and module.labels.names == ["Smiling"]
    assert module.iteration == 2 and module.grid_inputs()[1].shape == (16, 1)  # off, on rows
    module, cfg = train(make_cfg, "model=sagan", "data=folder", f"data.root={folder}",
                        "data.labels=class", *small, name="folder")
    assert module.labels.names == ["apple", "berry", "cherry"] and module.iteration == 2


@pytest.mark.parametrize("augment", ["diffaug", "ada"])
@pytest.mark.slow
def test_conditional_training_with_augmentation(make_cfg, augment):
    """The label is not augmented: D gets the batch's labels whatever the images went through
    (acgan: its classifier loss on the augmented reals and fakes)."""
    module, _ = train(make_cfg, "model=pggan", "data.labels=class", *SHORT, *PGGAN_SHORT,
                      f"model/augment={augment}", "kimg=0.032", "loss=nonsaturating",
                      "loss.r1_gamma=1.0")
    assert module.iteration == 2 and module.discriminator.bound_labels is None
