"""Hydra entry point: `python -m ganlab.run [group=option ...] [key=value ...]`.

Thin by design: compose the config -> instantiate datamodule, model, callbacks, loggers and
trainer -> fit -> return `cfg.optimized_metric` (the value a sweeper minimises).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ganlab.callbacks.checkpoint import AtomicCheckpointIO
from ganlab.checkpoints import load_checkpoint
from ganlab.loggers import log_run_config
from ganlab.logs import get_logger
from ganlab.models.base import CHECKPOINT_KEY, GANModule
from ganlab.multirun import check_launch, is_multirun, run_job
from ganlab.utils import ConfigError

log = get_logger(__name__)
# The EMA generator is in eval mode on purpose; Lightning warns about it at every fit.
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training")


def build(cfg: DictConfig) -> tuple[pl.LightningDataModule, GANModule, pl.Trainer]:
    """Instantiate datamodule, model and trainer (with callbacks and loggers) from the config.

    Raises ConfigError (unwrapped from Hydra's InstantiationException) for invalid values.
    """
    try:
        datamodule = instantiate(cfg.data)
        model = instantiate(cfg.model)
        callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
        if cfg.get("metric"):  # FID evaluator: checks the Inception weights now, before training
            evaluator = instantiate(cfg.metric)
            if not evaluator.enabled:  # no weights, not required: it warned; nothing to optimise
                cfg.optimized_metric = None
            callbacks.append(evaluator)
        loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
        trainer = instantiate(
            cfg.trainer,
            callbacks=callbacks,
            logger=loggers or False,
            plugins=[AtomicCheckpointIO()],
        )
    except InstantiationException as error:
        if isinstance(error.__cause__, ConfigError):
            raise error.__cause__ from None
        raise
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    return datamodule, model, trainer


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


def set_tf32(tf32: bool | None) -> None:
    """`tf32=true`: TF32 matmuls and cuDNN convs (Ampere+ GPUs, 10-bit mantissa, several times
    faster); false: full float32 for both; null: PyTorch's defaults (TF32 convs, fp32 matmuls)."""
    if tf32 is not None:
        torch.set_float32_matmul_precision("high" if tf32 else "highest")
        torch.backends.cudnn.allow_tf32 = bool(tf32)


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
    """Train one run; returns `trainer.callback_metrics[cfg.optimized_metric]` (e.g. the best
    val/fid), None when `optimized_metric` is null (metric=none, or FID off for lack of weights)."""
    pl.seed_everything(cfg.seed, workers=True)
    set_tf32(cfg.get("tf32"))
    datamodule, model, trainer = build(cfg)
    check_launch(trainer)  # -m with DDP: a clear error instead of a re-launched sweep
    ckpt_path = check_resume(cfg, model)
    log_run_config(trainer, model.run_config)  # the resolved config as W&B run config etc.
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    log.info("finished at %.1f kimg; output in %s", model.nimg / 1000, cfg.paths.output_dir)
    return metric_value(trainer.callback_metrics, cfg.get("optimized_metric"))


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
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
