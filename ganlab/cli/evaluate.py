"""Score trained checkpoints with the training evaluator, without training.

    python -m ganlab.evaluate ckpt_path=RUN_DIR|CKPT|SWEEP_DIR [metric=fid|shapes]
        [metric.num_fake=50000] [metric.num_real=50000] [eval.split=train|val] [eval.ema=true]
        [data.root=...]

A run dir is scored by checkpoints/best.ckpt (else last.ckpt); a sweep dir (numbered job folders)
by every job's best-else-last checkpoint, one row per job. Fakes are generated batch by batch on
the device (no image files) and scored by `FIDEvaluator.evaluate` against the chosen split of the
checkpoint's own data config. Prints a table and writes eval.json (run dir or sweep dir).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from ganlab import config_dir
from ganlab.logs import get_logger
from ganlab.metrics.evaluator import FIDEvaluator
from ganlab.training.checkpoints import (
    CHECKPOINT_KEY,
    check_stored_config,
    load_checkpoint,
    load_generator,
    run_checkpoint,
)
from ganlab.training.scoring import (
    build_evaluator,
    check_split,
    data_config,
    metric_data,
    metric_resolution,
    reference_data,
    score,
)
from ganlab.utils import ConfigError

log = get_logger(__name__)


@dataclass
class Target:
    """One checkpoint to score: its row label, file, kimg and the run's Hydra overrides."""

    label: str
    checkpoint: Path
    overrides: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    kimg: float = math.nan


# ----------------------------------------------------------------------------- finding checkpoints
def run_dir_of(checkpoint: Path) -> Path:
    """The run dir of RUN/checkpoints/X.ckpt (else the checkpoint's folder)."""
    return (
        checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    )


def run_overrides(run_dir: Path) -> list[str]:
    """The Hydra overrides of a run (RUN/.hydra/overrides.yaml), [] if unknown."""
    path = run_dir / ".hydra" / "overrides.yaml"
    return list(yaml.safe_load(path.read_text()) or []) if path.is_file() else []


def find_targets(ckpt_path: str | None) -> tuple[list[Target], Path]:
    """The checkpoints named by `ckpt_path` (file, run dir or sweep dir) and the folder that gets
    eval.json. Raises ConfigError if there is none."""
    if not ckpt_path:
        raise ConfigError(
            "ckpt_path is not set: pass a checkpoint, a run dir or a sweep dir, e.g. "
            "ckpt_path=outputs/train/runs/DATE (checkpoints/best.ckpt, else last.ckpt)"
        )
    path = Path(str(ckpt_path)).expanduser()
    if path.is_file():
        run_dir = run_dir_of(path)
        return [Target(run_dir.name, path, run_overrides(run_dir))], run_dir
    if not path.is_dir():
        raise ConfigError(
            f"ckpt_path={ckpt_path} does not exist: pass a .ckpt file, a run dir or a sweep dir"
        )
    if (checkpoint := run_checkpoint(path)) is not None:
        return [Target(path.name, checkpoint, run_overrides(path))], path
    jobs = sorted(
        (p for p in path.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)
    )
    targets = [Target(j.name, c, run_overrides(j)) for j in jobs if (c := run_checkpoint(j))]
    for job in jobs:
        if run_checkpoint(job) is None:
            log.warning("sweep job %s has no checkpoint (failed or still running): skipped", job)
    if not targets:
        raise ConfigError(
            f"ckpt_path={ckpt_path} holds no checkpoint: looked for {path}/checkpoints/"
            f"{{best,last}}.ckpt and {path}/N/checkpoints/{{best,last}}.ckpt (sweep jobs). Pass a "
            "run dir of ganlab.run, a sweep dir of ganlab.run -m, or a .ckpt file"
        )
    return targets, path


