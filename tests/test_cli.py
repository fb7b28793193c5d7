"""Command-line behaviour: bad input fails before training with a message naming the fix;
`ganlab.generate` writes images from any checkpoint; `--cfg job` prints the config."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.errors import MissingConfigException
from PIL import Image

from ganlab.cli.generate import main as generate_main
from ganlab.training.fit import MetricMissingError, build, check_resume, metric_value, train
from ganlab.utils import ConfigError
from tests.conftest import compose_config, read_metrics


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.resolution=24", r"data.resolution=24 is not supported: it must be a power of two"),
        ("data.resolution=512", r"between 8 and 256"),
        ("data.batch_size=0", r"data.batch_size=0 must be a positive integer"),
        ("model.lr_g=-1", r"model.lr_g=-1 must be a positive number"),
        ("model.lr_d=0", r"model.lr_d=0 must be a positive number"),
        ("model.n_critic=0", r"model.n_critic=0 must be an integer >= 1"),
    ],
)
def test_bad_values_raise_config_errors(make_cfg, override, message):
    with pytest.raises(ConfigError, match=message):
        build(make_cfg(override))


@pytest.mark.parametrize("override", ["model=nosuchgan", "data=nosuchdata"])
def test_unknown_group_option_names_the_choices(tmp_path, override):
    with pytest.raises(MissingConfigException, match="Could not find"):
        compose_config([override], tmp_path)


@pytest.mark.slow
def test_missing_and_foreign_checkpoints_are_rejected(make_cfg, tmp_path):
    _, model, _ = build(make_cfg())
    with pytest.raises(ConfigError, match="does not exist"):
        check_resume(make_cfg(f"ckpt_path={tmp_path}/nope.ckpt"), model)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ConfigError, match="is not a ganlab checkpoint"):
        check_resume(make_cfg(f"ckpt_path={foreign}"), model)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="is not a ganlab checkpoint"):
        check_resume(make_cfg(f"ckpt_path={junk}"), model)


def test_optimized_metric_is_looked_up_by_name_with_a_clear_error():
    metrics = {"val/fid_best": torch.tensor(12.5), "train/d_loss": torch.tensor(1.0)}
    assert metric_value(metrics, "val/fid_best") == 12.5
    assert metric_value(metrics, None) is None
    with pytest.raises(MetricMissingError, match=r"optimized_metric=val/kid_mean was not logged.*"
                       r"\['train/d_loss', 'val/fid_best'\]"):
        metric_value(metrics, "val/kid_mean")


@pytest.mark.slow
def test_optimized_metric_defaults_follow_the_metric(tmp_path):
    assert compose_config(["metric=fid"], tmp_path).optimized_metric == "val/fid_best"
    assert compose_config(["metric=none"], tmp_path).optimized_metric is None
    sweep = compose_config(["hparams_search=optuna_fid"], tmp_path)
    assert sweep.optimized_metric == "val/fid_best"


@pytest.mark.slow
def test_train_returns_any_logged_metric_by_name(make_cfg, tmp_path):
    cfg = make_cfg("kimg=0.032", "optimized_metric=train/d_loss")
    value = train(cfg)
    assert value == pytest.approx(read_metrics(tmp_path / "run")["train/d_loss"][-1])
    with pytest.raises(MetricMissingError, match=r"val/fid_best was not logged.*'train/d_loss'"):
        train(make_cfg("kimg=0.032", "optimized_metric=val/fid_best", name="missing"))


@pytest.mark.slow
def test_cli_exits_2_with_the_message_before_training(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ganlab.run", "data.resolution=24", f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert "data.resolution=24 is not supported" in result.stdout + result.stderr
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_cfg_job_prints_the_resolved_config():
    result = subprocess.run(
        [sys.executable, "-m", "ganlab.run", "--cfg", "job", "model.lr_g=0.001"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "lr_g: 0.001" in result.stdout and "_target_: ganlab.models.dcgan.DCGAN" in result.stdout


@pytest.fixture
def checkpoint(make_cfg, tmp_path) -> Path:
    train(make_cfg("kimg=0.064"))
    return tmp_path / "run" / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_generate_writes_pngs_and_grids(checkpoint, tmp_path):
    assert generate_main([str(checkpoint), "--num", "5", "--out", str(tmp_path / "fakes")]) == 0
    files = sorted((tmp_path / "fakes").glob("*.png"))
    assert len(files) == 5
    assert Image.open(files[0]).size == (16, 16)
    grid = tmp_path / "grid.png"
    assert generate_main([str(checkpoint), "--num", "4", "--out", str(grid), "--grid"]) == 0
    assert Image.open(grid).size == (2 * 17 + 1, 2 * 17 + 1)  # 2x2 with 1 px padding


@pytest.mark.slow
def test_generate_is_deterministic_per_seed(checkpoint, tmp_path):
    for name in ("a", "b"):
        generate_main([str(checkpoint), "--num", "2", "--seed", "3", "--out", str(tmp_path / name)])
    a, b = (Image.open(tmp_path / n / "000000.png").tobytes() for n in ("a", "b"))
    assert a == b


def test_generate_rejects_a_bad_checkpoint(tmp_path, capsys):
    assert generate_main([str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
