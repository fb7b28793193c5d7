"""ganlab.logs: one rank-aware logger (rank 0 by default; rank=N or rank=None on request)."""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil

import pytest
from lightning_utilities.core.rank_zero import rank_zero_only

from ganlab.logs import RankedLogger, get_logger


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
    """Every ganlab module (walked, not picked by hand) logs through get_logger(__name__): no
    plain `logging.getLogger` for ganlab's own messages, which would write once per DDP rank."""
    import ganlab

    loggers = 0
    for info in pkgutil.walk_packages(ganlab.__path__, "ganlab."):
        if info.name.endswith(".__main__"):  # runs its tool when imported
            continue
        module = importlib.import_module(info.name)
        if module.__name__ != info.name:  # an old import path standing for a moved module
            continue
        source = inspect.getsource(module)
        assert 'getLogger("ganlab' not in source and "getLogger(__name__)" not in source, info.name
        for attr, value in vars(module).items():
            if isinstance(value, (logging.Logger, logging.LoggerAdapter)):
                assert isinstance(value, RankedLogger), f"{info.name}.{attr}"
                assert value.logger.name == info.name, f"{info.name}.{attr}"
                loggers += 1
    assert loggers >= 15  # the walk reached the package's modules
