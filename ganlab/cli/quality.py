"""The quality benchmark: every model preset trained on shapes at 32 px on the CPU, scored offline.

    python -m ganlab.quality [--only dcgan,sagan] [--kimg K] [--seeds 0,1] [--num-fake 2000]
        [--rows "NAME OVERRIDE ..." | FILE.yaml ...] [--out DIR] [--workdir DIR]
        [--jobs N] [--threads N] [--curve-kimg K] [OVERRIDE ...]

A row is a training run with the row's Hydra overrides, once per seed: metric=none while
training (no evaluation cost), last.ckpt at the end, then the shapes metric (FD in the shapes
features, precision, recall, density, coverage; `--num-fake` fakes against the val split) of the
raw G and of the EMA G, in-process. With `--curve-kimg K` a snapshot is kept every K kimg and
scored the same way afterwards: the learning curve, kept per seed in quality.json and drawn in
curves.png. A row may carry its own length (`kimg=K`) and seeds (`seeds=0,1`, the runner's item,
not Hydra's). Next to the rows: the real floor (training images vs val) and two broken baselines
(uniform noise; a one-kind collapse: discs only). Writes QUALITY.md (mean and each seed, the
command, machine, date, wall time per row), quality.json and curves.png into `--out`.

`--jobs N` runs N (row, seed) runs side by side in worker processes of `--threads` (default 1)
torch threads each. An interrupted table resumes: a run whose last.ckpt holds its length is
scored, not retrained; a shorter one is resumed from it; scored snapshots are kept in curve.json.
The default table is `preset_rows`: each model preset at the CPU widths below.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import Tensor, nn

from ganlab import config_dir
from ganlab.data.labels import images_of
from ganlab.data.transforms import to_float, to_uint8
from ganlab.logs import get_logger
from ganlab.metrics.evaluator import FIDEvaluator
from ganlab.metrics.leak import leak_scores
from ganlab.training import scoring
from ganlab.training.checkpoints import CHECKPOINT_KEY, load_checkpoint, load_generator
from ganlab.utils import ConfigError

log = get_logger(__name__)

CONF_DIR = config_dir()
KIMG = 20.0  # training length of a row without its own kimg= item, kimg
SEEDS = (0,)  # seeds of a row without its own seeds= item
CURVE_KIMG = 10.0  # interval of the learning-curve snapshots of the default table, kimg
# the default table's lengths, kimg: each preset until its curve flattens on this budget
CONVERGED_KIMG = {"dcgan_small": 150, "dcgan": 150, "sagan": 150, "sagan_thesis": 150,
                  "pggan": 100, "pggan_thesis": 100}
NUM_FAKE = 2000  # fakes per score (and reals, capped at the val split's 1000 images)
SIDE = 32  # px: the shapes metric's side
LEAK_NUM, LEAK_SEED = 1000, 12345  # fakes / reals per leak check (THRESHOLDS assume >= 1000), seed
# every run: shapes at 32 px, no evaluation while training, one checkpoint and grid at the end
BASE = [
    "data=shapes",
    f"data.resolution={SIDE}",
    "data.batch_size=32",  # the tables' batch (shapes' default until the first-run change)
    "metric=none",
    "trainer=cpu",
    "logger=csv",
    "callbacks.progress=null",
    "trainer.enable_model_summary=false",
]
# the same reference for every row and seed: val images of data seed 0 (the training seeds vary)
REFERENCE = {"seed": 0}

# widths chosen for a CPU budget: DCGAN 32 channels at 16 px (preset: 64), SAGAN 16 at 32 px
# (preset: 32; attention where the preset has it), PGGAN a cap of 64 channels per side (preset:
# 512) at batch 32 on every side (preset: the official 128 up to 16 px, which leaves a short run
# few steps per stage)
DCGAN = ["model.generator.width=32", "model.discriminator.width=32"]
SAGAN = ["model.generator.width=16", "model.discriminator.width=16"]
PGGAN = ["model.generator.width=64", "model.discriminator.width=64",
         "model.schedule.batch_size_dict=null"]


def pggan_schedule(kimg: float) -> list[str]:
    """4 -> 32 px within the run: stabilise and fade kimg/8 each, so 32 px is fully in at 3/4
    of the run and trains alone for the last quarter."""
    phase = round(kimg / 8, 4)
    return [f"model.schedule.stabilize_kimg={phase}", f"model.schedule.fade_kimg={phase}"]


def preset_rows(kimg: float | None = None) -> dict[str, list[str]]:
    """The default table: each model preset with the budget widths (name -> overrides), each
    at its CONVERGED_KIMG length (or all at `kimg`); DCGAN and SAGAN with two seeds (their
    ordering is a question of the table), the others with one."""
    length = {name: kimg or default for name, default in CONVERGED_KIMG.items()}
    rows = {
        "dcgan_small": ["model=dcgan_small", "data.batch_size=16"],  # the first run's settings
        "dcgan": ["model=dcgan", *DCGAN, "seeds=0,1"],
        "sagan": ["model=sagan", *SAGAN, "seeds=0,1"],
        "sagan_thesis": ["model=sagan_thesis", *SAGAN],
        "pggan": ["model=pggan", *PGGAN, *pggan_schedule(length["pggan"])],
        "pggan_thesis": ["model=pggan_thesis", *PGGAN, *pggan_schedule(length["pggan_thesis"])],
    }
    return {name: [*overrides, f"kimg={length[name]}"] for name, overrides in rows.items()}


# ----------------------------------------------------------------------------- configs
def compose_config(name: str, overrides: Sequence[str], output_dir: Path) -> DictConfig:
    """conf/<name>.yaml with `overrides`, writing to `output_dir` (as the command line would)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        del cfg.hydra
    GlobalHydra.instance().clear()
    return cfg


