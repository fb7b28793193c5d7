"""Sampling by label from a checkpoint: `ganlab.generate RUN --class NAME | --attributes ... |
--per-class N`, names from the checkpoint, unknown names listing the known ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ganlab.cli.generate import draw_latents, main
from ganlab.data.transforms import to_uint8
from ganlab.training.checkpoints import load_generator
from tests.test_conditioning_train import train


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory) -> Path:
    from tests.conftest import TINY, compose_config

    out = tmp_path_factory.mktemp("cond") / "run"
    cfg = compose_config([*TINY, "model=dcgan", "data.labels=class", "kimg=0.032",
                          "callbacks.samples=null"], out)
    train(lambda *o, name: cfg, name="run")
    return out


def read_pngs(folder: Path) -> torch.Tensor:
    files = sorted(folder.glob("*.png"))
    return torch.stack([torch.from_numpy(np.array(Image.open(f))).permute(2, 0, 1) for f in files])


def expected(run: Path, kind: int, num: int, seed: int = 0) -> torch.Tensor:
    generator, _ = load_generator(run / "checkpoints" / "last.ckpt")
    z = draw_latents(num, generator.z_dim, seed)
    with torch.no_grad():
        return to_uint8(generator(z, F.one_hot(torch.full((num,), kind), 4).float()))


@pytest.mark.slow
def test_generate_class_draws_that_class(conditional_run, tmp_path):
    assert main([str(conditional_run), "--class", "ring", "--num", "5", "--out",
                 str(tmp_path / "ring")]) == 0
    images = read_pngs(tmp_path / "ring")
    assert torch.equal(images, expected(conditional_run, 3, 5))  # ring = class 3, its labels
    assert not torch.equal(images, expected(conditional_run, 0, 5))
    assert main([str(conditional_run), "--class", "1", "--num", "2", "--out",
                 str(tmp_path / "one")]) == 0  # an index works too
    assert torch.equal(read_pngs(tmp_path / "one"), expected(conditional_run, 1, 2))


@pytest.mark.slow
def test_generate_per_class_grid_has_a_row_per_class(conditional_run, tmp_path, capsys):
    assert main([str(conditional_run), "--per-class", "3", "--out",
                 str(tmp_path / "grid.png")]) == 0
    assert "rows: disc; square; triangle; ring" in capsys.readouterr().out
    grid = Image.open(tmp_path / "grid.png")
    side = 16 * 4 + 1  # 16 px images upscaled to 64, one px padding
    assert grid.size == (3 * side + 1, 4 * side + 1)


@pytest.mark.slow
def test_unknown_class_lists_the_known_ones(conditional_run, tmp_path, capsys):
    assert main([str(conditional_run), "--class", "hexagon", "--out", str(tmp_path)]) == 2
    assert "known: disc, square, triangle, ring" in capsys.readouterr().err
    assert main([str(conditional_run), "--attributes", "Smiling=1", "--out", str(tmp_path)]) == 2
    assert "use --class" in capsys.readouterr().err


@pytest.mark.slow
def test_class_on_an_unconditional_checkpoint_is_an_error(make_cfg, tmp_path, capsys):
    _, cfg = train(make_cfg, "model=dcgan", "kimg=0.016", "callbacks.samples=null")
    assert main([cfg.paths.output_dir, "--class", "disc", "--out", str(tmp_path / "x")]) == 2
    assert "unconditional" in capsys.readouterr().err


def test_attributes_reach_the_generator():
    import argparse

    from ganlab.cli.generate import conditional

    seen = []

    class Recorder(torch.nn.Module):
        z_dim = 3

        def forward(self, z, y):
            seen.append(y)
            return z

    config = {"model": {"conditioning": "concat", "labels": {
        "kind": "attributes", "names": ["Smiling", "Eyeglasses", "Bald"]}}}
    args = argparse.Namespace(class_name=None, attributes="Smiling=1,Bald=1", per_class=None,
                              seed=0)
    generator, labels = conditional(Recorder(), config, args)
    generator(torch.zeros(2, 3))
    assert seen[0].tolist() == [[1.0, 0.0, 1.0], [1.0, 0.0, 1.0]]
    assert labels.multi_label
