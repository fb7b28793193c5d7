"""`python -m ganlab.quality`: the runner trains a row per seed, scores raw and EMA G with the
shapes metric next to the baselines, and writes QUALITY.md and quality.json."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ganlab.cli import quality
from ganlab.data.shapes import ABSENT, render_shapes

TINY_ROW = (
    "tiny model=dcgan model.generator.width=4 model.discriminator.width=4 "
    "data.num_images=128 data.batch_size=16"
)


def test_the_runner_writes_the_table(tmp_path, capsys):
    args = [
        "--rows",
        TINY_ROW,
        "--kimg",
        "0.064",
        "--seeds",
        "0",
        "--num-fake",
        "64",
        "--out",
        str(tmp_path / "exp"),
        "--workdir",
        str(tmp_path / "runs"),
    ]
    assert quality.main(args) == 0

    saved = json.loads((tmp_path / "exp" / "quality.json").read_text())
    (row,) = saved["rows"]
    assert row["name"] == "tiny" and row["seeds"] == [0] and row["kimg"] == 0.064
    for which in ("g", "ema"):
        values = row["runs"][0][which]
        assert set(values) >= {"fd_shapes", "precision", "recall", "density", "coverage"}
        assert math.isfinite(values["fd_shapes"]) and values["num_fake"] == 64
    assert row["runs"][0]["g"]["fd_shapes"] != row["runs"][0]["ema"]["fd_shapes"]
    baselines = {b["name"]: b["values"] for b in saved["baselines"]}
    real, noise = baselines["real (train split)"], baselines["uniform noise"]
    collapse = baselines["one kind (discs only)"]
    assert real["fd_shapes"] < collapse["fd_shapes"] < noise["fd_shapes"]
    assert collapse["recall"] < real["recall"]

    text = (tmp_path / "exp" / "QUALITY.md").read_text()
    assert "| tiny | G |" in text and "| tiny | EMA G |" in text
    assert "| uniform noise | baseline |" in text and "machine:" in text
    assert "python -m ganlab.quality --rows" in text


def test_one_kind_images_hold_one_kind_only():
    images = quality.one_kind_images(16, seed=3, kind=0)
    assert images.shape == (16, 3, 32, 32) and images.dtype == np.uint8
    rendered, labels = render_shapes(64, 32, seed=3, return_labels=True)
    kinds = labels["kind"]
    keep = (kinds[:, 0] == 0) & ((kinds[:, 1] == 0) | (kinds[:, 1] == ABSENT))
    assert np.array_equal(images[: int(keep.sum())], rendered[keep][:16])


def test_rows_only_and_extra_overrides():
    args = quality.parse_args(["--only", "sagan,pggan", "--kimg", "8", "model.ema_kimg=1"])
    rows = quality.select_rows(args)
    assert list(rows) == ["sagan", "pggan"]
    assert rows["sagan"][-1] == "model.ema_kimg=1"
    assert "model.schedule.fade_kimg=1.0" in rows["pggan"]
    with pytest.raises(quality.ConfigError, match="no row named"):
        quality.select_rows(quality.parse_args(["--only", "nosuch"]))
    parsed = quality.parse_rows(["a model=sagan model.generator.attention=[8,16]"])
    assert parsed == {"a": ["model=sagan", "model.generator.attention=[8,16]"]}


def test_every_preset_row_composes(tmp_path):
    for overrides in quality.preset_rows(quality.KIMG).values():
        cfg = quality.compose_config("train", [*quality.BASE, *overrides], tmp_path)
        assert cfg.data.resolution == 32 and cfg.metric is None