def shapes_evaluator(num_fake: int, workdir: Path, metric: str = "shapes") -> FIDEvaluator:
    """The metric of conf/metric/<metric>.yaml for offline scoring: `num_fake` fakes against at
    most `num_fake` val images (real statistics cached in memory)."""
    overrides = [f"metric={metric}", f"metric.num_fake={num_fake}", f"metric.num_real={num_fake}"]
    cfg = compose_config("eval", overrides, workdir / "eval_logs")
    with open_dict(cfg):
        cfg.metric.cache_dir = None  # the reference is small: recomputed once per process
        if "data_target" in cfg.metric:
            cfg.metric.data_target = None  # checked per checkpoint by ganlab.evaluate
    return scoring.build_evaluator(cfg.metric)


# ----------------------------------------------------------------------------- one row
def train_run(
    overrides: Sequence[str], seed: int, kimg: float, run_dir: Path,
    curve_kimg: float | None = None,
) -> float:
    """Train one run (metric=none, last.ckpt at the end and every `curve_kimg`, with a snapshot
    there for the learning curve) into run_dir, resuming its last.ckpt if an earlier table was
    interrupted; returns its wall time, s."""
    from ganlab.training.fit import train  # heavy import, only when training

    every = f"callbacks.checkpoint.every_kimg={curve_kimg or kimg}"
    snapshots = f"callbacks.checkpoint.snapshot_kimg={curve_kimg}" if curve_kimg else None
    grids = f"callbacks.samples.every_kimg={kimg}"
    last = run_dir / "checkpoints" / "last.ckpt"
    resume = f"ckpt_path={last.resolve()}" if finished_nimg(run_dir) > 0 else None
    extra = [o for o in (snapshots, resume) if o]
    cfg = compose_config(
        "train", [*BASE, every, grids, *overrides, f"seed={seed}", f"kimg={kimg}", *extra],
        run_dir,
    )
    start = time.perf_counter()
    train(cfg)
    return time.perf_counter() - start


