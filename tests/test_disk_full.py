"""Disk full and read-only outputs: a checkpoint save that runs out of space stops the run with
one line naming the file, removes its partial file and keeps the previous last.ckpt loadable;
an output folder that cannot be written is refused before training.

The disk fills up for real on a small tmpfs where this process may mount one (root), and
through a failing writer injected at the checkpoint IO layer everywhere."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
from omegaconf import open_dict

from ganlab.callbacks.checkpoint import OutputWriteError
from ganlab.checkpoints import load_checkpoint
from ganlab.run import train
from ganlab.utils import ConfigError

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["callbacks.samples=null", "extras.print_config=false", "kimg=0.256",
         "callbacks.checkpoint.every_kimg=0.064"]


class FillDisk(pl.Callback):
    """After the first last.ckpt exists, fill the file system it is on (a filler file written
    until ENOSPC), so the next checkpoint save runs out of space half way."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self.done = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.done or not (self.dirpath / "last.ckpt").is_file():
            return
        self.done = True
        with open(self.dirpath.parent / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError as error:
                assert error.errno == errno.ENOSPC


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 4 MiB tmpfs mounted at tmp_path/disk (skipped where mounting is not allowed)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                          capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def check_stopped_cleanly(error: BaseException, run: Path, nimg_before: int | None) -> None:
    message = str(error)
    last = run / "checkpoints" / "last.ckpt"
    assert "\n" not in message and str(last) in message and "previous file is kept" in message
    assert load_checkpoint(last)["ganlab"]["nimg"] == nimg_before
    assert not list(last.parent.glob("*.tmp")), "the partial file was removed"


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_save_stops_with_one_line(make_cfg, small_disk):
    cfg = make_cfg(*QUIET, name="run")
    with open_dict(cfg):
        cfg.paths.output_dir = str(small_disk / "run")
        cfg.callbacks.fill = {"_target_": f"{__name__}.FillDisk",
                              "dirpath": str(small_disk / "run" / "checkpoints")}
    with pytest.raises(OutputWriteError) as caught:
        train(cfg)
    assert "No space left on device" in str(caught.value)
    check_stopped_cleanly(caught.value, small_disk / "run", 64)


@pytest.mark.slow
def test_a_failing_writer_stops_the_run_and_keeps_the_last_checkpoint(make_cfg, monkeypatch):
    """The same through the IO layer: the second save writes half a file, then ENOSPC."""
    from lightning_fabric.plugins.io import torch_io as torch_plugin

    real_save, calls = torch_plugin._atomic_save, [0]

    def failing_save(checkpoint, path):
        calls[0] += 1
        if calls[0] >= 2:
            Path(path).write_bytes(b"\0" * 1000)  # the part that fit
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_save(checkpoint, path)

    monkeypatch.setattr(torch_plugin, "_atomic_save", failing_save)
    cfg = make_cfg(*QUIET, name="run")
    with pytest.raises(OutputWriteError) as caught:
        train(cfg)
    check_stopped_cleanly(caught.value, Path(cfg.paths.output_dir), 64)


@pytest.mark.slow
def test_an_unwritable_output_folder_is_refused_before_training(make_cfg, tmp_path):
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(readonly)],
                          capture_output=True)
    if done.returncode:  # not root: a folder without write permission
        readonly.chmod(0o555)
    try:
        if os.access(readonly, os.W_OK) and done.returncode:
            pytest.skip("this user can write into any folder and cannot mount")
        cfg = make_cfg(*QUIET, name="run")
        with open_dict(cfg):
            cfg.paths.output_dir = str(readonly / "run")
        with pytest.raises(ConfigError, match="not writable") as caught:
            train(cfg)
        assert "paths.output_dir" in str(caught.value) and "\n" not in str(caught.value)
        assert not (readonly / "run").exists()
    finally:
        if done.returncode == 0:
            subprocess.run(["umount", "-l", str(readonly)], check=False)
        else:
            readonly.chmod(0o755)


@pytest.mark.slow
def test_the_command_line_refuses_a_read_only_run_folder(tmp_path):
    """Hydra creates the run folder before ganlab's code runs: its callback checks it first."""
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(readonly)],
                          capture_output=True)
    if done.returncode:
        readonly.chmod(0o555)
    try:
        if os.access(readonly, os.W_OK):
            pytest.skip("this user can write into any folder and cannot mount")
        command = [sys.executable, "-m", "ganlab.run", "debug=tiny", "metric=none",
                   f"hydra.run.dir={readonly / 'run'}"]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
        cli = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=300)
        assert cli.returncode == 2, cli.stderr[-2000:]
        assert "Traceback" not in cli.stdout + cli.stderr
        assert f"hydra.run.dir={readonly / 'run'} cannot be written" in cli.stderr
    finally:
        if done.returncode == 0:
            subprocess.run(["umount", "-l", str(readonly)], check=False)
        else:
            readonly.chmod(0o755)
