"""Hydra multirun support: a failed job is recorded and the sweep goes on; failures are reported
at the end of the sweep with their log files; DDP that would re-launch a sweep is refused.

A job returns `task(cfg)` (ganlab.run.train: the value of `cfg.optimized_metric`, what the
sweeper minimises), logged with its name. A job that raises is logged (traceback in
SWEEP_DIR/N/run.log), recorded as SWEEP_DIR/failed_jobs/N.yaml and returns None (sweepers: Optuna
marks the trial failed). The `FailureReport` Hydra callback (conf/hydra/default.yaml) prints the
failures when the sweep ends and exits with status 1 if there were any. Records are files, so
jobs launched on other machines (hydra/launcher=submitit_slurm) report too.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from ganlab.logs import get_logger
from ganlab.utils import ConfigError

log = get_logger(__name__)

FAILURES_DIR = "failed_jobs"  # inside the sweep folder: one N.yaml per failed job


class MultirunDDPError(ConfigError):
    """`-m` with a strategy that re-launches the command line per rank (DDP on several devices)."""


def is_multirun() -> bool:
    """True inside a job of a Hydra multirun (`python -m ganlab.run -m ...`)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_job(task: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Run one multirun job and return `task(cfg)`, the value of `cfg.optimized_metric`; on an
    exception log it, record it and return None (the sweep goes on, Optuna marks it failed).

    A MultirunDDPError stops the whole sweep (exit status 2): every job would hit it.
    """
    try:
        value = task(cfg)
    except MultirunDDPError as error:
        log.error("configuration error: %s", error)
        sys.exit(2)
    except Exception as error:
        log.exception("job failed: %s: %s", type(error).__name__, error, rank=None)
        path = record_failure(error)
        log.error("failure recorded in %s; the sweep continues", path, rank=None)
        return None
    log.info("job %s: %s = %s", HydraConfig.get().job.num, cfg.get("optimized_metric"), value)
    return value


def record_failure(error: BaseException) -> Path:
    """Write SWEEP_DIR/failed_jobs/N.yaml (job number, overrides, error, log file)."""
    hydra_cfg = HydraConfig.get()
    record = {
        "job": int(hydra_cfg.job.num),
        "overrides": list(hydra_cfg.overrides.task),
        "error": f"{type(error).__name__}: {error}",
        "log": str(Path(hydra_cfg.runtime.output_dir) / f"{hydra_cfg.job.name}.log"),
        "output_dir": str(hydra_cfg.runtime.output_dir),
    }
    folder = Path(hydra_cfg.sweep.dir) / FAILURES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['job']}.yaml"
    path.write_text(yaml.safe_dump(record, sort_keys=False))
    return path


def read_failures(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """The failure records of a sweep folder, by job number."""
    folder = Path(sweep_dir) / FAILURES_DIR
    records = [yaml.safe_load(p.read_text()) for p in folder.glob("*.yaml")]
    return sorted(records, key=lambda r: r["job"])


def format_failures(records: list[dict[str, Any]]) -> str:
    lines = [f"{len(records)} job(s) of the sweep failed:"]
    for r in records:
        lines.append(f"  job {r['job']} [{' '.join(r['overrides'])}]: {r['error']}")
        lines.append(f"    log: {r['log']}")
    return "\n".join(lines)


class FailureReport(Callback):
    """Hydra callback: at the end of a multirun, list the failed jobs and exit with status 1."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        shutil.rmtree(Path(config.hydra.sweep.dir) / FAILURES_DIR, ignore_errors=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        records = read_failures(config.hydra.sweep.dir)
        if not records:
            log.info("sweep finished without failures: %s", config.hydra.sweep.dir)
            return
        log.error(format_failures(records))
        raise SystemExit(1)


class OutputCheck(Callback):
    """Hydra callback: refuse, with one line and exit status 2, a run or sweep folder that cannot
    be written (a read-only file system, no permission), before Hydra itself creates it (it would
    stop with a traceback)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_writable_folder(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_writable_folder(config.hydra.sweep.dir, "hydra.sweep.dir")


def check_writable_folder(folder: str, key: str) -> None:
    """Can `folder` be created and written (its nearest existing ancestor writable: `access`
    sees read-only file systems, for root too)? Nothing is created. If not, print one line naming
    `key` and exit with status 2."""
    path = Path(folder).absolute()
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    if not (existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)):
        print(f"configuration error: {key}={folder} cannot be written ({existing} is not a "
              "writable folder): point it at a folder you can write", file=sys.stderr)
        raise SystemExit(2)


# ----------------------------------------------------------------------------- DDP in a sweep
def check_launch(trainer: pl.Trainer) -> None:
    """Refuse `-m` with a strategy that launches its own processes (DDP on several devices).

    Lightning's DDP starts the extra ranks by re-running the command line; inside a multirun that
    would start the sweep again in every rank. Jobs whose ranks are started by SLURM
    (hydra/launcher=slurm, one task per device) are fine.
    """
    strategy = trainer.strategy
    launcher = getattr(strategy, "launcher", None)
    if not is_multirun() or launcher is None or trainer.world_size <= 1:
        return
    environment = getattr(strategy, "cluster_environment", None)
    if environment is not None and environment.creates_processes_externally:
        return
    raise MultirunDDPError(
        f"`-m` (Hydra multirun) cannot run DDP jobs on {trainer.world_size} processes started by "
        "Lightning: it re-runs the command line for every extra rank, which would start the "
        "sweep again. Instead: send the sweep to SLURM, which starts one task per GPU "
        "(`-m hydra/launcher=slurm trainer=ddp trainer.devices=N hydra.launcher.partition=P ...`), "
        "or run the jobs one by one without -m (`for lr in 1e-4 2e-4; do python -m ganlab.run "
        "trainer=ddp model.lr_g=$lr; done`), or keep -m with one device per job (trainer=gpu)."
    )
