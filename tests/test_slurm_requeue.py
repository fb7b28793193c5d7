"""SLURM's requeue signal (Lightning's auto-requeue, SIGUSR1) arriving in the middle of a training
step: the hpc checkpoint is saved at the next iteration boundary (a whole iteration: D and G
stepped, images counted, EMA updated), not inside the signal handler half way through the step,
and the job is requeued with `scontrol requeue JOB_ID` (a stand-in scontrol here)."""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import open_dict

from ganlab.checkpoints import load_checkpoint
from ganlab.run import train

BATCH = 16  # debug=tiny's batch: images per iteration
SIGNAL_ITERATION = 3  # the signal comes during this iteration's G step


class SignalMidStep(pl.Callback):
    """Sends SIGUSR1 to this process just before G's optimizer step of iteration
    SIGNAL_ITERATION (D has stepped, G has not, the images are not counted yet), and keeps the
    generator's weights at the end of every iteration (`at_end[nimg]`)."""

    made: list[SignalMidStep] = []  # the instances Hydra built (the test reads the last)

    def __init__(self) -> None:
        self.sent = False
        self.at_end: dict[int, dict[str, torch.Tensor]] = {}
        SignalMidStep.made.append(self)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        g_optimizer = pl_module.optimizers()[0].optimizer
        if (not self.sent and optimizer is g_optimizer
                and pl_module.iteration == SIGNAL_ITERATION - 1):
            self.sent = True
            os.kill(os.getpid(), signal.SIGUSR1)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.at_end[pl_module.nimg] = {k: v.detach().clone()
                                      for k, v in pl_module.generator.state_dict().items()}


@pytest.mark.slow
def test_requeue_signal_saves_between_iterations_and_requeues(make_cfg, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol_calls"
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    for name, value in {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "ganlab", "SLURM_JOB_ID": "4242",
                        "SLURM_NODELIST": "localhost", "SLURM_PROCID": "0",
                        "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}.items():
        monkeypatch.setenv(name, value)

    cfg = make_cfg("kimg=0.128", "callbacks.samples=null", "extras.print_config=false")
    with open_dict(cfg):
        cfg.callbacks.signal = {"_target_": f"{__name__}.SignalMidStep"}
    train(cfg)

    run = Path(cfg.paths.output_dir)
    (hpc,) = run.glob("hpc_ckpt_*.ckpt")
    saved = load_checkpoint(hpc)
    nimg = saved["ganlab"]["nimg"]
    assert nimg == SIGNAL_ITERATION * BATCH, "saved after the whole iteration"
    weights = {k[len("generator."):]: v for k, v in saved["state_dict"].items()
               if k.startswith("generator.")}
    expected = SignalMidStep.made[-1].at_end[nimg]
    assert all(torch.equal(weights[k], expected[k]) for k in expected), "G's step is in it"
    assert calls.read_text().split() == ["requeue", "4242"]
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["ganlab"]["nimg"] == 128  # went on

    # the requeued job: the same run folder, no ckpt_path: Lightning resumes from hpc_ckpt_1,
    # and ganlab rewinds the CSV to it first (the rows past it go to the side file)
    requeued = make_cfg("kimg=0.192", "callbacks.samples=null", "extras.print_config=false")
    train(requeued)
    with open(run / "csv" / "metrics.csv", newline="") as f:
        kimg = [float(r["train/kimg"]) for r in csv.DictReader(f) if r.get("train/kimg")]
    assert kimg == sorted(set(kimg)) and kimg[-1] == 0.192
    assert (run / "csv" / f"metrics.rewound-{nimg}.csv").is_file()
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["ganlab"]["nimg"] == 192
