"""The quality benchmark: every model preset trained on shapes at 32 px on the CPU, scored offline.

    python -m ganlab.quality [--only dcgan,sagan] [--kimg 12] [--seeds 0,1] [--num-fake 2000]
        [--rows "NAME OVERRIDE ..." | FILE.yaml ...] [--out experiments] [--workdir DIR]
        [--threads N] [OVERRIDE ...]

A row is `ganlab.run` with the row's Hydra overrides, once per seed: metric=none while training
(no evaluation cost), last.ckpt at the end, then the shapes metric (FD in the shapes features,
precision, recall, density, coverage; `--num-fake` fakes against the val split) of the raw G and
of the EMA G, in-process. Next to the rows: the real floor (training images vs val) and two
broken baselines (uniform noise; a one-kind collapse: discs only). Writes QUALITY.md (mean and
each seed, the commands, machine, date, wall time per row) and quality.json into `--out`.

Sizing (the default table, 5 presets x 2 seeds): each run is `--kimg` = 20 kimg at 32 px with
the widths below (DCGAN 32 channels, SAGAN 16 with attention at 16 px, PGGAN a cap of 64 channels
per side instead of 512). Measured on a 2-core AMD EPYC, one thread per run with other runs beside
it: about 1 min per DCGAN run, 1.5 min per SAGAN run and 4 min per PGGAN run including scoring,
so the table takes about half an hour of one core (experiments/QUALITY.md). 20 kimg ranks settings
at a small budget: DCGAN's samples are still blobs there. Later experiments reuse the runner:
`run_row(name, overrides, seeds, kimg)` and `write_report(...)`, or `--rows "NAME OVERRIDE ..."`.
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
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import Tensor, nn

from ganlab import config_dir
from ganlab.data.transforms import to_float, to_uint8
from ganlab.logs import get_logger
from ganlab.metrics.evaluator import FIDEvaluator
from ganlab.metrics.leak import leak_scores
from ganlab.training import scoring
from ganlab.training.checkpoints import CHECKPOINT_KEY, load_checkpoint, load_generator
from ganlab.utils import ConfigError

log = get_logger(__name__)

CONF_DIR = config_dir()
KIMG = 20.0  # default training length per run, kimg (the table: ~30 min of one core, see above)
SEEDS = (0, 1)
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

# widths chosen for the 2-core budget (see the module docstring): DCGAN 32 channels at 16 px
# (preset: 64), SAGAN 16 at 32 px (preset: 32), PGGAN a cap of 64 channels per side (preset: 512)
DCGAN = ["model.generator.width=32", "model.discriminator.width=32"]
SAGAN = [  # attention at 16 px in G and D (preset: 32): 32x32 attention costs ~5x the whole step
    "model.generator.width=16", "model.discriminator.width=16",
    "model.generator.attention=[16]", "model.discriminator.attention=[16]",
]
PGGAN = ["model.generator.width=64", "model.discriminator.width=64"]


def pggan_schedule(kimg: float) -> list[str]:
    """4 -> 32 px within the run: stabilise and fade kimg/8 each, so 32 px is fully in at 3/4
    of the run and trains alone for the last quarter."""
    phase = round(kimg / 8, 4)
    return [f"model.schedule.stabilize_kimg={phase}", f"model.schedule.fade_kimg={phase}"]


def preset_rows(kimg: float) -> dict[str, list[str]]:
    """The default table: each model preset with the budget widths (name -> overrides)."""
    return {
        "dcgan": ["model=dcgan", *DCGAN],
        "sagan": ["model=sagan", *SAGAN],
        "pggan": ["model=pggan", *PGGAN, *pggan_schedule(kimg)],
        "sagan_thesis": ["model=sagan_thesis", *SAGAN],
        "pggan_thesis": ["model=pggan_thesis", *PGGAN, *pggan_schedule(kimg)],
    }


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
def train_run(overrides: Sequence[str], seed: int, kimg: float, run_dir: Path) -> float:
    """Train one run (metric=none, last.ckpt at the end) into run_dir; returns its wall time, s."""
    from ganlab.training.fit import train  # heavy import, only when training

    every = f"callbacks.checkpoint.every_kimg={kimg}"
    grids = f"callbacks.samples.every_kimg={kimg}"
    cfg = compose_config(
        "train", [*BASE, every, grids, *overrides, f"seed={seed}", f"kimg={kimg}"], run_dir
    )
    start = time.perf_counter()
    train(cfg)
    return time.perf_counter() - start


def score_run(evaluator: FIDEvaluator, checkpoint: Path) -> tuple[dict[str, float], ...]:
    """The metric's values for the raw and the EMA generator of `checkpoint`, both against one
    reference datamodule (the val split of REFERENCE), and for the EMA generator also the
    augmentation leak check (`leak_*`: its fakes vs the un-augmented val reals,
    `ganlab.metrics.leak`). Returns (raw values, EMA values)."""
    scores, datamodule = [], None
    for ema in (False, True):
        generator, config = load_generator(checkpoint, ema=ema)
        if datamodule is None:
            data = scoring.data_config(config, REFERENCE)
            datamodule = scoring.reference_data(data, "val")
        values = scoring.score(evaluator, generator, config, data, datamodule, "val", "cpu")
        values = {k: float(v) for k, v in values.items()}
        if ema:
            values |= leak_columns(generator, datamodule.val_set)
        scores.append(values)
    return tuple(scores)


@torch.no_grad()
def leak_columns(generator: nn.Module, reals: Any, num: int = LEAK_NUM) -> dict[str, float]:
    """`leak_scores` of `num` fakes of `generator` (fixed seed) against up to `num` reals of the
    dataset `reals` (uint8 [3, R, R] items), as {'leak_<score>': value}."""
    z = torch.randn(num, generator.z_dim, generator=torch.Generator().manual_seed(LEAK_SEED))
    fakes = torch.cat([to_uint8(generator(chunk)) for chunk in z.split(256)])
    real = torch.stack([reals[i] for i in range(min(num, len(reals)))])
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
) -> dict[str, Any]:
    """Train and score one seed of a row; a run that fails is recorded with NaN scores. A run
    whose last.ckpt already holds `kimg` (an earlier, interrupted table) is scored, not retrained.
    """
    try:
        done = finished_nimg(run_dir) >= int(kimg * 1000)
        train_s = math.nan if done else train_run(overrides, seed, kimg, run_dir)
    except Exception as error:  # noqa: BLE001 - one diverged run must not end the table
        log.exception("quality: %s seed %d failed", name, seed)
        nan = dict.fromkeys(score_columns(evaluator_columns(evaluator)), math.nan)
        return {"seed": seed, "error": f"{type(error).__name__}: {error}", "g": nan, "ema": nan}
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    g, ema = score_run(evaluator, checkpoint)
    log.info("quality: %s seed %d: G %s, EMA %s", name, seed, g, ema)
    return {"seed": seed, "train_s": train_s, "g": g, "ema": ema, "run_dir": str(run_dir)}


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


def run_row(
    name: str,
    overrides: Sequence[str],
    seeds: Sequence[int] = SEEDS,
    kimg: float = KIMG,
    *,
    evaluator: FIDEvaluator | None = None,
    workdir: Path = Path("outputs/quality"),
    num_fake: int = NUM_FAKE,
) -> dict[str, Any]:
    """Train `overrides` once per seed for `kimg`, score the raw and EMA G of each run.

    Returns {'name', 'overrides', 'kimg', 'seeds', 'runs': [{'seed', 'train_s', 'g': values,
    'ema': values}], 'g': mean values, 'ema': mean values, 'wall_s'}."""
    evaluator = evaluator or shapes_evaluator(num_fake, workdir)
    start, runs = time.perf_counter(), []
    for seed in seeds:
        runs.append(
            run_seed(evaluator, name, overrides, seed, kimg, workdir / name / f"seed{seed}")
        )
    return {
        "name": name,
        "overrides": list(overrides),
        "kimg": kimg,
        "seeds": list(seeds),
        "runs": runs,
        "g": mean_of([r["g"] for r in runs]),
        "ema": mean_of([r["ema"] for r in runs]),
        "wall_s": time.perf_counter() - start,
    }


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
    order = ["fd_shapes", "fid", "precision", "recall", "density", "coverage"]
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
            seeds = ", ".join(_fmt(r[which][c]) for r in row["runs"])
            cells.append(f"{_fmt(row[which][c])} ({seeds})" if len(row["runs"]) > 1 else seeds)
        minutes = f"{row['wall_s'] / 60:.1f}"
        leak = leak_cell(row) if which == "ema" else ""
        lines.append(
            f"| {row['name']} | {label} | " + " | ".join(cells) + f" | {leak} | {minutes} |"
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
    sample = rows[0]["g"] if rows else baselines[0]["values"]
    columns = score_columns(sample)
    head = [
        "| row | generator | " + " | ".join(columns) + " | leak ch/hue TV | wall min |",
        "|---|---|" + "---|" * len(columns) + "---|---|",
    ]
    body = [line for row in rows for line in row_lines(row, columns)]
    body += [
        f"| {b['name']} | baseline | " + " | ".join(_fmt(b["values"][c]) for c in columns)
        + f" | {b['values']['leak_channel_tv']:.3f}/{b['values']['leak_hue_tv']:.3f} | |"
        for b in baselines
    ]
    overrides = "\n".join(f"- `{r['name']}`: `{' '.join(r['overrides'])}`" for r in rows)
    text = QUALITY_MD.format(table="\n".join(head + body), overrides=overrides or "-", **meta)
    md, js = out_dir / "QUALITY.md", out_dir / "quality.json"
    md.write_text(text)
    js.write_text(json.dumps({**meta, "rows": rows, "baselines": baselines}, indent=2) + "\n")
    return md, js


QUALITY_MD = """# Quality on shapes (offline): every model preset, 32 px, CPU

