"""A resumed run shows every kimg once in every logger: the CSV drops (into a side file) the rows
past the checkpoint, TensorBoard purges the steps past it, W&B continues the same run rewound to
the checkpoint's step, and ganlab.report reads one curve. Two ways to get there: a run SIGKILLed
after rows were logged past its last.ckpt, and a finished run resumed in its own folder from an
earlier snapshot."""

from __future__ import annotations

import csv
import multiprocessing
import os
import signal
import struct
from pathlib import Path

import pytest
import pytorch_lightning as pl
from omegaconf import open_dict
from pytorch_lightning.loggers import TensorBoardLogger

from ganlab.checkpoints import load_checkpoint
from ganlab.report import read_metrics_csv
from ganlab.run import train

pytestmark = pytest.mark.slow

TIMEOUT_S = 300
LOGGERS = ["logger=many", "callbacks.samples=null", "extras.print_config=false"]


class KillAt(pl.Callback):
    """SIGKILLs its own process once `nimg` images were shown, after the loggers wrote out what
    they hold (rows logged past the last checkpoint are on disk, as after a real crash)."""

    def __init__(self, nimg: int) -> None:
        self.nimg = nimg

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.nimg >= self.nimg:
            for logger in trainer.loggers:
                logger.save()
                if isinstance(logger, TensorBoardLogger):
                    logger.experiment.flush()  # the event file
            os.kill(os.getpid(), signal.SIGKILL)


def _train(cfg) -> None:
    import torch

    # a process of its own, as a killed and restarted job is: not the wandb-core service an
    # earlier test of this pytest process started (it still holds the killed child's run id)
    os.environ.pop("WANDB_SERVICE", None)
    torch.set_num_threads(1)
    train(cfg)


def run_child(cfg) -> int:
    """train(cfg) in a forked process (a SIGKILL there leaves the test running); its exit code."""
    process = multiprocessing.get_context("fork").Process(target=_train, args=(cfg,))
    process.start()
    process.join(TIMEOUT_S)
    if process.is_alive():
        process.kill()
        process.join()
        pytest.fail("child did not end")
    return process.exitcode


# ----------------------------------------------------------------------------- readers
def csv_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "csv" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def kimg_column(rows: list[dict[str, str]]) -> list[float]:
    return [round(float(r["train/kimg"]), 3) for r in rows if r.get("train/kimg")]


def tensorboard_kimg(run: Path) -> list[tuple[int, float]]:
    """(step, train/kimg) as TensorBoard shows them: EventAccumulator over every event file of
    the folder, orphaned (purged) steps dropped as TensorBoard drops them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run / "tensorboard"), purge_orphaned_data=True)
    accumulator.Reload()
    return [(e.step, round(e.value, 3)) for e in accumulator.Scalars("train/kimg")]


def wandb_records(path: Path):
    """The protobuf records of an offline run's .wandb file (LevelDB log format: 32 KiB blocks
    of chunks with a 7-byte header; after W&B's own 7-byte file header)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, offset, pending = 32768, 7, b""
    while offset + 7 <= len(data):
        room = block - offset % block
        if room < 7:  # block trailer
            offset += room
            continue
        _, length, kind = struct.unpack("<IHB", data[offset : offset + 7])
        if kind == 0 and length == 0:
            offset += room
            continue
        chunk = data[offset + 7 : offset + 7 + length]
        offset += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk  # FULL / FIRST start a record
        if kind in (1, 4):  # FULL / LAST end it
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


def wandb_history(offline_dir: Path) -> list[dict[str, str]]:
    (path,) = offline_dir.glob("*.wandb")
    rows = []
    for record in wandb_records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): item.value_json
                         for item in record.history.item})
    return rows


def wandb_branch_point(offline_dir: Path) -> dict | None:
    import json

    (path,) = offline_dir.glob("*.wandb")
    for record in wandb_records(path):
        if record.WhichOneof("record_type") == "run":
            for item in record.run.config.update:
                if item.key == "_wandb":
                    return json.loads(item.value_json).get("branch_point")
    return None


