"""`init_from=RUN_OR_CKPT`: a new run that starts from another run's weights (the transfer set-up
of the ADA paper: train on a small set from a model trained on a large one).

G, D and EMA-G weights are copied from the checkpoint (a run folder: its best.ckpt, else
last.ckpt), read as data (`load_checkpoint`). Everything else starts fresh: the image count
(so the EMA ramp-up, PGGAN's schedule and the kimg counters begin at 0), the optimizers' moments,
ADA's p, the data position and the RNG. A tensor whose shape differs here (the first layer of a
concat D or a class embedding when the label count changed) keeps this run's initialisation and
is listed; a name on one side only (another architecture) is a ConfigError. `ckpt_path` stays
the exact resume of one run; the two do not combine.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ganlab.logs import get_logger
from ganlab.training.checkpoints import load_checkpoint, run_checkpoint
from ganlab.utils import ConfigError

log = get_logger(__name__)

NETWORKS = ("generator.", "discriminator.", "generator_ema.")
FRESH = ("stage", "alpha")  # PGGAN's stage buffers: the new run's schedule sets them


def resolve(source: str | Path) -> Path:
    """A checkpoint file, or a run folder's checkpoint (best.ckpt, else last.ckpt)."""
    path = Path(str(source)).expanduser()
    if path.is_dir():
        found = run_checkpoint(path)
        if found is None:
            raise ConfigError(f"init_from={source}: the folder has no checkpoints/best.ckpt or "
                              "checkpoints/last.ckpt")
        return found
    if not path.is_file():
        raise ConfigError(f"init_from={source} does not exist: pass a run folder or a .ckpt")
    return path


def init_from(module: nn.Module, source: str | Path) -> list[str]:
    """Copy G, D and EMA-G weights of `source` into `module` (in place); returns the names of
    the tensors left at this run's initialisation because their shapes differ."""
    path = resolve(source)
    saved = load_checkpoint(path)["state_dict"]
    ours = module.state_dict()

    def wanted(name: str) -> bool:
        return name.startswith(NETWORKS) and name.rsplit(".", 1)[-1] not in FRESH

    theirs = {k: v for k, v in saved.items() if wanted(k)}
    mine = {k for k in ours if wanted(k)}
    only_there, only_here = sorted(set(theirs) - mine), sorted(mine - set(theirs))
    if only_there or only_here:
        raise ConfigError(
            f"init_from={source}: its networks do not fit this run's ({len(only_there)} tensors "
            f"only in the checkpoint, e.g. {only_there[:3]}; {len(only_here)} only here, e.g. "
            f"{only_here[:3]}); use the same model and width (model.conditioning may differ in "
            "label count only, and concat <-> acgan keep the same layers)"
        )
    reinitialised = sorted(k for k, v in theirs.items() if v.shape != ours[k].shape)
    loaded = {k: v for k, v in theirs.items() if k not in reinitialised}
    module.load_state_dict(loaded, strict=False)
    log.info("init_from %s: %d tensors loaded (G, D, EMA-G); counters, optimizers, EMA ramp-up "
             "and ADA's p start fresh", path, len(loaded))
    if reinitialised:
        log.warning("init_from: %d tensors have other shapes here and keep this run's "
                    "initialisation: %s", len(reinitialised), ", ".join(reinitialised))
    return reinitialised
