"""Reading ganlab checkpoints: validation with clear errors, and the EMA generator out of one.

Checkpoints are data, not code: every load goes through `load_as_data` (`torch.load` with
`weights_only=True`: tensors, numbers, strings, lists, dicts; never an arbitrary pickled object),
and the config stored in a checkpoint is instantiated only when each of its `_target_`s lies in
ganlab or in a module the user trusts (`GANLAB_TRUSTED_MODULES`).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn

from ganlab.utils import ConfigError

CHECKPOINT_KEY = "ganlab"  # the checkpoint entry holding ganlab's own state (config, nimg, ...)
CHECKPOINTS = ("best.ckpt", "last.ckpt")  # a run dir's checkpoints, in order of preference
TRUSTED_MODULES = ("ganlab",)  # packages a checkpoint's stored `_target_`s may name
TRUSTED_ENV = "GANLAB_TRUSTED_MODULES"  # more of them, comma-separated (e.g. mypkg,lab.models)
STORED_TREES = ("model", "data")  # parts of a stored run config that tools instantiate


def run_checkpoint(run_dir: Path) -> Path | None:
    """RUN/checkpoints/best.ckpt, else last.ckpt, else None."""
    for name in CHECKPOINTS:
        if (run_dir / "checkpoints" / name).is_file():
            return run_dir / "checkpoints" / name
    return None


def missing(path: Path) -> ConfigError:
    return ConfigError(
        f"checkpoint {str(path)!r} does not exist. Pass the path of a run's "
        "checkpoints/last.ckpt, e.g. ckpt_path=outputs/train/runs/DATE/checkpoints/last.ckpt"
    )


def load_as_data(
    path: str | Path, map_location: Any = "cpu", mmap: bool = True
) -> dict[str, Any]:
    """`torch.load(path, weights_only=True)`: a file holding anything but tensors and plain data
    (a pickled object, which could run code while it is read) is refused with a ConfigError
    naming the file and the object; a file that is no checkpoint at all, likewise."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise missing(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        found = [line.strip() for line in str(error).splitlines() if "GLOBAL" in line]
        what = found[0] if found else str(error).splitlines()[0]
        raise ConfigError(
            f"{str(path)!r} is refused: it holds more than tensors and plain data ({what}), and "
            "ganlab loads checkpoints as data only (torch.load weights_only=True); a checkpoint "
            "written by ganlab never does"
        ) from None
    except Exception as error:  # noqa: BLE001 - truncated, not a torch file, ...
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"{str(path)!r} is not a ganlab checkpoint (cannot be read: {reason})"
                          ) from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint on the CPU as data (`load_as_data`, memory-mapped), raising ConfigError
    if it is missing, holds more than data, or is not ganlab's."""
    path = Path(path).expanduser()
    checkpoint = load_as_data(path)
    if not isinstance(checkpoint, dict) or CHECKPOINT_KEY not in checkpoint:
        raise ConfigError(f"{str(path)!r} is not a ganlab checkpoint (no '{CHECKPOINT_KEY}' entry)")
    return checkpoint


def trusted_modules() -> tuple[str, ...]:
    """ganlab plus the module prefixes in $GANLAB_TRUSTED_MODULES."""
    extra = [m.strip() for m in os.environ.get(TRUSTED_ENV, "").split(",") if m.strip()]
    return (*TRUSTED_MODULES, *extra)


def stored_targets(node: Any, key: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) of every `_target_` in a stored config node."""
    found = []
    if isinstance(node, dict):
        for name, value in node.items():
            path = f"{key}.{name}" if key else str(name)
            if name == "_target_":
                found.append((path, value))
            else:
                found += stored_targets(value, path)
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            found += stored_targets(value, f"{key}[{index}]")
    return found


def check_stored_config(config: dict[str, Any], path: str | Path) -> None:
    """Refuse a stored run config whose model or data names a `_target_` outside ganlab and the
    trusted modules (a checkpoint could otherwise call e.g. os.system when a tool instantiates
    its generator or data): a ConfigError naming the file, the key and the target."""
    trusted = trusted_modules()
    for tree in STORED_TREES:
        for key, target in stored_targets(config.get(tree), tree):
            name = target if isinstance(target, str) else ""
            if not any(name == m or name.startswith(m + ".") for m in trusted):
                raise ConfigError(
                    f"{str(path)!r} is refused: its stored config has {key}={target!r}, outside "
                    f"ganlab; if that is your own code, trust it with {TRUSTED_ENV}="
                    f"{name.split('.')[0] or 'MODULE'}"
                )


def load_generator(path: str | Path, ema: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """The (EMA by default) generator of a checkpoint, in eval mode on the CPU, and its config."""
    checkpoint = load_checkpoint(path)
    config = checkpoint[CHECKPOINT_KEY].get("config")
    if not config:
        raise ConfigError(f"{str(path)!r} holds no run config; was it written by ganlab.run?")
    check_stored_config(config, path)
    generator = instantiate(config["model"]["generator"])
    prefix = "generator_ema." if ema else "generator."
    state = {
        k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)
    }
    generator.load_state_dict(state)
    return generator.eval().requires_grad_(False), config
