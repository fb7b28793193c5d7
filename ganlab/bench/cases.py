"""Benchmark cases: what is measured (model, side, batch, device, precision), the config composed
for a case, PGGAN phases, and the training images."""


from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
REFERENCE = {"dcgan": (64, 64), "sagan": (64, 32), "pggan": (32, None)}  # model: (R, batch)
QUICK = {"dcgan": (32, 32), "sagan": (32, 16), "pggan": (16, None)}
CPU_OVERRIDES = {  # PGGAN's paper widths (512 channels up to 32 px) are for GPUs
    "pggan": ("model.generator.width=64", "model.discriminator.width=64"),
}
QUICK_OVERRIDES = {
    "sagan": ("model.generator.width=16", "model.discriminator.width=16"),
    "pggan": ("model.generator.width=16", "model.discriminator.width=16",
              "model.generator.z_dim=64"),
}
NO_CALLBACKS = ("+trainer.enable_progress_bar=false", "callbacks.samples=null",
                "callbacks.checkpoint=null", "callbacks.progress=null")
DEFAULT_CALLBACKS = ("callbacks.samples.every_kimg=1e6", "callbacks.checkpoint.every_kimg=1e6")
OVERHEAD = ("dcgan", 16, 16, ("model.generator.width=16", "model.discriminator.width=16"))
TARGET_RATIO = 0.95  # ganlab / plain images per second (issue 8)
OVERHEAD_TARGET = 0.90  # the same at the overhead-bound case (issue 13)


@dataclass(frozen=True)
class Case:
    """One benchmark configuration.

    resolution: data.resolution (PGGAN: the final side); batch: images per iteration (None:
    data.batch_size; PGGAN: the schedule's per-resolution batch); phase (PGGAN only): (side,
    fading) measured; overrides: extra Hydra overrides; callbacks: the ganlab path keeps a default
    run's callbacks (kimg progress bar on stderr, throughput, stop; sample grids and checkpoints
    with their per-step hooks but an interval never reached while timing) and logging."""

    model: str
    resolution: int
    batch: int | None = None
    device: str = "cpu"
    precision: str = "32"
    compile: bool = False
    phase: tuple[int, bool] | None = None
    overrides: tuple[str, ...] = ()
    callbacks: bool = False


@dataclass(frozen=True)
class Timing:
    """warmup: untimed iterations per path and round; steps: iterations per window (None: the
    logging interval); windows: timed windows per path and round; rounds: ganlab / plain
    alternations."""

    warmup: int = 3
    steps: int | None = None
    windows: int = 1
    rounds: int = 4


@dataclass
class PathResult:
    """Throughput of one path: images/s per timed window, peak memory, host syncs per step."""

    img_per_s: list[float] = field(default_factory=list)
    img_per_cpu_s: list[float] = field(default_factory=list)  # per second of process CPU time
    peak_memory_mb: float = 0.0
    host_syncs_per_step: int | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.img_per_s) if self.img_per_s else float("nan")

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.img_per_cpu_s) if self.img_per_cpu_s else float("nan")


# ----------------------------------------------------------------------------- config
def compose_config(case: Case, output_dir: Path, num_images: int) -> DictConfig:
    """conf/train.yaml composed for `case`, writing into `output_dir` (the in-memory shapes data,
    `num_images` training images, no metric, no periodic outputs)."""
    overrides = [
        f"model={case.model}",
        "data=shapes",
        f"data.resolution={case.resolution}",
        f"data.num_images={num_images}",
        "data.num_val_images=16",
        f"trainer.accelerator={'gpu' if case.device == 'cuda' else 'cpu'}",
        "trainer.devices=1",
        f"trainer.precision={'32-true' if case.precision == '32' else case.precision}",
        "trainer.enable_model_summary=false",
        "metric=none",
        "kimg=null",
        *(DEFAULT_CALLBACKS if case.callbacks else NO_CALLBACKS),
        "logger=csv",
        f"model.compile={str(case.compile).lower()}",
    ]
    if case.batch is not None:
        overrides.append(f"data.batch_size={case.batch}")
        if case.model == "pggan":
            overrides.append("model.schedule.batch_size_dict=null")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, *case.overrides], return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        del cfg.hydra
    return cfg


# ----------------------------------------------------------------------------- PGGAN phases
def phase_nimg(module: Any, side: int, fading: bool) -> int:
    """Images shown at the middle of PGGAN's stabilising at `side` (or its fade-in)."""
    schedule = module.schedule
    if side not in schedule.resolutions:
        raise ValueError(f"{side} px is not a stage of {schedule.resolutions}")
    index = schedule.resolutions.index(side)
    if fading:
        if index == 0:
            raise ValueError(f"{side} px is the start resolution: it does not fade in")
        _, fade_start, end = schedule.phases[index - 1]
        return (fade_start + end) // 2
    if index == len(schedule.phases):
        return schedule.growth_end_nimg
    start, fade_start, _ = schedule.phases[index]
    return (start + fade_start) // 2


def start_nimg(case: Case, module: Any) -> int:
    return 0 if case.phase is None else phase_nimg(module, *case.phase)


def stage_batch(cfg: DictConfig, case: Case, side: int) -> int:
    """Images per iteration at `side`: PGGAN's per-resolution batch, else data.batch_size."""
    sizes = cfg.model.get("schedule", {}).get("batch_size_dict") if case.model == "pggan" else None
    return int((sizes or {}).get(side, cfg.data.batch_size))


def render_train_set(case: Case, num_images: int) -> Any:
    """The shapes training images of a case (rendered once, shared by both paths; the
    datamodule's training seed for seed=0)."""
    from ganlab.data.base import ArrayImageDataset
    from ganlab.data.shapes import render_shapes

    return ArrayImageDataset(render_shapes(num_images, case.resolution, 0))


def pggan_phases(resolution: int, start: int = 4) -> list[tuple[int, bool]]:
    """(side, fading) of every PGGAN phase from `start` to `resolution`, in training order."""
    phases = [(start, False)]
    side = start * 2
    while side <= resolution:
        phases += [(side, True), (side, False)]
        side *= 2
    return phases


def cases_for(args: argparse.Namespace) -> list[Case]:
    """The cases the command line asks for (PGGAN: every phase, the headline being the fade-in
    of the final side)."""
    if args.overhead:  # DCGAN 16 px, width 16, batch 16: a step of ~10 ms on a CPU
        model, resolution, batch, overrides = OVERHEAD
        return [Case(model, args.resolution or resolution, args.batch or batch, args.device,
                     args.precision, args.compile, overrides=(*overrides, *args.overrides),
                     callbacks=True)]
    table = QUICK if args.quick else REFERENCE
    models = [args.model] if args.model else list(table)
    cases = []
    for model in models:
        resolution = args.resolution or table[model][0]
        batch = args.batch if args.batch is not None else table[model][1]
        overrides = []
        if args.device == "cpu":
            overrides += CPU_OVERRIDES.get(model, ())
        if args.quick:
            overrides += QUICK_OVERRIDES.get(model, ())
        base = Case(model, resolution, batch, args.device, args.precision, args.compile,
                    overrides=(*overrides, *args.overrides))
        if model != "pggan":
            cases.append(base)
        elif args.quick or args.no_stages:
            cases.append(replace(base, phase=(resolution, resolution > 4)))
        else:
            cases += [replace(base, phase=phase) for phase in pggan_phases(resolution)]
    return cases
