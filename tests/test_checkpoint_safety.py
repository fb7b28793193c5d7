"""Checkpoints are data, not code: every way ganlab loads a checkpoint (generate, evaluate,
resume through ganlab and through Lightning's `ckpt_path`, init_from) refuses a file that holds
a pickled object with a side effect, and a stored config whose `_target_` lies outside ganlab
(and the modules the user trusts) is refused before anything is instantiated. Each payload here
would `touch` a marker file if it ran; the tests assert the marker never appears and the error
names the file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from ganlab import evaluate as ev
from ganlab import generate
from ganlab.callbacks.checkpoint import AtomicCheckpointIO
from ganlab.checkpoints import load_checkpoint, load_generator
from ganlab.nets.dcgan import Generator
from ganlab.run import build, train
from ganlab.utils import ConfigError
from tests.conftest import CONF_DIR, TINY, compose_config

ROOT = Path(__file__).resolve().parents[1]
TINY_FEATURES = "+metric.feature_extractor={_target_:tests.fid_helpers.TinyFeatures}"


class Touch:
    """Unpickling this runs `touch PATH` (what a malicious checkpoint would do)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A genuine tiny run's last.ckpt (trained once for the module)."""
    cfg = compose_config([*TINY, "kimg=0.032"], tmp_path_factory.mktemp("trained") / "run")
    train(cfg)
    return Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"


def plant_object(trained: Path, folder: Path) -> tuple[Path, Path]:
    """RUN/checkpoints/last.ckpt: the genuine checkpoint plus a pickled `Touch`; (ckpt, marker)."""
    marker = folder / "pickle_ran"
    checkpoint = torch.load(trained, map_location="cpu", weights_only=True)
    checkpoint["extra"] = Touch(marker)
    path = folder / "run" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    torch.save(checkpoint, path)
    return path, marker


def plant_target(trained: Path, folder: Path, where: str) -> tuple[Path, Path]:
    """A checkpoint that loads as data (weights_only) but whose stored config's `where` node
    ("generator" or "data") is `{_target_: os.system, _args_: [touch MARKER]}`."""
    marker = folder / f"target_ran_{where}"
    checkpoint = torch.load(trained, map_location="cpu", weights_only=True)
    config = checkpoint["ganlab"]["config"]
    payload = {"_target_": "os.system", "_args_": [f"touch {marker}"]}
    if where == "generator":
        config["model"]["generator"] = payload
    else:
        config["data"] = {**payload, "resolution": config["data"]["resolution"]}
    path = folder / f"run_{where}" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    torch.save(checkpoint, path)
    torch.load(path, weights_only=True)  # plain data: the safe loader itself accepts it
    return path, marker


def eval_cfg(tmp_path: Path, *overrides: str) -> DictConfig:
    """conf/eval.yaml with `overrides`, as `python -m ganlab.evaluate` composes it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("eval", overrides=list(overrides), return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "eval_logs")
        cfg.paths.cache_dir = str(tmp_path / "cache")
        del cfg.hydra
    return cfg


@pytest.mark.slow
def test_the_genuine_checkpoint_loads_as_data(trained):
    assert load_checkpoint(trained)["ganlab"]["nimg"] > 0
    generator, config = load_generator(trained)
    assert config["model"]["generator"]["_target_"].startswith("ganlab.")


@pytest.mark.slow
def test_a_pickled_object_runs_under_no_load(trained, tmp_path, make_cfg, capsys):
    evil, marker = plant_object(trained, tmp_path)
    with pytest.raises(ConfigError, match="last.ckpt.*(not plain data|weights_only)"):
        load_checkpoint(evil)

    # generate (its CLI: exit status 2 and one line naming the file)
    assert generate.main([str(evil), "--num", "4", "--out", str(tmp_path / "gen")]) == 2
    message = capsys.readouterr().err.strip()
    assert str(evil) in message and "\n" not in message

    # evaluate (a checkpoint file, and its run folder)
    for target in (evil, evil.parent.parent):
        with pytest.raises(ConfigError, match="last.ckpt"):
            ev.evaluate(eval_cfg(tmp_path, f"ckpt_path={target}", TINY_FEATURES))

    # resume through ganlab.run (checked before training)
    with pytest.raises(ConfigError, match="last.ckpt"):
        train(make_cfg("kimg=0.064", f"ckpt_path={evil}", name="resumed"))

    # a new run from its weights (init_from)
    with pytest.raises(ConfigError, match="last.ckpt"):
        train(make_cfg("kimg=0.064", f"init_from={evil}", name="init"))

    # resume through Lightning's own load (the run's checkpoint IO), past ganlab's check
    with pytest.raises(ConfigError, match="last.ckpt"):
        AtomicCheckpointIO().load_checkpoint(evil)
    datamodule, model, trainer = build(make_cfg("kimg=0.064", name="lightning"))
    with pytest.raises(ConfigError, match="last.ckpt"):
        trainer.fit(model, datamodule=datamodule, ckpt_path=str(evil))
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("where", ["generator", "data"])
def test_a_stored_target_outside_ganlab_is_refused(trained, tmp_path, where, capsys):
    evil, marker = plant_target(trained, tmp_path, where)
    if where == "generator":
        with pytest.raises(ConfigError, match=r"os\.system"):
            load_generator(evil)
        assert generate.main([str(evil), "--num", "4", "--out", str(tmp_path / "gen")]) == 2
        message = capsys.readouterr().err.strip()
        assert str(evil) in message and "os.system" in message
    with pytest.raises(ConfigError, match=r"os\.system"):
        ev.evaluate(eval_cfg(tmp_path, f"ckpt_path={evil}", TINY_FEATURES))
    assert not marker.exists()


def test_a_trusted_module_is_allowed(trained, tmp_path, monkeypatch):
    """The user's own modules: GANLAB_TRUSTED_MODULES=mypkg lets a checkpoint name mypkg.*."""
    checkpoint = torch.load(trained, map_location="cpu", weights_only=True)
    generator = checkpoint["ganlab"]["config"]["model"]["generator"]
    generator["_target_"] = "tests.test_checkpoint_safety.UserGenerator"
    path = tmp_path / "user.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(ConfigError, match="GANLAB_TRUSTED_MODULES"):
        load_generator(path)
    monkeypatch.setenv("GANLAB_TRUSTED_MODULES", "tests.test_checkpoint_safety")
    net, _ = load_generator(path)
    assert isinstance(net, UserGenerator)


class UserGenerator(Generator):
    """Stands for a generator class in the user's own package."""


@pytest.mark.slow
def test_resume_on_the_command_line_refuses_with_exit_status_2(trained, tmp_path):
    evil, marker = plant_object(trained, tmp_path)
    command = [sys.executable, "-m", "ganlab.run", *TINY, f"ckpt_path={evil}",
               f"hydra.run.dir={tmp_path / 'cli'}", "extras.print_config=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr + done.stdout
    assert str(evil) in done.stderr + done.stdout
    assert not marker.exists()