def score_run(
    evaluator: FIDEvaluator, checkpoint: Path, leak: bool = True
) -> tuple[dict[str, float], ...]:
    """The metric's values for the raw and the EMA generator of `checkpoint`, both against one
    reference datamodule (the val split of REFERENCE), and with `leak` for the EMA generator also
    the augmentation leak check (`leak_*`: its fakes vs the un-augmented val reals,
    `ganlab.metrics.leak`). Returns (raw values, EMA values)."""
    scores, datamodule = [], None
    for ema in (False, True):
        generator, config = load_generator(checkpoint, ema=ema)
        if datamodule is None:
            data = scoring.data_config(config, REFERENCE)
            datamodule = scoring.reference_data(data, "val")
        values = scoring.score(evaluator, generator, config, data, datamodule, "val", "cpu")
        values = {k: float(v) for k, v in values.items()}
        if ema and leak:
            values |= leak_columns(generator, datamodule.val_set)
        scores.append(values)
    return tuple(scores)


def score_curve(evaluator: FIDEvaluator, run_dir: Path) -> list[dict[str, Any]]:
    """The learning curve of a run: raw and EMA scores of every snapshot
    (checkpoints/kimgNNNNNN.ckpt), [{'kimg', 'g', 'ema'}] in kimg order. Scores are kept in
    run_dir/curve.json, so a rerun (an interrupted table) scores only new snapshots."""
    cache_path = run_dir / "curve.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    for snapshot in sorted((run_dir / "checkpoints").glob("kimg*.ckpt")):
        if snapshot.name not in cache:
            g, ema = score_run(evaluator, snapshot, leak=False)
            kimg = load_checkpoint(snapshot)[CHECKPOINT_KEY]["nimg"] / 1000
            cache[snapshot.name] = {"kimg": kimg, "g": g, "ema": ema}
            cache_path.write_text(json.dumps(cache, indent=1) + "\n")
    return sorted(cache.values(), key=lambda point: point["kimg"])


@torch.no_grad()
def leak_columns(generator: nn.Module, reals: Any, num: int = LEAK_NUM) -> dict[str, float]:
    """`leak_scores` of `num` fakes of `generator` (fixed seed) against up to `num` reals of the
    dataset `reals` (uint8 [3, R, R] items), as {'leak_<score>': value}."""
    rng = torch.Generator().manual_seed(LEAK_SEED)
    z = torch.randn(num, generator.z_dim, generator=rng)
    classes = getattr(generator, "num_classes", 0)  # conditional: uniform classes
    labels = F.one_hot(torch.randint(max(classes, 1), (num,), generator=rng), max(classes, 1))
    draw = generator if not classes else lambda z, y: generator(z, y.float())
    args = [(chunk,) if not classes else (chunk, y)
            for chunk, y in zip(z.split(256), labels.split(256))]
    fakes = torch.cat([to_uint8(draw(*a)) for a in args])
    real = torch.stack([images_of(reals[i]) for i in range(min(num, len(reals)))])
    return {f"leak_{k}": v for k, v in leak_scores(fakes, real).items()}


def finished_nimg(run_dir: Path) -> int:
    """Images shown in `run_dir`'s checkpoints/last.ckpt (0 if there is none)."""
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    if not checkpoint.is_file():
        return 0
    return int(load_checkpoint(checkpoint)[CHECKPOINT_KEY]["nimg"])  # memory-mapped: cheap


def run_seed(
    evaluator: FIDEvaluator,
    name: str,
    overrides: Sequence[str],
    seed: int,
    kimg: float,
    run_dir: Path,
    curve_kimg: float | None = None,
) -> dict[str, Any]:
    """Train and score one seed of a row (with `curve_kimg`, also its learning curve); a run
    that fails is recorded with NaN scores. A run whose last.ckpt already holds `kimg` (an
    earlier, interrupted table) is scored, not retrained; one that holds less is resumed."""
    try:
        done = finished_nimg(run_dir) >= int(kimg * 1000)
        train_s = math.nan if done else train_run(overrides, seed, kimg, run_dir, curve_kimg)
    except Exception as error:  # noqa: BLE001 - one diverged run must not end the table
        log.exception("quality: %s seed %d failed", name, seed)
        nan = dict.fromkeys(score_columns(evaluator_columns(evaluator)), math.nan)
        return {"seed": seed, "error": f"{type(error).__name__}: {error}", "g": nan, "ema": nan,
                "curve": []}
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    g, ema = score_run(evaluator, checkpoint)
    curve = score_curve(evaluator, run_dir) if curve_kimg else []
    log.info("quality: %s seed %d: G %s, EMA %s", name, seed, g, ema)
    return {"seed": seed, "train_s": train_s, "g": g, "ema": ema, "run_dir": str(run_dir),
            "curve": curve}


