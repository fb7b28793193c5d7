"""Score a generator with the training evaluator, without training: the shared part of
`ganlab.cli.evaluate` (checkpoints, run dirs, sweeps) and `ganlab.cli.quality` (its rows).

The evaluator is the metric group's FIDEvaluator (metric=fid|shapes) built for offline use; the
reference images are a split of the checkpoint run's own data config.
"""

from __future__ import annotations

from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from ganlab.metrics.evaluator import FIDEvaluator
from ganlab.utils import ConfigError

SPLITS = ("train", "val")


class GeneratorView(nn.Module):
    """What FIDEvaluator needs of a GANModule, around the one generator being scored:
    `generator` and `generator_ema` (both that generator), `sample(z[, labels])`, `device`,
    `run_config`, and `labels` (a conditional generator's, from its run config; else None)."""

    def __init__(self, generator: nn.Module, run_config: dict[str, Any]) -> None:
        super().__init__()
        from ganlab.models.conditioning import Labels

        self.generator = generator
        self.run_config = run_config
        model = run_config.get("model") or {}
        conditional = model.get("conditioning", "none") != "none"
        self.labels = Labels(**model["labels"]) if conditional else None

    @property
    def generator_ema(self) -> nn.Module:
        return self.generator

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    @torch.no_grad()
    def sample(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """z [N, z_dim] (+ labels [N, K]; conditional default: drawn at the data's label
        frequencies) -> images [N, 3, r, r] in [-1, 1]."""
        if self.labels is None:
            return self.generator(z)
        if labels is None:
            labels = self.labels.random(len(z), z.device)
        return self.generator(z, labels.to(z.device, z.dtype))


def build_evaluator(metric: DictConfig | None) -> FIDEvaluator:
    """The metric group's FIDEvaluator for offline use: no schedule, no best.ckpt, and missing
    weights are an error (there is nothing else to do)."""
    if not metric:
        raise ConfigError("metric=none scores nothing: choose metric=fid or metric=shapes")
    try:
        evaluator = instantiate(
            metric,
            every_kimg=None,
            stop_kimg=None,
            checkpoint_dir=None,
            required=True,
            **({"data_target": None} if "data_target" in metric else {}),  # per checkpoint
        )
    except InstantiationException as error:
        if isinstance(error.__cause__, ConfigError):
            raise error.__cause__ from None
        raise
    if not isinstance(evaluator, FIDEvaluator):
        raise ConfigError(
            f"metric._target_={metric.get('_target_')} is not an evaluator: choose "
            "metric=fid or metric=shapes"
        )
    return evaluator


def metric_resolution(evaluator: FIDEvaluator) -> int | None:
    """The image side the feature extractor requires (px), None if any side works."""
    return getattr(getattr(evaluator.metrics, "extractor", None), "resolution", None)


def metric_data(evaluator: FIDEvaluator) -> str | None:
    """The data class the feature extractor is made for (`data_target`), None if any."""
    return getattr(getattr(evaluator.metrics, "extractor", None), "data_target", None)


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ConfigError(
            f"eval.split={split!r} is not a split: choose eval.split=val (model "
            "selection) or eval.split=train (papers' fid50k protocol)"
        )
    return split


def data_config(config: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint run's data config with the user's data.* changes applied."""
    merged = OmegaConf.merge(config["data"], changes or {})
    return OmegaConf.to_container(merged, resolve=True)


def reference_data(data: dict[str, Any], split: str) -> Any:
    """The datamodule of `data` whose validation set is the `split` split (the evaluator reads
    `val_set`), without building the other split."""
    datamodule = instantiate(data)
    build = getattr(datamodule, "labelled_split", datamodule.build_split)  # with its labels
    datamodule.val_set = build(check_split(split))
    return datamodule


def output_side(generator: nn.Module) -> int:
    """The side of the images `generator` makes now (PGGAN: its current stage), px."""
    side = getattr(generator, "current_resolution", None)
    return int(side if side is not None else generator.resolution)


def score(
    evaluator: FIDEvaluator,
    generator: nn.Module,
    config: dict[str, Any],
    data: dict[str, Any],
    datamodule: Any,
    split: str,
    device: torch.device | str,
) -> dict[str, float]:
    """Score `generator` against `datamodule`'s reference split with `evaluator.evaluate`.

    The real statistics are cached under the data config plus the split (train statistics never
    share an entry with the val statistics of training runs)."""
    if split != "val":  # the cache key: the evaluator knows the split as 'val' only
        data = {
            **data,
            "eval_split": split,
            "eval_train": {
                "num_images": data.get("num_images"),
                "train_split": data.get("train_split"),
            },
        }
    datamodule.set_resolution(output_side(generator))
    view = GeneratorView(generator, {**config, "data": data}).to(device)
    return evaluator.evaluate(view, datamodule)
