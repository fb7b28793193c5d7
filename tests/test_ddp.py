"""DDP on CPU (gloo, 2 processes) through the real command line, for every model config present.

Each run checks what makes GAN DDP correct: the replicas stay identical (gradients were reduced,
while every rank saw other reals and drew other latents), logged scalars are reduced, and only
rank 0 writes checkpoints and sample grids.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from tests.conftest import CONF_DIR, read_metrics

ROOT = CONF_DIR.parent
# model -> extra overrides keeping the run at a handful of steps at 16 px
MODELS = {
    "dcgan": [],
    "sagan": [],
    "pggan": ["model.start_resolution=8", "model.schedule.batch_size_dict=null",
              "model.schedule.stabilize_kimg=0.032",
              "model.schedule.fade_kimg=0.032"],
}
PRESENT = [m for m in MODELS if (CONF_DIR / "model" / f"{m}.yaml").is_file()]


class ReplicaCheck(pl.Callback):
    """At the end of training every rank reports parameter checksums, fresh latents and the last
    logged d_loss; rank 0 writes them to `path` as JSON ([world][...])."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        params = torch.cat([p.detach().double().flatten() for p in pl_module.parameters()])
        report = torch.stack([
            params.sum(), params.abs().sum(), (params * torch.arange(len(params))).sum(),
            pl_module.sample_z(1).double().sum(),
            trainer.callback_metrics["train/d_loss"].double(),
        ])
        gathered = trainer.strategy.all_gather(report)
        if trainer.is_global_zero:
            self.path.write_text(json.dumps(gathered.tolist()))


@pytest.mark.slow
@pytest.mark.parametrize("model", PRESENT)
def test_ddp_cpu_two_processes(model, tmp_path):
    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "ganlab.run", f"model={model}", *MODELS[model],
        "trainer=ddp_cpu", "trainer.devices=2", "debug=tiny", "callbacks.progress=null",
        "kimg=0.128", "callbacks.samples.every_kimg=0.064", f"hydra.run.dir={run}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "+callbacks.replicas._target_=tests.test_ddp.ReplicaCheck",
        f"+callbacks.replicas.path={run / 'replicas.json'}",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    # data=shapes scores with its shapes metric by default: gathered over both ranks at the end
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert len(read_metrics(run)["val/fd_shapes"]) == 1
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["ganlab"]["nimg"] == 128  # 4 iterations x 16 images x 2 ranks
    grids = sorted(p.name for p in (run / "samples").glob("fakes_*.png"))
    assert grids == ["fakes_000000064.png", "fakes_000000128.png"]  # once, by rank 0
    assert max(read_metrics(run)["train/kimg"]) == pytest.approx(0.128)

    rank0, rank1 = json.loads((run / "replicas.json").read_text())
    assert rank0[:3] == pytest.approx(rank1[:3], rel=1e-6)  # identical weights on both ranks
    assert rank0[3] != pytest.approx(rank1[3])  # but each rank draws its own latents
    assert rank0[4] == pytest.approx(rank1[4], rel=1e-6)  # logged d_loss: mean over ranks
