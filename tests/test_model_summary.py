"""The model summary at the start of a run lists parameters per module without Lightning's FLOPs
column and total, which read 0 for a GAN module (no example input to measure them on)."""

from __future__ import annotations

import logging

from ganlab.callbacks.summary import ModelSummary, summary_table
from ganlab.run import build, train


def test_the_run_prints_a_summary_without_flops(make_cfg, caplog):
    cfg = make_cfg("kimg=0.016", "callbacks.samples=null", "extras.print_config=false")
    with caplog.at_level(logging.INFO):
        train(cfg)
    text = caplog.text
    assert "Total params" in text and "generator_ema" in text
    assert "FLOPs" not in text and "Total Flops" not in text


def test_the_summary_callback_replaces_lightnings_and_respects_its_switch(make_cfg):
    _, _, trainer = build(make_cfg())
    assert [type(c) for c in trainer.callbacks if "Summary" in type(c).__name__] == [ModelSummary]
    _, _, quiet = build(make_cfg("trainer.enable_model_summary=false", name="quiet"))
    assert not [c for c in quiet.callbacks if "Summary" in type(c).__name__]


def test_measured_flops_are_kept():
    data = [(" ", ["0"]), ("Name", ["net"]), ("Type", ["Linear"]), ("Params", ["10"]),
            ("Mode", ["train"]), ("FLOPs", ["20"])]
    modes = {"train": 1, "eval": 0}
    assert "FLOPs" not in summary_table(data, 10, 10, 0.0, modes, 0)
    assert "FLOPs" in summary_table(data, 10, 10, 0.0, modes, 20)
    assert "Total Flops" in summary_table(data, 10, 10, 0.0, modes, 20)