# ----------------------------------------------------------------------------- checks
def check_target(target: Target, changes: dict[str, Any], evaluator: FIDEvaluator) -> None:
    """Read the target's config and kimg; its data and resolution must suit the metric."""
    state = load_checkpoint(target.checkpoint)[CHECKPOINT_KEY]
    if not state.get("config"):
        raise ConfigError(f"{target.checkpoint} holds no run config; was it written by ganlab.run?")
    check_stored_config(state["config"], target.checkpoint)  # before anything is instantiated
    target.config, target.kimg = state["config"], state.get("nimg", math.nan) / 1000
    side = target.config["model"]["generator"]["resolution"]
    data = data_config(target.config, changes)
    if data["resolution"] != side:
        raise ConfigError(
            f"data.resolution={data['resolution']} differs from the checkpoint's "
            f"{side} px generator ({target.checkpoint}): drop the data.resolution "
            "override"
        )
    wanted, required = metric_data(evaluator), metric_resolution(evaluator)
    if wanted and data["_target_"] != wanted:
        raise ConfigError(
            f"{target.checkpoint} was trained on data._target_={data['_target_']}; this metric "
            f"scores {wanted} images only: use metric=fid"
        )
    if required is not None and side != required:
        raise ConfigError(
            f"{target.checkpoint} makes {side} px images; the metric's feature extractor takes "
            f"{required} px. Score it with metric=fid, or train at data.resolution={required}"
        )


# ----------------------------------------------------------------------------- scoring
def score_target(
    evaluator: FIDEvaluator,
    target: Target,
    changes: dict[str, Any],
    split: str,
    ema: bool,
    device: str,
) -> dict[str, Any]:
    generator, config = load_generator(target.checkpoint, ema=ema)
    data = data_config(config, changes)
    values = score(evaluator, generator, config, data, reference_data(data, split), split, device)
    return {
        "job": target.label,
        "kimg": target.kimg,
        **values,
        "checkpoint": str(target.checkpoint),
        "overrides": target.overrides,
    }


# ----------------------------------------------------------------------------- output
def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return " ".join(value) if isinstance(value, list) else str(value)


def format_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """A markdown table of `rows` (columns: the given ones, else every key of the first row)."""
    columns = columns or list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_json(path: Path, protocol: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"protocol": protocol, "rows": rows}, indent=2) + "\n")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def evaluate(cfg: DictConfig) -> list[dict[str, Any]]:
    """Score every checkpoint of `cfg.ckpt_path`; print the table, write eval.json; the rows."""
    options = cfg.eval
    split = check_split(options.split)
    changes = OmegaConf.to_container(cfg.data) if cfg.get("data") else {}
    targets, out_dir = find_targets(cfg.get("ckpt_path"))
    evaluator = build_evaluator(cfg.get("metric"))
    for target in targets:  # every check before any scoring
        check_target(target, changes, evaluator)
    device = options.device or default_device()
    rows = [score_target(evaluator, t, changes, split, bool(options.ema), device) for t in targets]
    protocol = {
        "split": split,
        "ema": bool(options.ema),
        "seed": int(cfg.seed),
        "extractor": evaluator.extractor_id,
        "device": str(device),
    }
    out = Path(options.out) if options.out else out_dir / "eval.json"
    write_json(out, protocol, rows)
    hidden = {"checkpoint", "overrides", "seconds"}
    distance = getattr(evaluator, "name", "fid")  # first after job and kimg
    columns = ["job", "kimg", distance]
    columns += [c for c in rows[0] if c not in {*hidden, *columns}] + ["overrides"]
    print(format_table(rows, columns))
    print(f"{split} split, {'EMA' if options.ema else 'raw'} generator; wrote {out}")
    return rows


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg)
    except ConfigError as error:
        log.error("configuration error: %s", error)
        sys.exit(2)


def allow_data_overrides(argv: list[str]) -> list[str]:
    """`data.KEY=VALUE` -> `++data.KEY=VALUE`: conf/eval.yaml's `data` is empty (the checkpoint
    holds the data config), so Hydra must be told to add the key."""
    return [f"++{a}" if a.startswith("data.") else a for a in argv]


def cli() -> None:
    """`ganlab-evaluate ckpt_path=... [data.KEY=VALUE ...]` (console script and `python -m`)."""
    sys.argv = allow_data_overrides(sys.argv)
    main()


if __name__ == "__main__":
    cli()