Written by `{command}` on {date}; machine: {machine}; total wall time {total_min:.1f} min.

Each row trains the preset on the embedded `shapes` data at 32 px for {kimg} kimg per seed
(seeds {seeds}), with `metric=none` while training and one checkpoint at the end, then scores the
raw generator (G) and the EMA generator (EMA G) with the shapes metric (`metric=shapes`: Frechet
distance in the shapes features, precision and recall (k = 3), density and coverage (k = 5))
from {num_fake} fakes against the validation split (up to {num_fake} images of data seed 0, the
same for every row). Cells: mean over the seeds (each seed's value). Lower FD is better; precision
/ recall / coverage are in [0, 1], higher is better (density can exceed 1). The baselines are
image sets scored the same way: the real floor (training images vs val), uniform noise, and a
one-kind collapse (images with discs only). Wall time: training + scoring of all seeds of a row.

{table}

Rows (overrides on top of `{base}`):

{overrides}

Sizing: DCGAN 32 channels at 16 px (preset 64), SAGAN 16 channels at 32 px (preset 32) with
self-attention at 16 px in G and D (preset 32 px: 32x32 attention costs several times the rest of
the step on a CPU), PGGAN at most 64 channels per side (preset 512), growing 4 -> 32 px with
stabilise = fade = kimg/8. This table ran {kimg} kimg per run.
Short runs: these figures rank settings at a small budget, not final quality.

Reproduce: `make quality` (or `python -m ganlab.quality`); a subset: `python -m ganlab.quality
--only dcgan --kimg 2 --seeds 0`; other rows: `--rows "NAME OVERRIDE ..."`.
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
    parser.add_argument("--kimg", type=float, default=KIMG, help="training length per run, kimg")
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
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    return parser.parse_args(argv)


def select_rows(args: argparse.Namespace) -> dict[str, list[str]]:
    rows = parse_rows(args.rows) if args.rows else preset_rows(args.kimg)
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
        rows_spec = select_rows(args)
        workdir = Path(args.workdir)
        evaluator = shapes_evaluator(args.num_fake, workdir)
    except (ConfigError, ValueError) as error:
        print(f"ganlab.quality: error: {error}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    baselines = [] if args.no_baselines else score_baselines(evaluator, args.num_fake)
    rows = [
        run_row(
            name,
            overrides,
            seeds,
            args.kimg,
            evaluator=evaluator,
            workdir=workdir,
            num_fake=args.num_fake,
        )
        for name, overrides in rows_spec.items()
    ]
    meta = {
        "command": "python -m ganlab.quality " + " ".join(map(shlex.quote, argv or sys.argv[1:])),
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine(),
        "total_min": (time.perf_counter() - start) / 60,
        "kimg": args.kimg,
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
