"""ganlab.logs: one rank-aware logger (rank 0 by default; rank=N or rank=None on request)."""

from __future__ import annotations

import logging

import pytest
from lightning_utilities.core.rank_zero import rank_zero_only

from ganlab.logs import get_logger


@pytest.mark.parametrize("rank", [0, 1])
def test_messages_go_to_rank_zero_unless_a_rank_is_named(rank, monkeypatch, caplog):
    monkeypatch.setattr(rank_zero_only, "rank", rank, raising=False)
    log = get_logger("ganlab.tests.logs")
    with caplog.at_level(logging.INFO, logger="ganlab"):
        log.info("default %d", 7)
        log.warning("only on one", rank=1)
        log.error("everywhere", rank=None)
    messages = [r.getMessage() for r in caplog.records]
    expected = ["default 7", "everywhere"] if rank == 0 else ["only on one", "everywhere"]
    assert messages == expected
    assert {r.name for r in caplog.records} == {"ganlab.tests.logs"}


def test_every_module_logger_is_ranked_and_named_after_its_module():
    from ganlab import loggers, multirun, run
    from ganlab.metrics import evaluator, inception

    for module in (loggers, multirun, run, evaluator, inception):
        assert module.log.logger.name == module.__name__, module.__name__
