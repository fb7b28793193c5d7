"""`python -m ganlab.evaluate`: scores a checkpoint, a run dir or a sweep dir with the training
evaluator, writes eval.json, and rejects bad input before any scoring."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import MissingConfigException
from omegaconf import DictConfig, open_dict

from ganlab.cli import evaluate as ev
from ganlab.training.fit import train
from ganlab.training.scoring import GeneratorView
from ganlab.utils import ConfigError
from tests.conftest import CONF_DIR, TINY, compose_config
from tests.fid_helpers import inception_weights  # noqa: F401 (fixture)

TINY_FEATURES = "+metric.feature_extractor={_target_:tests.fid_helpers.TinyFeatures}"


def eval_cfg(tmp_path: Path, *overrides: str) -> DictConfig:
    """conf/eval.yaml with `overrides` (data.* as on the command line), as the CLI composes it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "eval", overrides=ev.allow_data_overrides(list(overrides)), return_hydra_config=True
        )
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "eval_logs")
        cfg.paths.cache_dir = str(tmp_path / "cache")
        del cfg.hydra
    return cfg


def train_tiny(make_cfg, name: str, *overrides: str) -> Path:
    """A tiny 16 px DCGAN run (0.064 kimg); returns its run dir (checkpoints/last.ckpt)."""
    cfg = make_cfg("kimg=0.064", *overrides, name=name)
    train(cfg)
    return Path(cfg.paths.output_dir)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny run for the module (trained once)."""
    cfg = compose_config([*TINY, "kimg=0.064"], tmp_path_factory.mktemp("trained") / "run")
    train(cfg)
    return Path(cfg.paths.output_dir)


@pytest.fixture
def run_dir(trained: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny run (tests write eval.json and best.ckpt into it)."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


@pytest.mark.slow
def test_scores_a_checkpoint_with_fid(tmp_path, run_dir, inception_weights, capsys):  # noqa: F811
    cfg = eval_cfg(
        tmp_path,
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        f"metric.weights_path={inception_weights}",
        "metric.num_real=6",
        "metric.num_fake=6",
        "metric.batch_size=6",
        "eval.device=cpu",
    )
    (row,) = ev.evaluate(cfg)
    assert math.isfinite(row["fid"]) and row["fid"] > 0
    assert (row["num_real"], row["num_fake"], row["resolution"]) == (6, 6, 16)
    assert row["kimg"] == pytest.approx(0.064)
    saved = json.loads((run_dir / "eval.json").read_text())
    assert saved["rows"][0]["fid"] == pytest.approx(row["fid"])
    assert saved["protocol"]["split"] == "val" and saved["protocol"]["ema"] is True
    assert saved["protocol"]["extractor"]["extractor"] == "torch-fidelity-inception-v3"
    header = capsys.readouterr().out.splitlines()[0]
    assert header.startswith("| job | kimg | fid |")


@pytest.mark.slow
def test_raw_and_ema_generators_and_the_train_split_differ(tmp_path, run_dir):
    base = [f"ckpt_path={run_dir}", TINY_FEATURES, "metric.num_real=32", "metric.num_fake=32"]
    ema = ev.evaluate(eval_cfg(tmp_path, *base))[0]
    raw = ev.evaluate(eval_cfg(tmp_path, *base, "eval.ema=false"))[0]
    train_split = ev.evaluate(eval_cfg(tmp_path, *base, "eval.split=train"))[0]
    again = ev.evaluate(eval_cfg(tmp_path, *base))[0]
    assert raw["fid"] != ema["fid"] and train_split["fid"] != ema["fid"]
    assert again["fid"] == ema["fid"]  # seeded latents, cached val statistics
    caches = sorted(p.name for p in (tmp_path / "cache" / "fid").iterdir())
    assert len(caches) == 2  # val and train statistics never share an entry


@pytest.mark.slow
def test_a_sweep_dir_gives_one_row_per_job(tmp_path, make_cfg, capsys):
    sweep = tmp_path / "sweep"
    for job, seed in ((0, 0), (1, 1)):
        run = train_tiny(make_cfg, f"job{job}", f"seed={seed}")
        shutil.copytree(run, sweep / str(job))
    (sweep / "2").mkdir()  # a failed job without a checkpoint is skipped
    rows = ev.evaluate(
        eval_cfg(tmp_path, f"ckpt_path={sweep}", TINY_FEATURES, "metric.num_real=16")
    )
    assert [r["job"] for r in rows] == ["0", "1"]
    assert rows[0]["fid"] != rows[1]["fid"]
    saved = json.loads((sweep / "eval.json").read_text())
    assert [r["job"] for r in saved["rows"]] == ["0", "1"]
    assert all(Path(r["checkpoint"]).name == "last.ckpt" for r in saved["rows"])
    table = capsys.readouterr().out
    assert table.count("\n| 0 |") == 1 and table.count("\n| 1 |") == 1


def test_a_run_dir_prefers_best_ckpt(tmp_path, run_dir):
    shutil.copy(run_dir / "checkpoints" / "last.ckpt", run_dir / "checkpoints" / "best.ckpt")
    (target,), out = ev.find_targets(str(run_dir))
    assert target.checkpoint.name == "best.ckpt" and out == run_dir


@pytest.mark.slow
def test_data_overrides_reach_the_reference_data(tmp_path, run_dir):
    base = [f"ckpt_path={run_dir}", TINY_FEATURES, "metric.num_real=64"]
    (row,) = ev.evaluate(eval_cfg(tmp_path, *base, "data.num_val_images=8"))
    assert row["num_real"] == 8  # capped at the overridden split size


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([], r"ckpt_path is not set"),
        (["ckpt_path={tmp}/nothing"], r"does not exist"),
        (["ckpt_path={tmp}/empty"], r"holds no checkpoint: looked for"),
        (["ckpt_path={run}", "eval.split=test"], r"eval.split='test' is not a split"),
        (["ckpt_path={run}", "metric=none"], r"metric=none scores nothing"),
        (["ckpt_path={run}", "data.resolution=32"], r"data.resolution=32 differs"),
    ],
)
def test_bad_input_is_a_config_error_before_scoring(
    tmp_path, run_dir, overrides, message, monkeypatch
):
    (tmp_path / "empty" / "0").mkdir(parents=True)
    overrides = [o.format(tmp=tmp_path, run=run_dir) for o in overrides]

    def no_scoring(*args, **kwargs):
        raise AssertionError("scored before the check")

    monkeypatch.setattr(ev, "score", no_scoring)
    with pytest.raises(ConfigError, match=message):
        extractor = [] if "metric=none" in overrides else [TINY_FEATURES]
        ev.evaluate(eval_cfg(tmp_path, *overrides, *extractor))


@pytest.mark.slow
def test_scores_a_32px_checkpoint_with_the_shapes_metric(tmp_path, make_cfg):
    # no EMA ramp-up: after 2 iterations the EMA G is still near its start, unlike G
    run = train_tiny(make_cfg, "run32", "data.resolution=32", "data.num_images=64", "kimg=0.032",
                     "model.ema_rampup=null")
    base = [f"ckpt_path={run}", "metric=shapes", "metric.num_real=64", "metric.num_fake=64"]
    (ema,) = ev.evaluate(eval_cfg(tmp_path, *base))
    (raw,) = ev.evaluate(eval_cfg(tmp_path, *base, "eval.ema=false"))
    assert ema["resolution"] == 32 and math.isfinite(ema["fd_shapes"]) and "fid" not in ema
    assert raw["fd_shapes"] != ema["fd_shapes"]
    saved = json.loads((run / "eval.json").read_text())
    assert saved["protocol"]["extractor"]["extractor"] == "ShapesFeatures"
    assert saved["protocol"]["ema"] is False


@pytest.mark.slow
def test_the_shapes_metric_refuses_other_sides_and_other_data(tmp_path, run_dir, monkeypatch):
    monkeypatch.setattr(ev, "score", None)  # nothing may be scored
    with pytest.raises(ConfigError, match=r"makes 16 px images; .* takes 32 px.* metric=fid"):
        ev.evaluate(eval_cfg(tmp_path, f"ckpt_path={run_dir}", "metric=shapes"))
    path = run_dir / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    checkpoint["ganlab"]["config"]["data"]["_target_"] = "ganlab.data.folder.FolderDataModule"
    torch.save(checkpoint, path)
    with pytest.raises(ConfigError, match=r"trained on data._target_=ganlab.data.folder"):
        ev.evaluate(eval_cfg(tmp_path, f"ckpt_path={run_dir}", "metric=shapes"))


def test_an_unknown_metric_names_the_choices(tmp_path):
    with pytest.raises(MissingConfigException, match="Could not find 'metric/nosuch'"):
        eval_cfg(tmp_path, "metric=nosuch")


def test_generator_view_is_what_the_evaluator_reads():
    generator = torch.nn.Linear(4, 4)
    view = GeneratorView(generator, {"data": {}})
    assert view.generator_ema is generator and view.device == torch.device("cpu")
