"""On a CUDA device (skipped without one): a tiny run of every model trains there with the GPU
fast path (bf16 autocast, channels-last), logs finite D losses and writes its checkpoint."""

from __future__ import annotations

import pytest
import torch

from ganlab.training.fit import train
from tests.conftest import read_metrics

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("model", ["dcgan", "sagan", "pggan"])
def test_a_tiny_run_trains_on_the_gpu_with_the_fast_path(make_cfg, tmp_path, model):
    cfg = make_cfg(f"model={model}", "trainer.accelerator=gpu", "trainer.devices=1",
                   "trainer.precision=bf16-mixed", "model.channels_last=true", name=model)
    train(cfg)
    run = tmp_path / model
    assert (run / "checkpoints" / "last.ckpt").is_file()
    losses = read_metrics(run)["train/d_loss"]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
