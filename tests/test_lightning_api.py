"""Pins the private Lightning attributes behind ganlab.lightning_api (fails on an upgrade that
moves them), and checks that no other module touches a private attribute of the trainer."""

from __future__ import annotations

import re
from pathlib import Path

import pytorch_lightning as pl

from ganlab import lightning_api

PACKAGE = Path(__file__).resolve().parents[1] / "ganlab"


def test_private_attributes_exist_on_a_trainer() -> None:
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    assert isinstance(lightning_api.should_log(trainer), bool)
    assert lightning_api.logged_step(trainer) == 0


def test_no_other_module_reads_private_trainer_attributes() -> None:
    private = re.compile(r"trainer\._|\.fit_loop\.\w+\._|_logger_connector")
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{number}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "lightning_api.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if private.search(line)
    ]
    assert not offenders, f"private Lightning API outside ganlab/lightning_api.py: {offenders}"


def test_attached_trainer_and_resume_starts_new_epoch_read_lightning_state(make_cfg):
    from ganlab.lightning_api import attached_trainer, resume_starts_new_epoch
    from ganlab.run import build

    cfg = make_cfg("kimg=null", "trainer.max_steps=8", "data.num_images=64")  # 4 batches an epoch
    datamodule, model, trainer = build(cfg)
    assert attached_trainer(model) is None
    seen = []

    class Probe(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            seen.append((attached_trainer(pl_module) is trainer, resume_starts_new_epoch(trainer)))

    trainer.callbacks.append(Probe())
    trainer.fit(model, datamodule=datamodule)
    assert seen == [(True, False)] * 3 + [(True, True)]  # the 4th batch ends the epoch
    assert not resume_starts_new_epoch(trainer)  # after training: not inside a batch


def test_fast_logging_skips_the_copy_only_when_nothing_moves(monkeypatch) -> None:
    """The patched `_ResultMetric.to` returns early when every tensor is on the device, and
    logged values still accumulate as before (the last value logged on step is kept)."""
    import torch
    from pytorch_lightning.trainer.connectors.logger_connector.result import (
        _ResultCollection,
        _ResultMetric,
    )

    monkeypatch.setattr(_ResultMetric, "to", _ResultMetric.to)  # undone after the test
    lightning_api.fast_logging()
    lightning_api.fast_logging()  # idempotent
    assert _ResultMetric.to._ganlab_fast
    results = _ResultCollection(training=True)
    results.batch = None
    for value in (1.0, 3.0):
        results.log("training_step", "x", torch.tensor(value), on_step=True, on_epoch=False,
                    batch_size=4)
    metric = results["training_step.x"]
    assert float(metric.value) == 3.0
    calls = []
    monkeypatch.setattr("pytorch_lightning.trainer.connectors.logger_connector.result."
                        "apply_to_collection", lambda *a, **k: calls.append(1) or a[0])
    assert metric.to(torch.device("cpu")) is metric and not calls  # nothing to move: no copy
    metric.to("cpu")  # any other call form: Lightning's own path
    assert calls
