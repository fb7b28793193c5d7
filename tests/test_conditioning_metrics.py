"""Conditioning measured (ganlab.metrics.conditional): conditioning accuracy against the
classifier's accuracy on reals, intra-class FD, the TorchScript classifier, and the scores
logged by metric=shapes during a conditional run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ganlab.data.shapes import render_shapes
from ganlab.metrics.conditional import ScriptedClassifier, ShapesKindClassifier, conditional_scores
from ganlab.utils import ConfigError
from tests.conftest import read_metrics
from tests.test_conditioning_train import train

NAMES = ["disc", "square", "triangle", "ring"]


@pytest.fixture(scope="module")
def shapes_by_class():
    images, labels = render_shapes(1200, 32, 5, return_labels=True, max_shapes=1)
    images, kinds = torch.from_numpy(images), torch.from_numpy(labels["kind"][:, 0])
    return images, kinds


def reals(images, kinds, n=400):
    y = F.one_hot(kinds[:n], 4).float()
    return [(images[i:i + 100], y[i:i + 100]) for i in range(0, n, 100)]


def pool_sampler(images, kinds, wrong: bool = False):
    """A 'generator' drawing real images of the asked class (or always of class 0) from a pool
    (images 400.. , unseen by the real side)."""
    pools = [images[400:][kinds[400:] == c] for c in range(4)]

    def sample(z, labels):
        cls = 0 if wrong else int(labels[0].argmax())
        pick = pools[cls][: len(z)]
        return pick.float() / 127.5 - 1

    return sample


@pytest.mark.slow
def test_a_generator_that_draws_the_asked_class_scores_like_the_reals(shapes_by_class):
    images, kinds = shapes_by_class
    classifier = ShapesKindClassifier()
    good = conditional_scores(pool_sampler(images, kinds), 8, reals(images, kinds), classifier,
                              NAMES, multi_label=False, num_per_class=150)
    bad = conditional_scores(pool_sampler(images, kinds, wrong=True), 8, reals(images, kinds),
                             classifier, NAMES, multi_label=False, num_per_class=150)
    assert good["real_acc"] > 0.9  # the shipped net classifies one-shape images well
    assert abs(good["cond_acc"] - good["real_acc"]) < 0.05
    assert bad["cond_acc"] < 0.4 and bad["cond_acc_disc"] > 0.8 and bad["cond_acc_ring"] < 0.2
    assert good["fd_intra"] < bad["fd_intra"] / 2
    assert set(good) >= {f"real_acc_{n}" for n in NAMES} | {f"cond_acc_{n}" for n in NAMES}


def test_scripted_classifier(tmp_path):
    class ByRed(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # 2 "classes": red or not
            red = x[:, 0].mean((1, 2)) - x[:, 1:].mean((1, 2, 3))
            return torch.stack([red, -red], 1)

    path = tmp_path / "cls.pt"
    torch.jit.save(torch.jit.script(ByRed()), str(path))
    classifier = ScriptedClassifier(path)
    red = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    red[:, 0] = 255
    logits, features = classifier(red)
    assert features is None and logits.argmax(1).eq(0).all()
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ConfigError, match="TorchScript"):
        ScriptedClassifier(tmp_path / "junk.pt")
    with pytest.raises(ConfigError, match="does not exist"):
        ScriptedClassifier(tmp_path / "missing.pt")


@pytest.mark.slow
def test_metric_shapes_logs_conditioning_scores_in_a_conditional_run(make_cfg):
    _, cfg = train(make_cfg, "model=dcgan", "data.labels=class", "metric=shapes", "kimg=0.064",
                   "metric.every_kimg=null", "metric.num_real=64", "metric.cond_per_class=16",
                   "callbacks.samples=null")
    metrics = read_metrics(cfg.paths.output_dir)
    for name in ("val/fd_shapes", "val/cond_acc", "val/real_acc", "val/fd_intra",
                 "val/cond_acc_ring", "val/real_acc_disc"):
        assert name in metrics, name
    assert 0 <= metrics["val/cond_acc"][-1] <= 1


@pytest.mark.slow
def test_offline_scoring_of_a_conditional_checkpoint(make_cfg):
    from ganlab.training.checkpoints import load_generator
    from ganlab.training.scoring import build_evaluator, data_config, reference_data, score

    _, cfg = train(make_cfg, "model=dcgan", "data.labels=class", "data.resolution=32",
                   "kimg=0.032", "callbacks.samples=null")
    generator, config = load_generator(f"{cfg.paths.output_dir}/checkpoints/last.ckpt")
    from omegaconf import OmegaConf

    metric = make_cfg("metric=shapes", "metric.num_real=64", "metric.cond_per_class=8",
                      name="m").metric
    OmegaConf.set_struct(metric, False)
    evaluator = build_evaluator(metric)
    data = data_config(config, {})
    values = score(evaluator, generator, config, data, reference_data(data, "val"), "val", "cpu")
    assert {"fd_shapes", "cond_acc", "real_acc", "fd_intra", "cond_acc_ring"} <= set(values)
