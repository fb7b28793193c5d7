"""Conditional DDP on CPU (gloo, 2 processes): every rank trains on its own shard of images with
their own labels (the sampler's order, rank::world), and the replicas stay identical."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from tests.conftest import CONF_DIR


class LabelShardCheck(pl.Callback):
    """Each rank compares the labels of its first batch with those of its shard of the sampler's
    first pass; rank 0 writes [world][match, first label index sum, param checksum]."""

    def __init__(self, path: str) -> None:
        self.path, self.result = Path(path), None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.result is not None:
            return
        datamodule = trainer.datamodule
        sampler = datamodule.train_sampler
        shard = sampler._order(0)[: len(batch[1])].tolist()  # this rank's first batch
        table = datamodule.train_set.labels
        expected = table[sorted(shard)]
        self.result = [float(torch.equal(batch[1].cpu(), expected)),
                       float(batch[1].argmax(1).sum())]

    def on_train_end(self, trainer, pl_module) -> None:
        params = torch.cat([p.detach().double().flatten() for p in pl_module.parameters()])
        report = torch.tensor([*self.result, float(params.sum())], dtype=torch.float64)
        gathered = trainer.strategy.all_gather(report)
        if trainer.is_global_zero:
            self.path.write_text(json.dumps(gathered.tolist()))


@pytest.mark.slow
def test_ddp_shards_labels_with_their_images(tmp_path):
    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "ganlab.run", "model=dcgan", "data.labels=class",
        "trainer=ddp_cpu", "trainer.devices=2", "debug=tiny", "callbacks.progress=null",
        "kimg=0.064", "callbacks.samples=null", "metric=none", f"hydra.run.dir={run}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "+callbacks.shards._target_=tests.test_conditioning_ddp.LabelShardCheck",
        f"+callbacks.shards.path={run / 'shards.json'}",
    ]
    done = subprocess.run(command, cwd=CONF_DIR.parent, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rank0, rank1 = json.loads((run / "shards.json").read_text())
    assert rank0[0] == rank1[0] == 1.0  # each rank's labels are those of its own images
    assert rank0[1] != rank1[1]  # other images, other labels
    assert abs(rank0[2] - rank1[2]) < 1e-6 * abs(rank0[2])  # replicas identical
