"""SIGTERM to one DDP rank (2 CPU processes, gloo, the real command line): every rank stops after
the same iteration, one consistent last.ckpt is written, nothing hangs, and the run resumes."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from tests.conftest import CONF_DIR

ROOT = CONF_DIR.parent
TIMEOUT_S = 240  # bound on each run and on the wait for the marker
MARKER = "GANLAB-TEST-MARKER iteration"


class Marker(pl.Callback):
    """Prints a marker line after iteration `at` on rank 0 (the test signals then); at the end each
    rank writes the iteration it stopped after to `dirpath/rank{R}.txt`."""

    def __init__(self, at: int, dirpath: str) -> None:
        self.at, self.dirpath = at, Path(dirpath)

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        if trainer.is_global_zero and pl_module.iteration == self.at:
            print(f"{MARKER} {pl_module.iteration} pid {os.getpid()}", flush=True)

    def on_train_end(self, trainer, pl_module) -> None:
        path = self.dirpath / f"rank{trainer.global_rank}.txt"
        path.write_text(str(pl_module.iteration))


def command(run: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "ganlab.run", "trainer=ddp_cpu", "trainer.devices=2", "debug=tiny",
        "callbacks.progress=null", "callbacks.samples=null", "metric=none",
        "callbacks.checkpoint.every_kimg=1000", "callbacks.checkpoint.stop_sync_every=4",
        f"hydra.run.dir={run}", f"paths.cache_dir={tmp_path / 'cache'}",
        "+callbacks.marker._target_=tests.test_ddp_stop.Marker", "+callbacks.marker.at=2",
        f"+callbacks.marker.dirpath={run}", *extra,
    ]


def wait_for_marker(process: subprocess.Popen, timeout: float) -> str:
    """Read the merged output until the marker line (bounded by `timeout`); returns the output."""
    deadline, output = time.monotonic() + timeout, []
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(deadline - time.monotonic()):
                break
            line = process.stdout.readline()
            if not line:
                break  # the process ended
            output.append(line)
            if line.startswith(MARKER):
                return "".join(output)
    raise AssertionError("no marker line:\n" + "".join(output)[-3000:])


@pytest.mark.slow
def test_sigterm_to_rank0_stops_every_rank_at_one_iteration_and_resumes(tmp_path):
    run = tmp_path / "run"
    process = subprocess.Popen(command(run, tmp_path, "kimg=100"), cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        wait_for_marker(process, TIMEOUT_S)
        process.send_signal(signal.SIGTERM)  # rank 0 only: the launcher's own process
        output, _ = process.communicate(timeout=TIMEOUT_S)
    finally:
        if process.poll() is None:  # hung (the old behaviour): kill both ranks
            os.killpg(process.pid, signal.SIGKILL)  # its own session: rank 0 and rank 1
            process.communicate(timeout=60)
    assert process.returncode == 0, output[-3000:]

    stopped = {int((run / f"rank{r}.txt").read_text()) for r in (0, 1)}
    assert len(stopped) == 1, stopped  # both ranks stopped after the same iteration
    (iteration,) = stopped
    assert iteration % 4 == 0 and iteration > 2  # at a sync point after the signal
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["ganlab"]["iteration"] == iteration
    assert saved["ganlab"]["nimg"] == iteration * 16 * 2

    target = (iteration + 4) * 32
    done = subprocess.run(
        command(run, tmp_path, f"kimg={target / 1000}",
                f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"),
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["ganlab"]["nimg"] == target
