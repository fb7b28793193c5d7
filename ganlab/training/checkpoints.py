"""Reading ganlab checkpoints: validation with clear errors, and the EMA generator out of one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn

from ganlab.utils import ConfigError

CHECKPOINT_KEY = "ganlab"  # the checkpoint entry holding ganlab's own state (config, nimg, ...)
CHECKPOINTS = ("best.ckpt", "last.ckpt")  # a run dir's checkpoints, in order of preference


def run_checkpoint(run_dir: Path) -> Path | None:
    """RUN/checkpoints/best.ckpt, else last.ckpt, else None."""
    for name in CHECKPOINTS:
        if (run_dir / "checkpoints" / name).is_file():
            return run_dir / "checkpoints" / name
    return None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint on the CPU, raising ConfigError if it is missing or not ganlab's."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"checkpoint {str(path)!r} does not exist. Pass the path of a run's "
            "checkpoints/last.ckpt, e.g. ckpt_path=outputs/train/runs/DATE/checkpoints/last.ckpt"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise ConfigError(
            f"{str(path)!r} is not a ganlab checkpoint (cannot be loaded: {error})"
        ) from None
    if not isinstance(checkpoint, dict) or CHECKPOINT_KEY not in checkpoint:
        raise ConfigError(f"{str(path)!r} is not a ganlab checkpoint (no '{CHECKPOINT_KEY}' entry)")
    return checkpoint


def load_generator(path: str | Path, ema: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """The (EMA by default) generator of a checkpoint, in eval mode on the CPU, and its config."""
    checkpoint = load_checkpoint(path)
    config = checkpoint[CHECKPOINT_KEY].get("config")
    if not config:
        raise ConfigError(f"{str(path)!r} holds no run config; was it written by ganlab.run?")
    generator = instantiate(config["model"]["generator"])
    prefix = "generator_ema." if ema else "generator."
    state = {
        k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)
    }
    generator.load_state_dict(state)
    return generator.eval().requires_grad_(False), config
