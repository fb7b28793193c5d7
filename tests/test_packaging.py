"""ganlab as a package: pyproject names every package and console script; the wheel carries every
config and the shapes weights and trains from an empty folder in a fresh virtualenv; light tools
start without Lightning."""

from __future__ import annotations

import importlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import clean_env

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS = ("ganlab-train", "ganlab-generate", "ganlab-evaluate", "ganlab-fid", "ganlab-report",
           "ganlab-quality", "ganlab-bench")
# a few training steps at 16 px with narrow nets, no metric: seconds on a CPU
TINY = ("debug=tiny", "trainer.max_steps=4", "metric=none", "callbacks.progress=null",
        "trainer.accelerator=cpu")


def test_pyproject_lists_every_package_and_console_script():
    packages = {"ganlab.conf"} | {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "ganlab").rglob("__init__.py")
    }
    assert set(PYPROJECT["tool"]["setuptools"]["packages"]) == packages
    scripts = PYPROJECT["project"]["scripts"]
    assert set(scripts) == set(SCRIPTS)
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), target


@pytest.mark.slow  # a fresh interpreter per tool
@pytest.mark.parametrize("tool", ["generate", "fid", "report"])
def test_light_tools_answer_help_without_importing_lightning(tool):
    code = (f"import runpy, sys\nsys.argv = ['ganlab.{tool}', '--help']\ntry:\n"
            f"    runpy.run_module('ganlab.{tool}', run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pytorch_lightning', 'lightning', 'lightning_fabric')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert "usage:" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_wheel_carries_every_config_and_the_shapes_weights(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (ROOT / "conf").rglob("*.yaml"):
        assert f"ganlab/conf/{path.relative_to(ROOT / 'conf').as_posix()}" in names, path
    for path in (ROOT / "ganlab" / "metrics" / "weights").iterdir():
        assert f"ganlab/metrics/weights/{path.name}" in names, path
    assert not any(n.startswith(("tests/", "conf/", "experiments/")) for n in names)


@pytest.mark.slow
def test_installed_wheel_trains_from_an_empty_folder(installed, tmp_path):
    where = subprocess.run([installed / "python", "-c", "import ganlab; print(ganlab.__file__)"],
                           cwd=tmp_path, env=clean_env(), capture_output=True, text=True,
                           check=True)
    assert Path(where.stdout.strip()).is_relative_to(installed.parent)  # the wheel, not ROOT
    for script in SCRIPTS:
        assert (installed / script).is_file(), script
    done = subprocess.run([installed / "ganlab-train", *TINY], cwd=tmp_path, env=clean_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    (run,) = (tmp_path / "outputs" / "debug" / "runs").iterdir()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / ".hydra" / "config.yaml").is_file() and (run / "run.log").is_file()
    assert list(run.rglob("metrics.csv"))
