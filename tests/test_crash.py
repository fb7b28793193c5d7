"""Crash safety: a training run SIGKILLed at many seeded random moments, also inside checkpoint
writes, always leaves a `last.ckpt` that loads, and always resumes from it.

One run, killed and resumed over and over (forked children: no interpreter start per trial).
Half the kills come from outside after a seeded random delay (last.ckpt is written every
iteration, so many land inside a write); the other half kill the child inside a seeded random
fsync of a checkpoint save, after tearing the half-written `.tmp` file (before the rename) or
right after the rename (before the folder's fsync).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import stat
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from ganlab.training.checkpoints import load_checkpoint
from ganlab.training.fit import build, check_resume

TRIALS = 24
TIMEOUT_S = 120  # bound on every wait for a child


class Started(pl.Callback):
    """Sets `event` once training has started (after KimgCheckpoint's start: stale .tmp removed),
    recording in `stale` whether any .tmp was still there."""

    def __init__(self, event, stale, dirpath: Path) -> None:
        self.event, self.stale, self.dirpath = event, stale, dirpath

    def on_train_start(self, trainer, pl_module) -> None:
        self.stale.value = len(list(self.dirpath.glob("*.tmp")))
        self.event.set()


def die_in_fsync(number: int) -> None:
    """SIGKILL this process at its `number`-th fsync: a file's (tear it to half first: a write
    cut short) or a folder's (the rename is done, its fsync is not)."""
    calls = [0]
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        calls[0] += 1
        if calls[0] == number:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                path = os.readlink(f"/proc/self/fd/{fd}")
                os.truncate(path, os.path.getsize(path) // 2)
            os.kill(os.getpid(), signal.SIGKILL)
        real_fsync(fd)

    os.fsync = fsync


def child(cfg, event, stale, fsync_number: int | None) -> None:
    torch.set_num_threads(1)  # no OpenMP pool inherited across the fork
    if fsync_number is not None:
        die_in_fsync(fsync_number)
    datamodule, model, trainer = build(cfg)
    ckpt_path = check_resume(cfg, model)
    trainer.callbacks.append(Started(event, stale, Path(cfg.paths.output_dir) / "checkpoints"))
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)


def run_child(cfg, fsync_number: int | None = None, kill_after: float | None = None):
    """Start a child; kill it `kill_after` s after training started (None: let it end).
    Returns (exit code, number of stale .tmp files it found at its start)."""
    context = multiprocessing.get_context("fork")
    event, stale = context.Event(), context.Value("i", -1)
    process = context.Process(target=child, args=(cfg, event, stale, fsync_number))
    process.start()
    try:
        started = event.wait(TIMEOUT_S)
        if kill_after is not None and started:
            process.join(kill_after)  # the random moment (returns early if the child died)
            if process.is_alive():
                os.kill(process.pid, signal.SIGKILL)
        process.join(TIMEOUT_S)
        assert not process.is_alive(), "child did not end"
    finally:
        if process.is_alive():
            process.kill()
            process.join(TIMEOUT_S)
    return process.exitcode, stale.value


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_a_loadable_checkpoint_that_resumes(make_cfg):
    rng = random.Random(0)
    overrides = ["kimg=1000", "callbacks.checkpoint.every_kimg=0.016",  # save every iteration
                 "callbacks.samples=null", "trainer.log_every_n_steps=1000"]
    cfg = make_cfg(*overrides, name="crash")
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    nimg, outcomes = 0, []
    for trial in range(TRIALS):
        resume = make_cfg(*overrides, f"ckpt_path={last}", name="crash") if last.exists() else cfg
        if trial % 2:
            code, stale = run_child(resume, fsync_number=rng.randint(1, 12))
        else:
            code, stale = run_child(resume, kill_after=rng.uniform(0.0, 0.4))
        assert code == -signal.SIGKILL, f"trial {trial}: exit code {code}"
        assert stale == 0, f"trial {trial}: a stale .tmp survived the start"
        if last.exists():
            saved = load_checkpoint(last)["ganlab"]  # loads: never torn
            assert saved["nimg"] >= nimg, "last.ckpt went backwards"
            nimg = saved["nimg"]
        outcomes.append((trial, nimg, len(list(last.parent.glob("*.tmp")))))
    print("SIGKILL trials (trial, nimg, stale .tmp after kill):", outcomes)
    assert nimg > 0, outcomes
    torn = [o for o in outcomes if o[2]]
    assert torn, "no kill landed inside a checkpoint write"

    final = make_cfg("kimg=" + str((nimg + 64) / 1000), *overrides[1:], f"ckpt_path={last}",
                     name="crash")
    code, stale = run_child(final)
    assert (code, stale) == (0, 0)
    assert load_checkpoint(last)["ganlab"]["nimg"] == nimg + 64  # resumed and completed
    assert not list(last.parent.glob("*.tmp"))
