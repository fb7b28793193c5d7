"""Shared fixtures: the real Hydra config, composed and shrunk for a CPU and `tmp_path`."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
# metric=none: no Inception in other tests even where the weights are in the hub cache
# (FID tests pass metric=fid after it; the later override wins)
TINY = ["debug=tiny", "trainer.accelerator=cpu", "callbacks.progress=null", "logger=csv",
        "metric=none"]

os.environ.setdefault("WANDB_MODE", "offline")
torch.set_num_threads(min(2, torch.get_num_threads()))


def compose_config(overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose conf/train.yaml with overrides, as `python -m ganlab.run` would, into output_dir."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.cache_dir = str(output_dir.parent / "cache")
        del cfg.hydra
    return cfg


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """make_cfg(*overrides, name="run") -> a tiny CPU config writing to tmp_path/name."""

    def make(*overrides: str, name: str = "run") -> DictConfig:
        return compose_config([*TINY, *overrides], tmp_path / name)

    return make


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def read_metrics(run_dir: Path) -> dict[str, list[float]]:
    """Columns of the run's metrics.csv as lists of floats (empty cells skipped)."""
    import csv

    (path,) = list(Path(run_dir).rglob("metrics.csv"))
    columns: dict[str, list[float]] = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if value not in ("", None):
                    columns.setdefault(key, []).append(float(value))
    return columns


# ----------------------------------------------------------------------------- installed wheel
@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The wheel of this checkout, built without isolation (setuptools from this environment)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "--wheel-dir", str(out), str(CONF_DIR.parent)],
                   check=True, capture_output=True, timeout=600)
    (path,) = out.glob("ganlab-*.whl")
    return path


@pytest.fixture(scope="session")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtualenv holding the wheel; its dependencies (torch, Lightning, ...) are seen
    through a .pth line naming this environment's site-packages, so nothing is downloaded. The
    source tree is not on its path (this environment's editable-install hook is a .pth file in
    that folder, which a .pth line does not run). Returns the venv's bin folder."""
    env = tmp_path_factory.mktemp("venv")
    venv.create(env, with_pip=False)
    purelib = Path(sysconfig.get_paths(vars={"base": str(env), "platbase": str(env)})["purelib"])
    (purelib / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"),
                    "install", "--no-deps", "--ignore-installed", "--quiet", str(wheel)],
                   check=True, capture_output=True, timeout=600)
    return env / "bin"


def clean_env() -> dict[str, str]:
    """The environment without PYTHONPATH (the source tree must not leak in)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"WANDB_MODE": "offline"}