# ----------------------------------------------------------------------------- checks
def check_one_curve(run: Path, kimg: list[float], rewound: list[float], resume_nimg: int) -> None:
    rows = csv_rows(run)
    assert kimg_column(rows) == kimg, "CSV: every kimg once, in order"
    steps = [int(r["step"]) for r in rows if r.get("train/kimg")]
    assert steps == sorted(set(steps))
    (side,) = (run / "csv").glob("metrics.rewound-*.csv")
    with open(side, newline="") as f:
        assert kimg_column(list(csv.DictReader(f))) == rewound, "the dropped rows are kept aside"
    assert str(resume_nimg) in side.name

    shown = tensorboard_kimg(run)
    assert [value for _, value in shown] == kimg, "TensorBoard: every kimg once"
    assert len({step for step, _ in shown}) == len(shown)

    report = read_metrics_csv(run / "csv" / "metrics.csv")
    x, _ = report["train/d_loss"]
    assert list(x) == sorted(set(x)) and len(x) == len(kimg), "report: one curve"

    offline = sorted((run / "wandb").glob("offline-run-*"))
    assert len(offline) >= 2
    first, *_, last = offline
    branch = wandb_branch_point(last)
    assert branch is not None, "the resumed W&B run rewinds (resume_from)"
    assert branch["run_id"] in first.name
    history = wandb_history(last)
    kimg_rows = [round(float(h["train/kimg"]), 3) for h in history if "train/kimg" in h]
    assert kimg_rows and min(kimg_rows) > resume_nimg / 1000, "W&B continues past the checkpoint"
    steps = [int(h["_step"]) for h in history if "_step" in h]
    assert steps and min(steps) > int(branch["step"]), "W&B steps go on from the rewind point"
    before = [int(h["_step"]) for h in wandb_history(first) if "_step" in h]
    if before:  # (a SIGKILLed run's W&B service may not have written its last rows)
        assert int(branch["step"]) <= max(before) + 1, "the rewind point is the checkpoint's"


def test_sigkill_after_a_checkpoint_then_resume(make_cfg):
    base = [*LOGGERS, "callbacks.checkpoint.every_kimg=0.064"]  # 16 images per row
    cfg = make_cfg(*base, "kimg=0.256", name="run")
    with open_dict(cfg):  # dies at 0.176 kimg: three rows past the 0.128 kimg last.ckpt
        cfg.callbacks.kill = {"_target_": f"{__name__}.KillAt", "nimg": 176}
    assert run_child(cfg) == -signal.SIGKILL
    run = Path(cfg.paths.output_dir)
    last = run / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["ganlab"]["nimg"] == 128
    assert kimg_column(csv_rows(run))[-1] == 0.176  # rows past the checkpoint are on disk

    resumed = make_cfg(*base, "kimg=0.256", f"ckpt_path={last}", name="elsewhere")
    assert run_child(resumed) == 0
    kimg = [round(0.016 * k, 3) for k in range(1, 17)]
    check_one_curve(run, kimg, rewound=[0.144, 0.16, 0.176], resume_nimg=128)


def test_resume_a_finished_run_from_an_earlier_snapshot(make_cfg):
    base = [*LOGGERS, "data.batch_size=50", "callbacks.checkpoint.snapshot_kimg=1",
            "callbacks.checkpoint.every_kimg=1"]
    cfg = make_cfg(*base, "kimg=3", name="run")
    assert run_child(cfg) == 0
    run = Path(cfg.paths.output_dir)
    snapshot = run / "checkpoints" / "kimg000001.ckpt"
    assert load_checkpoint(snapshot)["ganlab"]["nimg"] == 1000
    first = kimg_column(csv_rows(run))

    resumed = make_cfg(*base, "kimg=3", f"ckpt_path={snapshot}", name="elsewhere")
    assert run_child(resumed) == 0
    rewound = [k for k in first if k > 1.0]
    check_one_curve(run, first, rewound=rewound, resume_nimg=1000)
