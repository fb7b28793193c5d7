"""One training run from a composed config: instantiate datamodule, model, callbacks, loggers and
trainer -> fit -> return `cfg.optimized_metric` (the value a sweeper minimises).

The Hydra entry point around it is ganlab/cli/train.py (`ganlab-train`, `python -m ganlab.run`);
ganlab.cli.quality and ganlab.bench call `train` / `build` directly.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from ganlab import lightning_api
from ganlab.callbacks.checkpoint import AtomicCheckpointIO, OutputWriteError
from ganlab.callbacks.summary import use_ganlab_summary
from ganlab.extras import apply_extras
from ganlab.loggers import (
    LOGGER_STATE_KEY,
    LoggerState,
    log_run_config,
    rewind_loggers,
    wandb_rewind_point,
)
from ganlab.logs import get_logger
from ganlab.models.conditioning import configure_labels
from ganlab.multirun import check_launch
from ganlab.training.checkpoints import CHECKPOINT_KEY, load_checkpoint
from ganlab.training.config_schema import check_config
from ganlab.training.init_from import init_from
from ganlab.training.losses import check_precision_with_penalty
from ganlab.utils import ConfigError

if TYPE_CHECKING:  # instantiated from the config, never imported at run time
    from ganlab.models.base import GANModule

log = get_logger(__name__)
# Lightning messages that tell a ganlab user nothing: (logger names, message start)
QUIET_LOGS = (
    (("pytorch_lightning.trainer.connectors.checkpoint_connector",),
     "`weights_only` was not set"),  # every save: ganlab's checkpoints are full on purpose
    (("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero",
      "lightning_utilities.core.rank_zero"), "\U0001f4a1 Tip:"),  # litlogger advertisement
)
QUIET_WARNINGS = (
    r".*module\(s\) in eval mode at the start of training",  # the EMA G is in eval mode on purpose
    r".*val_dataloader` but have no `validation_step`",  # FID runs from a callback, not val loop
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning internals vs new torch
)


class _DropMessages(logging.Filter):
    def __init__(self, start: str) -> None:
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.start)


def quiet_lightning() -> None:
    """Silence, at their source, Lightning notices that carry no information for a ganlab run."""
    for names, start in QUIET_LOGS:
        for name in names:
            logger = logging.getLogger(name)
            if not any(isinstance(f, _DropMessages) and f.start == start for f in logger.filters):
                logger.addFilter(_DropMessages(start))
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


quiet_lightning()


def announce_outputs(cfg: DictConfig) -> None:
    """The first lines of a run: where its outputs go."""
    run_dir = cfg.paths.output_dir
    callbacks, loggers = cfg.get("callbacks") or {}, cfg.get("logger") or {}
    lines = [f"run folder  {run_dir}  (config: .hydra/, log: run.log, tags: tags.log)"]
    for name, label in (("checkpoint", "checkpoints"), ("samples", "samples")):
        if callbacks.get(name):
            lines.append(f"{label:<11} {callbacks[name].dirpath}")
    for name, logger in loggers.items():
        if logger:
            where = Path(logger.save_dir) / (logger.get("name") or "" if name != "wandb" else name)
            lines.append(f"{'logs':<11} {name}: {where}")
    log.info("outputs of this run:\n  " + "\n  ".join(lines))


def build(cfg: DictConfig) -> tuple[pl.LightningDataModule, GANModule, pl.Trainer]:
    """Instantiate datamodule, model and trainer (with callbacks and loggers) from the config.

    Raises ConfigError (unwrapped from Hydra's InstantiationException) for invalid values.
    """
    try:
        datamodule = instantiate(cfg.data)
        configure_labels(cfg, datamodule)  # model.conditioning / num_classes / labels from data
        model = instantiate(cfg.model)
        check_precision_with_penalty(cfg.trainer.get("precision", "32-true"), model.loss)
        callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
        if cfg.get("metric"):  # FID evaluator: checks the Inception weights now, before training
            evaluator = instantiate(cfg.metric)
            if not evaluator.enabled:  # no weights, not required: it warned; nothing to optimise
                cfg.optimized_metric = None
            callbacks.append(evaluator)
        loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
        if cfg.get("logger", {}).get("wandb"):
            callbacks.append(LoggerState())  # the W&B run id in checkpoints
        trainer = build_trainer(cfg, callbacks, loggers)
    except InstantiationException as error:
        if isinstance(error.__cause__, ConfigError):
            raise error.__cause__ from None
        raise
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    return datamodule, model, trainer


TRAINER_CHOICES = ("accelerator", "devices", "strategy", "num_nodes", "precision")  # in errors


def build_trainer(cfg: DictConfig, callbacks: list, loggers: list) -> pl.Trainer:
    """Lightning's Trainer from `cfg.trainer`; Lightning's own refusal of a trainer.* value
    (an unknown strategy, accelerator or device list) becomes one ConfigError line."""
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    try:
        trainer = instantiate(
            cfg.trainer, callbacks=callbacks, logger=loggers or False,
            plugins=[AtomicCheckpointIO()],
        )
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, (MisconfigurationException, ValueError, TypeError)):
            reason = " ".join(str(cause).split())  # Lightning's message names the argument
            given = ", ".join(f"trainer.{k}={cfg.trainer.get(k)!r}" for k in TRAINER_CHOICES)
            raise ConfigError(f"trainer: {reason} (given: {given})") from None
        raise
    use_ganlab_summary(trainer)  # no FLOPs column reading 0
    return trainer


def check_resume(cfg: DictConfig, model: GANModule) -> str | None:
    """Validate `ckpt_path` before training: it exists, is ganlab's and is of this model."""
    if not cfg.get("ckpt_path"):
        return None
    state = load_checkpoint(cfg.ckpt_path)[CHECKPOINT_KEY]
    if state.get("model") != type(model).__name__:
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path} was trained with model {state.get('model')}, "
            f"but this run builds {type(model).__name__}; pass the same model= as that run"
        )
    return str(cfg.ckpt_path)


