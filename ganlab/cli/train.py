"""Hydra entry point of training: `ganlab-train [group=option ...] [key=value ...]` (also
`python -m ganlab.run`, the old path).

Thin by design: Hydra composes conf/train.yaml -> `ganlab.training.fit.train` instantiates and
fits -> the return value is `cfg.optimized_metric` (what a sweeper minimises). A bad value ends
the run with one `configuration error:` line and exit code 2, before training starts.
"""

from __future__ import annotations

import sys
from typing import Any

import hydra
from omegaconf import DictConfig

from ganlab import config_dir
from ganlab.logs import get_logger
from ganlab.multirun import is_multirun, run_job
from ganlab.training.fit import build, train  # noqa: F401 - build: the old `ganlab.run.build`
from ganlab.utils import ConfigError

log = get_logger(__name__)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def main(cfg: DictConfig) -> Any:
    if is_multirun():  # a failed job is recorded and reported at the end; the sweep goes on
        return run_job(train, cfg)
    try:
        return train(cfg)
    except ConfigError as error:
        log.error("configuration error: %s", error)
        sys.exit(2)


if __name__ == "__main__":
    main()
