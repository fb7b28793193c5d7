"""What a checkpoint must hold for exact resume, per rank: the RNG streams (torch CPU and the
device's, numpy, Python) and the sampler's data position (ganlab.data.base). The module and the
datamodule save them through their checkpoint hooks; this module gathers and checks them.

States are plain types (tensors, lists, ints), so checkpoints still load with weights_only.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist

from ganlab.logs import get_logger

log = get_logger(__name__)  # rank 0 only: every rank calls warn_inexact


def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's RNG states: torch CPU, `device`'s (CUDA; None elsewhere), numpy, Python."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what `rng_state` returned (the device's stream only if saved from a CUDA device)."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def gather_per_rank(obj: Any) -> list[Any]:
    """[obj of rank 0, obj of rank 1, ...]: a collective under DDP, [obj] on one process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def this_rank(states: list[Any] | None, trainer: pl.Trainer | None) -> Any | None:
    """This rank's entry of per-rank `states` saved by a run of the same world size, else None.

    None in `states` (a checkpoint from before exact resume): the module says once that the resume
    is not exact. Another world size: the module says the RNG streams restart per rank.
    """
    rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
    if states is None or len(states) != world:
        return None
    return states[rank]


def warn_inexact(states: list[Any] | None, trainer: pl.Trainer | None) -> None:
    """Say once, at load, why a resume will not continue the saved RNG streams."""
    world = trainer.world_size if trainer is not None else 1
    if states is None:
        log.warning("this checkpoint holds no RNG state or data position (written before exact "
                    "resume): the resume is not exact; latents and batches restart from the seed")
    elif len(states) != world:
        log.warning("this checkpoint was written by %d processes, this run has %d: the RNG "
                    "streams restart per rank from the seed (resume not exact); the data "
                    "position continues at the same image count", len(states), world)