def evaluator_columns(evaluator: FIDEvaluator) -> dict[str, float]:
    """The value names the evaluator reports (for NaN rows)."""
    names = [getattr(evaluator, "name", "fid")]
    if getattr(evaluator.metrics, "prdc", None) is not None:
        names += ["precision", "recall", "density", "coverage"]
    return dict.fromkeys(names, math.nan)


def mean_of(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per-key means over the runs (keys every run has: a failed run has no leak columns)."""
    keys = set.intersection(*(set(r) for r in runs))
    return {k: float(np.mean([r[k] for r in runs])) for k in runs[0] if k in keys}


def row_seeds(overrides: Sequence[str], default: Sequence[int]) -> tuple[list[str], list[int]]:
    """A row's Hydra overrides and seeds: a `seeds=0,1` item in a row is the runner's (the
    row's own seeds instead of `--seeds`), not Hydra's."""
    own = [o.split("=", 1)[1] for o in overrides if o.startswith("seeds=")]
    rest = [o for o in overrides if not o.startswith("seeds=")]
    try:
        return rest, ([int(v) for v in own[-1].split(",")] if own else list(default))
    except ValueError:
        raise ConfigError(f"row item 'seeds={own[-1]}': expected seeds like 0,1") from None


def row_kimg(overrides: Sequence[str], default: float) -> float:
    """A row's training length, kimg: its own last `kimg=K` override, else `default`."""
    own = [o.split("=", 1)[1] for o in overrides if o.startswith("kimg=")]
    try:
        return float(own[-1]) if own else default
    except ValueError:
        raise ConfigError(f"row override {own[-1]!r}: kimg must be a number") from None


def run_row(
    name: str,
    overrides: Sequence[str],
    seeds: Sequence[int] = SEEDS,
    kimg: float = KIMG,
    *,
    evaluator: FIDEvaluator | None = None,
    workdir: Path = Path("outputs/quality"),
    num_fake: int = NUM_FAKE,
    curve_kimg: float | None = None,
) -> dict[str, Any]:
    """Train `overrides` once per seed for `kimg`, score the raw and EMA G of each run (and with
    `curve_kimg` every snapshot: the learning curve), in this process.

    Returns {'name', 'overrides', 'kimg', 'seeds', 'runs': [{'seed', 'train_s', 'g': values,
    'ema': values, 'curve': [{'kimg', 'g', 'ema'}], 'wall_s'}], 'g': mean values, 'ema': mean
    values, 'wall_s'}."""
    evaluator = evaluator or shapes_evaluator(num_fake, workdir)
    overrides, seeds = row_seeds(overrides, seeds)
    kimg = row_kimg(overrides, kimg)
    runs = [timed_seed(evaluator, name, overrides, seed, kimg, workdir, curve_kimg)
            for seed in seeds]
    return assemble_row(name, overrides, seeds, kimg, runs)


def timed_seed(
    evaluator: FIDEvaluator, name: str, overrides: Sequence[str], seed: int, kimg: float,
    workdir: Path, curve_kimg: float | None,
) -> dict[str, Any]:
    """`run_seed` into workdir/name/seedS, with its wall time (training and scoring), s."""
    start = time.perf_counter()
    run = run_seed(evaluator, name, overrides, seed, kimg, workdir / name / f"seed{seed}",
                   curve_kimg)
    return run | {"wall_s": time.perf_counter() - start}


def assemble_row(
    name: str, overrides: Sequence[str], seeds: Sequence[int], kimg: float,
    runs: list[dict[str, Any]],
) -> dict[str, Any]:
    """One table row from its seeds' runs (means over seeds; wall time summed over seeds)."""
    return {
        "name": name,
        "overrides": list(overrides),
        "kimg": kimg,
        "seeds": list(seeds),
        "runs": runs,
        "g": mean_of([r["g"] for r in runs]),
        "ema": mean_of([r["ema"] for r in runs]),
        "wall_s": sum(r.get("wall_s", 0.0) for r in runs),
    }


_WORKER_EVALUATOR: FIDEvaluator | None = None  # one per worker process (real statistics cached)


def _worker_seed(task: dict[str, Any]) -> dict[str, Any]:
    """A `--jobs` worker: one seed of one row on `threads` torch threads."""
    global _WORKER_EVALUATOR
    torch.set_num_threads(task.pop("threads"))
    num_fake = task.pop("num_fake")
    if _WORKER_EVALUATOR is None:
        _WORKER_EVALUATOR = shapes_evaluator(num_fake, task["workdir"])
    return timed_seed(_WORKER_EVALUATOR, **task)


def run_table(
    rows: dict[str, list[str]], seeds: Sequence[int], kimg: float, *, jobs: int = 1,
    threads: int = 1, evaluator: FIDEvaluator | None = None,
    workdir: Path = Path("outputs/quality"), num_fake: int = NUM_FAKE,
    curve_kimg: float | None = None,
) -> list[dict[str, Any]]:
    """Every (row, seed) run of a table: in this process with jobs=1, else side by side in
    `jobs` worker processes of `threads` torch threads each. Returns the rows in order."""
    if jobs <= 1:
        evaluator = evaluator or shapes_evaluator(num_fake, workdir)
        return [run_row(name, overrides, seeds, kimg, evaluator=evaluator, workdir=workdir,
                        num_fake=num_fake, curve_kimg=curve_kimg)
                for name, overrides in rows.items()]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    rows = {name: row_seeds(overrides, seeds) for name, overrides in rows.items()}
    tasks = {(name, seed): {"name": name, "overrides": overrides, "seed": seed,
                            "kimg": row_kimg(overrides, kimg),
                            "workdir": workdir, "curve_kimg": curve_kimg, "threads": threads,
                            "num_fake": num_fake}
             for name, (overrides, own_seeds) in rows.items() for seed in own_seeds}
    context = multiprocessing.get_context("spawn")  # no forked torch / Lightning state
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = {key: pool.submit(_worker_seed, task) for key, task in tasks.items()}
        runs = {key: future.result() for key, future in futures.items()}
    return [assemble_row(name, overrides, own_seeds, row_kimg(overrides, kimg),
                         [runs[name, s] for s in own_seeds])
            for name, (overrides, own_seeds) in rows.items()]


# ----------------------------------------------------------------------------- baselines
class FixedImages(nn.Module):
    """A stand-in generator handing out fixed images in order (cycling): z only sets how many.
    images: [N, 3, R, R] in [-1, 1]."""

    def __init__(self, images: Tensor) -> None:
        super().__init__()
        self.register_buffer("images", images)
        self.anchor = nn.Parameter(torch.zeros(()))  # the evaluator reads a parameter's dtype
        self.z_dim, self.resolution, self.position = 1, images.shape[-1], 0

    def forward(self, z: Tensor) -> Tensor:
        index = (self.position + torch.arange(len(z))) % len(self.images)
        self.position += len(z)
        return self.images[index.to(self.images.device)]


def one_kind_images(num: int, seed: int, kind: int = 0) -> np.ndarray:
    """uint8 [num, 3, SIDE, SIDE] shapes images whose every shape is of one kind (0: discs)."""
    from ganlab.data.shapes import ABSENT, render_shapes

    found: list[np.ndarray] = []
    while sum(len(f) for f in found) < num:
        images, labels = render_shapes(4 * num, SIDE, seed, return_labels=True)
        kinds = labels["kind"]
        keep = (kinds[:, 0] == kind) & ((kinds[:, 1] == kind) | (kinds[:, 1] == ABSENT))
        found.append(images[keep])
        seed += 1000
    return np.concatenate(found)[:num]


def baseline_images(num: int) -> dict[str, np.ndarray]:
    """uint8 [num, 3, SIDE, SIDE] sets: training images (real floor), uniform noise, one kind."""
    from ganlab.data.shapes import render_shapes

    noise = np.random.default_rng(0).integers(0, 256, (num, 3, SIDE, SIDE), dtype=np.uint8)
    return {
        "real (train split)": render_shapes(num, SIDE, seed=2 * REFERENCE["seed"]),
        "uniform noise": noise,
        "one kind (discs only)": one_kind_images(num, seed=12345),
    }


def score_baselines(evaluator: FIDEvaluator, num: int) -> list[dict[str, Any]]:
    """One row per baseline set, scored like a generator against the val split."""
    shapes = OmegaConf.load(CONF_DIR / "data" / "shapes.yaml")  # data=shapes of BASE
    shapes.pop("defaults", None)  # its defaults list (the metric it picks) is not data
    data = scoring.data_config({"data": shapes}, {"resolution": SIDE, **REFERENCE})
    rows = []
    for name, images in baseline_images(num).items():
        generator = FixedImages(to_float(torch.from_numpy(images)))
        datamodule = scoring.reference_data(data, "val")
        values = scoring.score(evaluator, generator, {"data": data}, data, datamodule, "val", "cpu")
        values = {k: float(v) for k, v in values.items()}
        generator.position = 0
        values |= leak_columns(generator, datamodule.val_set)  # the real set: the leak floor
        rows.append({"name": name, "values": values})
    return rows


# ----------------------------------------------------------------------------- the report
def machine() -> str:
    """CPU model (lscpu) and core count."""
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(
            line.split(":", 1)[1].strip()
            for line in out.splitlines()
            if line.startswith("Model name")
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    threads = torch.get_num_threads()
    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__} ({threads} threads)"


def score_columns(values: dict[str, float]) -> list[str]:
    """The metric columns present: the distance first, then precision ... coverage."""
    order = ["fd_shapes", "fid", "precision", "recall", "density", "coverage",
             "cond_acc", "real_acc", "fd_intra"]  # the last three: conditional runs only
    return [c for c in order if c in values]


def _fmt(value: float) -> str:
    return (
        "nan"
        if not math.isfinite(value)
        else f"{value:.3g}"
        if abs(value) < 100
        else f"{value:.0f}"
    )


def leak_cell(row: dict[str, Any]) -> str:
    """The EMA G's leak check per seed: channel / hue TV distances, '(leak)' past a threshold."""
    cells = []
    for run in row["runs"]:
        ema = run["ema"]
        if "leak_channel_tv" not in ema or not math.isfinite(ema["leak_channel_tv"]):
            cells.append("-")
            continue
        flag = " leak" if ema.get("leak_leak", 0.0) > 0 else ""
        cells.append(f"{ema['leak_channel_tv']:.3f}/{ema['leak_hue_tv']:.3f}{flag}")
    return ", ".join(cells)


def row_lines(row: dict[str, Any], columns: list[str]) -> list[str]:
    """Markdown lines of one trained row: G and EMA, each as mean (seed values)."""
    lines = []
    for which, label in (("g", "G"), ("ema", "EMA G")):
        cells = []
        for c in columns:
            if c not in row[which]:  # e.g. cond_acc of an unconditional row
                cells.append("")
                continue
            seeds = ", ".join(_fmt(r[which][c]) for r in row["runs"])
            cells.append(f"{_fmt(row[which][c])} ({seeds})" if len(row["runs"]) > 1 else seeds)
        minutes = f"{row['wall_s'] / 60:.1f}"
        leak = leak_cell(row) if which == "ema" else ""
        lines.append(
            f"| {row['name']} | {row['kimg']:g} | {label} | " + " | ".join(cells)
            + f" | {leak} | {minutes} |"
        )
    return lines


def write_report(
    rows: list[dict[str, Any]],
    baselines: list[dict[str, Any]],
    out_dir: Path,
    meta: dict[str, Any],
) -> tuple[Path, Path]:
    """Write out_dir/QUALITY.md and out_dir/quality.json; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sample = {k: 0 for row in rows for k in row["g"]} if rows else baselines[0]["values"]
    columns = score_columns(sample)  # every row's columns (conditional rows add cond_acc ...)
    head = [
        "| row | kimg | generator | " + " | ".join(columns) + " | leak ch/hue TV | wall min |",
        "|---|---|---|" + "---|" * len(columns) + "---|---|",
    ]
    body = [line for row in rows for line in row_lines(row, columns)]
    body += [
        f"| {b['name']} | | baseline | " + " | ".join(
            _fmt(b["values"][c]) if c in b["values"] else "" for c in columns)
        + f" | {b['values']['leak_channel_tv']:.3f}/{b['values']['leak_hue_tv']:.3f} | |"
        for b in baselines
    ]
    overrides = "\n".join(f"- `{r['name']}`: `{' '.join(r['overrides'])}`" for r in rows)
    text = QUALITY_MD.format(table="\n".join(head + body), overrides=overrides or "-", **meta)
    md, js = out_dir / "QUALITY.md", out_dir / "quality.json"
    png = plot_curves(rows, baselines, out_dir / "curves.png")
    if png is not None:
        text += f"\nLearning curves (every seed; EMA G solid, G dashed): ![curves]({png.name})\n"
    md.write_text(text)
    js.write_text(json.dumps({**meta, "rows": rows, "baselines": baselines}, indent=2) + "\n")
    return md, js


FLOOR, COLLAPSE = "real (train split)", "one kind (discs only)"  # baseline lines on the plot


def plot_curves(
    rows: list[dict[str, Any]], baselines: list[dict[str, Any]], path: Path,
    metric: str = "fd_shapes",
) -> Path | None:
    """The learning curves of a table as a PNG: `metric` against kimg (log axis), one colour per
    row, EMA G solid and raw G dashed (every seed; seeds after the first fainter), the real
    floor and the discs-only collapse as horizontal lines. None if no row has a curve."""
    if not any(run.get("curve") for row in rows for run in row["runs"]):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    colours = plt.get_cmap("tab10")
    for index, row in enumerate(rows):
        for seed_index, run in enumerate(run for run in row["runs"] if run.get("curve")):
            kimg = [point["kimg"] for point in run["curve"]]
            alpha = 1.0 if seed_index == 0 else 0.45
            for which, style in (("ema", "-"), ("g", "--")):
                label = f"{row['name']} ({'EMA G' if which == 'ema' else 'G'})"
                ax.plot(kimg, [point[which].get(metric, math.nan) for point in run["curve"]],
                        style, color=colours(index % 10), alpha=alpha, marker=".",
                        label=label if seed_index == 0 else None)
    for baseline, style in ((FLOOR, ":"), (COLLAPSE, "-.")):
        value = next((b["values"].get(metric) for b in baselines if b["name"] == baseline), None)
        if value is not None:
            ax.axhline(value, color="black", linestyle=style, linewidth=1, label=baseline)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("kimg (real images shown, thousands)")
    ax.set_ylabel(f"{metric} (lower is better)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


QUALITY_MD = """# Quality on shapes (offline): model presets, 32 px, CPU

Written by `{command}` on {date}; machine: {machine}; total wall time {total_min:.1f} min.

Each row trains on the embedded `shapes` data at 32 px for its own length (the `kimg` column)
once per seed, with `metric=none` while training, then scores the raw generator (G) and the EMA
generator (EMA G) with the shapes metric (`metric=shapes`: Frechet distance in the shapes
features, precision and recall (k = 3), density and coverage (k = 5)) from {num_fake} fakes
against the validation split (up to {num_fake} images of data seed 0, the same for every row).
Cells: mean over the seeds (each seed's value). Lower FD is better; precision / recall /
coverage are in [0, 1], higher is better (density can exceed 1). The baselines are image sets
scored the same way: the real floor (training images vs val), uniform noise, and a one-kind
collapse (images with discs only). Wall time: training + scoring of all seeds of a row, each
run on one thread (`--jobs` of them side by side).

{table}

Rows (overrides on top of `{base}`):

{overrides}

Reproduce: `make quality` (or `python -m ganlab.quality`); a subset: `python -m ganlab.quality
--only dcgan --kimg 2`; other rows: `--rows "NAME OVERRIDE ..."` or `--rows FILE.yaml`.
"""


# ----------------------------------------------------------------------------- command line
def parse_rows(items: Sequence[str]) -> dict[str, list[str]]:
    """`--rows` items: "NAME OVERRIDE ..." or a YAML file {name: [override, ...]}."""
    rows: dict[str, list[str]] = {}
    for item in items:
        if item.endswith((".yaml", ".yml")):
            loaded = yaml.safe_load(Path(item).read_text()) or {}
            if not isinstance(loaded, dict):
                raise ConfigError(f"--rows {item}: expected a mapping name -> [override, ...]")
            rows |= {str(k): [str(o) for o in v] for k, v in loaded.items()}
        else:
            name, *overrides = shlex.split(item)
            rows[name] = overrides
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ganlab.quality", description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides added to every row")
    parser.add_argument("--only", default=None, help="comma-separated row names (default: all)")
    parser.add_argument("--kimg", type=float, default=None,
                        help=f"training length of every row, kimg (default: a row's own kimg=, "
                        f"else {KIMG})")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="e.g. 0,1")
    parser.add_argument("--num-fake", type=int, default=NUM_FAKE, help="fakes per score")
    parser.add_argument(
        "--rows",
        nargs="+",
        default=None,
        help='rows instead of the presets: "NAME OVERRIDE ..." or FILE.yaml',
    )
    parser.add_argument("--no-baselines", action="store_true", help="skip the baseline rows")
    parser.add_argument("--out", default="experiments", help="folder of QUALITY.md, quality.json")
    parser.add_argument("--workdir", default="outputs/quality", help="folder of the runs")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per run (default: all; with --jobs > 1: 1)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs side by side, each in its own process (default 1)")
    parser.add_argument("--curve-kimg", type=float, default=None,
                        help="score a snapshot every this many kimg: the learning curve (PNG; "
                        f"default: {CURVE_KIMG} for the default table, none with --rows)")
    return parser.parse_args(argv)


def select_rows(args: argparse.Namespace) -> dict[str, list[str]]:
    rows = parse_rows(args.rows) if args.rows else preset_rows(args.kimg)
    if args.kimg is not None:  # --kimg wins over the rows' own lengths
        rows = {name: [o for o in overrides if not o.startswith("kimg=")]
                for name, overrides in rows.items()}
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in rows]
        if unknown:
            raise ConfigError(f"--only {args.only}: no row named {unknown}; rows: {list(rows)}")
        rows = {n: rows[n] for n in wanted}
    return {name: [*overrides, *args.overrides] for name, overrides in rows.items()}


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        if args.jobs < 1:
            raise ConfigError(f"--jobs {args.jobs}: runs side by side must be >= 1")
        if args.curve_kimg is None and not args.rows:
            args.curve_kimg = CURVE_KIMG
        if args.curve_kimg is not None and not args.curve_kimg > 0:
            raise ConfigError(f"--curve-kimg {args.curve_kimg}: must be > 0 kimg (or left out)")
        rows_spec = select_rows(args)
        workdir = Path(args.workdir)
        evaluator = shapes_evaluator(args.num_fake, workdir)
    except (ConfigError, ValueError) as error:
        print(f"ganlab.quality: error: {error}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    baselines = [] if args.no_baselines else score_baselines(evaluator, args.num_fake)
    rows = run_table(rows_spec, seeds, args.kimg or KIMG, jobs=args.jobs, threads=args.threads or 1,
                     evaluator=evaluator, workdir=workdir, num_fake=args.num_fake,
                     curve_kimg=args.curve_kimg)
    meta = {
        "command": "python -m ganlab.quality " + " ".join(map(shlex.quote, argv or sys.argv[1:])),
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine(),
        "total_min": (time.perf_counter() - start) / 60,
        "kimg": args.kimg or "per row",
        "seeds": seeds,
        "num_fake": args.num_fake,
        "base": " ".join(BASE),
    }
    md, js = write_report(rows, baselines, Path(args.out), meta)
    print(md.read_text())
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
