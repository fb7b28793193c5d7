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


@pytest.mark.slow
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
    assert "| tiny | 0.064 | G |" in text and "| tiny | 0.064 | EMA G |" in text
    assert "| uniform noise | | baseline |" in text and "machine:" in text
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


@pytest.mark.slow
def test_every_preset_row_composes_at_its_own_length(tmp_path):
    rows = quality.preset_rows()
    assert set(rows) == set(quality.CONVERGED_KIMG)
    for name, row in rows.items():
        overrides, seeds = quality.row_seeds(row, quality.SEEDS)
        assert quality.row_kimg(overrides, quality.KIMG) == quality.CONVERGED_KIMG[name]
        assert seeds == ([0, 1] if name in ("dcgan", "sagan") else [0])
        cfg = quality.compose_config("train", [*quality.BASE, *overrides], tmp_path)
        assert cfg.data.resolution == 32 and cfg.metric is None
        assert cfg.kimg == quality.CONVERGED_KIMG[name]


@pytest.mark.slow
def test_learning_curves_side_by_side_and_an_interrupted_table_resumes(tmp_path):
    """--jobs 2 runs the seeds in worker processes; --curve-kimg scores every snapshot (raw and
    EMA) into quality.json and curves.png; a table run again after a shorter one resumes its
    runs (last.ckpt) instead of starting over, and rescoring reuses curve.json."""
    def table(kimg: str) -> dict:
        args = ["--rows", TINY_ROW, "--kimg", kimg, "--seeds", "0,1", "--num-fake", "64",
                "--out", str(tmp_path / "exp"), "--workdir", str(tmp_path / "runs"),
                "--jobs", "2", "--curve-kimg", "1", "--no-baselines", "data.batch_size=8"]
        assert quality.main(args) == 0
        return json.loads((tmp_path / "exp" / "quality.json").read_text())

    short = table("1")
    assert [p["kimg"] for p in short["rows"][0]["runs"][0]["curve"]] == [1.0]
    saved = table("2")
    (row,) = saved["rows"]
    for run in row["runs"]:
        assert [p["kimg"] for p in run["curve"]] == [1.0, 2.0]
        for point in run["curve"]:
            assert math.isfinite(point["ema"]["fd_shapes"]) and "recall" in point["g"]
        assert run["curve"][0] == short["rows"][0]["runs"][run["seed"]]["curve"][0]  # cached
        assert math.isnan(run["train_s"]) is False  # the second table trained (resumed) it
    assert row["runs"][0]["g"] != row["runs"][1]["g"]  # two seeds, two runs
    assert (tmp_path / "exp" / "curves.png").stat().st_size > 1000
    assert "curves.png" in (tmp_path / "exp" / "QUALITY.md").read_text()
    checkpoint = tmp_path / "runs" / "tiny" / "seed0" / "checkpoints" / "last.ckpt"
    assert quality.finished_nimg(checkpoint.parents[1]) == 2000


def test_bad_jobs_and_curve_interval_are_refused(capsys):
    assert quality.main(["--jobs", "0"]) == 2
    assert quality.main(["--curve-kimg", "-1"]) == 2
    assert "--curve-kimg -1" in capsys.readouterr().err