def continue_run(cfg: DictConfig) -> None:
    """A resume continues its run: with ckpt_path=RUN/checkpoints/X.ckpt, outputs (loggers,
    checkpoints, samples) go to RUN, not to this invocation's Hydra folder (which keeps only its
    .hydra/ and log); W&B continues the run id the checkpoint holds (else RUN's)."""
    if not cfg.get("ckpt_path"):
        return
    ckpt = Path(cfg.ckpt_path).expanduser().resolve()
    with open_dict(cfg):
        if ckpt.parent.name == "checkpoints" and ckpt.is_file():
            run = str(ckpt.parent.parent)
            if run != str(Path(cfg.paths.output_dir).resolve()):
                log.info("resuming %s: continuing in its run folder %s", ckpt.name, run)
                cfg.paths.output_dir = run
        wandb = (cfg.get("logger") or {}).get("wandb")
        if wandb and wandb.get("id") is None and ckpt.is_file():
            saved = load_checkpoint(ckpt).get(LOGGER_STATE_KEY) or {}
            if saved.get("wandb_id"):
                wandb.id = saved["wandb_id"]
                rewind = wandb_rewind_point(saved["wandb_id"], saved.get("wandb_step"))
                if rewind and wandb.get("resume_from") is None:
                    wandb.resume_from = rewind  # W&B drops its history past the checkpoint


def check_writable(cfg: DictConfig) -> None:
    """Refuse, before training, a run folder that cannot be written (read-only file system, no
    permission): creating it and a probe file in it must work."""
    folder = Path(cfg.paths.output_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".ganlab-write-probe"):
            pass
    except OSError as error:
        raise ConfigError(
            f"paths.output_dir={str(folder)!r} is not writable ({error.strerror or error}): "
            "point hydra.run.dir (or paths.output_dir) at a folder you can write"
        ) from None


def output_error(error: BaseException) -> OutputWriteError | None:
    """The OutputWriteError behind `error` (itself, or what it was raised while handling: a
    logger writing on the same full disk during Lightning's teardown), else None."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OutputWriteError):
            return error
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def set_tf32(tf32: bool | None) -> None:
    """`tf32=true`: TF32 matmuls and cuDNN convs (Ampere+ GPUs, 10-bit mantissa, several times
    faster); false: full float32 for both; null: PyTorch's defaults (TF32 convs, fp32 matmuls)."""
    if tf32 is not None:
        torch.set_float32_matmul_precision("high" if tf32 else "highest")
        torch.backends.cudnn.allow_tf32 = bool(tf32)


