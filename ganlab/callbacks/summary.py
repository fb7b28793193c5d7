"""The model summary at the start of a run: parameter counts per module, without Lightning's
FLOPs column and "Total FLOPs" line when FLOPs were not measured (Lightning counts FLOPs only
for a module with an `example_input_array`, which a GAN module has none of, so both read 0)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelSummary as LightningModelSummary
from pytorch_lightning.utilities.model_summary.model_summary import _format_summary_table

from ganlab.logs import get_logger

log = get_logger(__name__)


class ModelSummary(LightningModelSummary):
    """Lightning's plain-text model summary; the FLOPs column and total only when measured."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        log.info("\n" + summary_table(summary_data, total_parameters, trainable_parameters,
                                      model_size, total_training_modes, total_flops))


def summary_table(
    summary_data: list[tuple[str, list[str]]],
    total_parameters: int,
    trainable_parameters: int,
    model_size: float,
    total_training_modes: dict[str, int],
    total_flops: int,
) -> str:
    """Lightning's summary table, with its FLOPs column and total line dropped if
    `total_flops` is 0 (not measured)."""
    if total_flops:
        columns = summary_data
    else:
        columns = [column for column in summary_data if column[0] != "FLOPs"]
    table = _format_summary_table(total_parameters, trainable_parameters, model_size,
                                  total_training_modes, total_flops, *columns)
    if not total_flops:
        table = "\n".join(line for line in table.splitlines() if not line.endswith("Total Flops"))
    return table


def use_ganlab_summary(trainer: pl.Trainer) -> None:
    """Swap the model summary callback Lightning added (trainer.enable_model_summary) for
    ganlab's, at the same depth; nothing when the summary is off."""
    for index, callback in enumerate(trainer.callbacks):
        if type(callback) is not ModelSummary and isinstance(callback, LightningModelSummary):
            trainer.callbacks[index] = ModelSummary(max_depth=callback._max_depth)
