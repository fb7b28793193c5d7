"""docs/extending.md does what it says, outside the repository: the page's own module (G, D, a
GANLoss subclass, a feature network) and config folder are written into a temporary folder, and
its commands train on an image folder with the installed wheel's `ganlab-train`, then generate
and evaluate the result."""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import clean_env

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "extending.md"
FENCE = re.compile(r"```(\w+)\n(.*?)```", re.S)


def guide_files() -> dict[str, str]:
    """{relative path: text} of every code block of the guide whose first line is `# PATH`."""
    files = {}
    for _, body in FENCE.findall(GUIDE.read_text()):
        first = body.splitlines()[0]
        if re.fullmatch(r"# [\w/]+\.(py|yaml)", first):
            files[first[2:]] = body
    return files


def guide_commands() -> list[list[str]]:
    """The guide's `ganlab-...` command lines, split as the shell would."""
    blocks = [body for lang, body in FENCE.findall(GUIDE.read_text()) if lang == "bash"]
    return [shlex.split(line) for body in blocks for line in body.splitlines()
            if line.startswith("ganlab-")]


def write_images(folder: Path, num: int = 40, side: int = 16) -> None:
    """num PNGs of one coloured square each on black, side x side px."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(num):
        image = np.zeros((side, side, 3), np.uint8)
        x, y = rng.integers(1, side - 6, 2)
        image[y:y + 5, x:x + 5] = rng.integers(64, 256, 3)
        Image.fromarray(image).save(folder / f"{i:03d}.png")


def test_guide_names_its_files_and_commands():
    assert set(guide_files()) == {"my_gan.py", "my_conf/model/my_gan.yaml",
                                  "my_conf/loss/soft_hinge.yaml"}
    assert [c[0] for c in guide_commands()] == ["ganlab-train", "ganlab-generate",
                                                "ganlab-evaluate"]


@pytest.mark.slow
def test_the_guide_trains_generates_and_evaluates_outside_the_repository(installed, tmp_path):
    for name, text in guide_files().items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    write_images(tmp_path / "images")
    # the user's module, not ganlab's source, and trusted in checkpoints as the guide exports
    env = clean_env() | {"PYTHONPATH": str(tmp_path), "GANLAB_TRUSTED_MODULES": "my_gan"}
    cache = f"paths.cache_dir={tmp_path / 'cache'}"  # not the user's ~/.cache
    for command in guide_commands():
        extra = [cache] if command[0] in ("ganlab-train", "ganlab-evaluate") else []
        done = subprocess.run([str(installed / command[0]), *command[1:], *extra], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (command, (done.stdout + done.stderr)[-3000:])
    run = tmp_path / "runs" / "mine"
    config = (run / ".hydra" / "config.yaml").read_text()
    assert "my_gan.Generator" in config and "my_gan.SoftHinge" in config
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert len(list((tmp_path / "fakes").glob("*.png"))) == 8
    (row,) = json.loads((run / "eval.json").read_text())["rows"]
    assert math.isfinite(row["fid"]) and row["num_fake"] == 64