def keep_freed_memory(enabled: bool) -> bool:
    """`heap_malloc=true` (glibc on Linux): serve CPU allocations up to 32 MiB from the heap and
    keep up to 1 GiB of freed memory there. glibc's defaults map a large buffer afresh at each
    allocation and return it at each free (thresholds that adapt only partly), so a CPU training
    step, which allocates and frees the same activation-sized buffers at every iteration, pays a
    page fault per 4 KiB touched (fault counts with and without: experiments/BENCHMARKS.md).
    Freed memory stays with the process (its RSS stays near its peak). Returns whether it was
    applied (false elsewhere, or when disabled)."""
    if not enabled or sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's mallopt parameter numbers
    mapped = libc.mallopt(m_mmap_threshold, 32 << 20)  # bytes: larger buffers are still mapped
    return bool(mapped and libc.mallopt(m_trim_threshold, 1 << 30))  # bytes kept when freed


def metric_value(metrics: Mapping[str, Any], name: str | None) -> float | None:
    """The value of metric `name` in `metrics` (a trainer's `callback_metrics`) as a float, None
    if `name` is None; raises MetricMissingError naming the metrics there if it is absent."""
    if name is None:
        return None
    if name not in metrics:
        raise MetricMissingError(
            f"optimized_metric={name} was not logged by this run; it logged "
            f"{sorted(metrics) or 'nothing'}. Set optimized_metric= to one of those (or null), "
            "or make sure the metric runs (e.g. metric=fid with its weights, and a run that "
            "reaches an evaluation)"
        )
    return float(metrics[name])


class MetricMissingError(ConfigError):
    """`optimized_metric` names a metric the run never logged (found after training)."""


def train(cfg: DictConfig) -> float | None:
    """Train one run; returns the value of `cfg.optimized_metric` (None when it is null).

    Before anything is built: every config value checked (`config_schema.check_config`), the
    run folder writable. A resume rewinds the loggers to the checkpoint first."""
    check_config(cfg)  # one line naming the key, the value and what is allowed
    continue_run(cfg)  # a resume writes into its run folder: decided before anything is announced
    check_writable(cfg)
    announce_outputs(cfg)
    apply_extras(cfg)  # tags into cfg (and so into the loggers), config tree, tags.log
    pl.seed_everything(cfg.seed, workers=True)
    set_tf32(cfg.get("tf32"))
    keep_freed_memory(cfg.get("heap_malloc", True))
    datamodule, model, trainer = build(cfg)
    check_launch(trainer)  # -m with DDP: a clear error instead of a re-launched sweep
    ckpt_path = check_resume(cfg, model)
    if cfg.get("init_from"):  # a new run from another run's weights (training/init_from.py)
        if ckpt_path is not None:
            raise ConfigError("init_from and ckpt_path both set: ckpt_path resumes a run exactly, "
                              "init_from starts a new one from its weights; pass one of them")
        init_from(model, cfg.init_from)
    if cfg.get("init_from"):  # a new run from another run's weights (training/init_from.py)
        if ckpt_path is not None:
            raise ConfigError("init_from and ckpt_path both set: ckpt_path resumes a run exactly, "
                              "init_from starts a new one from its weights; pass one of them")
        init_from(model, cfg.init_from)
    resume = ckpt_path or lightning_api.hpc_resume_path(trainer)  # a requeued SLURM job too
    if resume is not None:  # before any logger writes: rows past the checkpoint set aside
        rewind_loggers(trainer, load_checkpoint(resume))
    log_run_config(trainer, model.run_config)  # the resolved config as W&B run config etc.
    try:  # the checkpoint is read as data only (also by AtomicCheckpointIO)
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except Exception as error:
        cause = output_error(error)  # a full disk: one line, not a logger's follow-up error
        if cause is not None and cause is not error:
            raise cause from None
        raise
    log.info("finished at %.1f kimg; output in %s", model.nimg / 1000, cfg.paths.output_dir)
    name = cfg.get("optimized_metric")
    if interrupted(trainer) and name not in trainer.callback_metrics:
        log.warning("stopped by a signal before %s was logged; resume with ckpt_path=%s/"
                    "checkpoints/last.ckpt", name, cfg.paths.output_dir)
        return None  # not a configuration error: the run was cut short on purpose
    return metric_value(trainer.callback_metrics, name)


def interrupted(trainer: pl.Trainer) -> bool:
    """True if a SIGINT / SIGTERM stopped the run (KimgCheckpoint saved and stopped early)."""
    return any(getattr(c, "stop_signal", None) for c in trainer.callbacks)
