"""Loggers continue on resume: a run resumed from RUN/checkpoints/last.ckpt writes into RUN, the
CSV keeps the earlier rows, TensorBoard adds an event file next to the old one, and W&B
(offline) continues the same run id with steps going on from the checkpoint's."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from ganlab.training.fit import train

STEPS = ["callbacks.samples=null", "metric=none", "callbacks.checkpoint.every_kimg=0.064"]


def rows(run: Path) -> list[dict[str, str]]:
    with open(run / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def tensorboard_steps(run: Path) -> list[list[int]]:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    files = sorted((run / "tensorboard").glob("events.out.tfevents.*"))
    return [[e.step for e in EventFileLoader(str(f)).Load()
             if e.summary.value and e.summary.value[0].tag == "train/kimg"] for f in files]


@pytest.mark.slow
def test_resume_continues_csv_tensorboard_and_wandb_in_the_run_folder(make_cfg, tmp_path):
    loggers = "logger=many"
    first = make_cfg(loggers, "kimg=0.064", *STEPS, name="run")
    train(first)
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=False)
    wandb_id = saved["ganlab_loggers"]["wandb_id"]
    assert wandb_id and (run / "wandb" / "ganlab_run_id").read_text() == wandb_id
    before = rows(run)
    assert float(before[-1]["train/kimg"]) == pytest.approx(0.064)

    # a resume from another Hydra folder (a new invocation): outputs continue in RUN
    resumed = make_cfg(loggers, "kimg=0.128", *STEPS, f"ckpt_path={last}", name="elsewhere")
    train(resumed)
    after = rows(run)
    assert after[: len(before)] == before  # earlier rows kept, untouched
    kimg = [float(r["train/kimg"]) for r in after if r.get("train/kimg")]
    steps = [int(r["step"]) for r in after if r.get("train/kimg")]
    assert kimg[-1] == pytest.approx(0.128)
    assert steps == sorted(steps) and len(set(steps)) == len(steps)  # steps go on
    assert not (tmp_path / "elsewhere" / "csv").exists()

    first_tb, second_tb = tensorboard_steps(run)  # two event files, both kept
    assert first_tb and second_tb and min(second_tb) > max(first_tb)

    offline = sorted((run / "wandb").glob("offline-run-*"))
    # W&B appends -1 to the folder of a second run started within the same second
    assert len(offline) == 2 and all(wandb_id in p.name for p in offline)
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert saved["ganlab_loggers"]["wandb_id"] == wandb_id and saved["ganlab"]["nimg"] == 128
