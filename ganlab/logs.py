"""One rank-aware logger for every ganlab module (lightning-hydra-template's RankedLogger).

    from ganlab.logs import get_logger
    log = get_logger(__name__)        # "ganlab.metrics.evaluator": a child of "ganlab"
    log.info("written on rank 0 only")
    log.warning("written on rank 1 only", rank=1)
    log.error("written on every rank", rank=None)

Under DDP every rank runs the same code; without a rank check each message would appear once per
rank. Modules therefore never write `if trainer.is_global_zero: log.info(...)`: the logger checks
the rank (`rank_zero_only.rank`, which Lightning sets from the launcher's environment and again
when the strategy starts). Messages that may differ per rank (a failed job) pass rank=None.

Loggers are named after their module (`__name__`), so every ganlab logger is a child of "ganlab":
`caplog.at_level(..., logger="ganlab")` and level settings on "ganlab" cover all of them, and each
record names the module that wrote it (Hydra's log lines read `[ganlab.run][INFO]`).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

# the object whose `.rank` Lightning sets; importing it from here does not import Lightning (slow),
# so command-line tools that never train (ganlab.fid) stay quick to start
from lightning_utilities.core.rank_zero import rank_zero_only


def current_rank() -> int:
    """This process's global rank as Lightning knows it; before Lightning is imported, the
    launcher's `RANK` (0 without distributed training)."""
    rank = getattr(rank_zero_only, "rank", None)
    return int(os.environ.get("RANK", 0)) if rank is None else int(rank)


class RankedLogger(logging.LoggerAdapter):
    """A `logging.Logger` that writes on rank 0 only, unless a call passes `rank=N` (that rank
    only) or `rank=None` (every rank)."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.getLogger(name), {})

    def log(self, level: int, msg: object, *args: Any, rank: int | None = 0, **kwargs: Any) -> None:
        if rank is not None and current_rank() != rank:
            return
        if self.isEnabledFor(level):
            msg, kwargs = self.process(msg, kwargs)
            self.logger.log(level, msg, *args, **kwargs)


def get_logger(name: str) -> RankedLogger:
    """The rank-aware logger of module `name` (pass `__name__`; a module run with `python -m`
    keeps its package name, e.g. "ganlab.run", not "__main__")."""
    if name == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        name = spec.name if spec is not None else name
    return RankedLogger(name)
