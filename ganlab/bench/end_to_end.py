"""The whole run, not only the step: `python -m ganlab.bench --end-to-end`.

A real `python -m ganlab.run` in a child process (default callbacks: progress bar, throughput,
sample grids and checkpoints every 10 kimg, the csv logger; data=folder on a generated folder of
PNG images, with its cache and flips; metric off) against the plain loop on the same images in
this process. Figures:
- startup_s: from launching the child (so Python start and imports included) to its first
  training step; import_s: `python -c "import ganlab.cli.train"` alone;
- steady-state images/s: images between the child's step marks over the second half of the run
  (sample grids and checkpoints that fall there included), against the plain loop's median window.
The plain loop trains on the child's own training images, read back from its cache (decoded and
resized as the datamodule did), so both paths see the same pixels.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl

from ganlab.bench.cases import Case, Timing, compose_config
from ganlab.bench.paths import run_plain

ROOT = Path(__file__).resolve().parents[2]


class StepClock(pl.Callback):
    """Writes (wall time since the epoch, images shown) at the first step and every `every`
    steps to `path` (JSON) when training ends: the child's side of the end-to-end bench."""

    def __init__(self, path: str, every: int = 10) -> None:
        self.path, self.every = Path(path), every
        self.marks: list[tuple[float, int]] = []
        self.steps = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.marks:
            self.marks.append((time.time(), pl_module.nimg))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps += 1
        if self.steps % self.every == 0:
            self.marks.append((time.time(), pl_module.nimg))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.marks.append((time.time(), pl_module.nimg))
        self.path.write_text(json.dumps(self.marks))


def write_folder(root: Path, num_images: int, resolution: int) -> None:
    """`num_images` shapes images as PNG files under `root` (at 2x `resolution`, so the folder
    datamodule resizes as it would real photos)."""
    from PIL import Image

    from ganlab.data.shapes import render_shapes

    images = render_shapes(num_images, resolution * 2, 0)  # uint8 [N, 3, 2R, 2R]
    root.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image.transpose(1, 2, 0)).save(root / f"{i:05d}.png")


def cached_train_images(cache_dir: Path) -> np.ndarray:
    """The child's training split as its datamodule cached it: uint8 [N, 3, R, R]."""
    (meta,) = sorted(cache_dir.glob("folder_train_*.json"))
    shape = tuple(json.loads(meta.read_text())["shape"])
    return np.array(np.memmap(meta.with_suffix(".u8"), dtype=np.uint8, mode="r", shape=shape))


def run_child(workdir: Path, folder: Path, resolution: int, batch: int, kimg: float,
              extra: list[str], name: str = "run") -> dict[str, Any]:
    """One `python -m ganlab.run` into workdir/name (the image cache shared in workdir/cache);
    returns its startup and steady-state images/s."""
    marks_path = workdir / f"{name}_marks.json"
    command = [
        sys.executable, "-m", "ganlab.run", "model=dcgan", "data=folder", f"data.root={folder}",
        f"data.resolution={resolution}", f"data.batch_size={batch}", "data.hflip=true",
        f"paths.cache_dir={workdir / 'cache'}", "metric=none", f"kimg={kimg}",
        f"hydra.run.dir={workdir / name}", "+callbacks.bench_clock._target_="
        "ganlab.bench.end_to_end.StepClock", f"+callbacks.bench_clock.path={marks_path}",
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]), "WANDB_MODE": "offline"}
    start = time.time()
    subprocess.run(command, check=True, env=env, cwd=workdir)
    total = time.time() - start
    marks = json.loads(marks_path.read_text())
    half = marks[len(marks) // 2:]
    (t0, n0), (t1, n1) = half[0], half[-1]
    return {"startup_s": round(marks[0][0] - start, 2), "total_s": round(total, 2),
            "steady_img_per_s": round((n1 - n0) / (t1 - t0), 2), "kimg": marks[-1][1] / 1000,
            "command": " ".join(command[1:])}


def import_seconds() -> float:
    """Seconds for a fresh interpreter to `import ganlab.cli.train` (Lightning, Hydra, torch)."""
    start = time.time()
    subprocess.run([sys.executable, "-c", "import ganlab.cli.train"], check=True, cwd=ROOT)
    return round(time.time() - start, 2)


def end_to_end(resolution: int = 32, batch: int = 64, kimg: float = 12.0,
               num_images: int = 1700, plain_windows: int = 5, rounds: int = 3,
               extra: list[str] | None = None) -> dict[str, Any]:
    """ganlab.run (child processes) against the plain loop at DCGAN-`resolution`, batch `batch`:
    `rounds` alternations of one whole child run and `plain_windows` plain windows; the figures
    are medians over rounds, `paired` the median of the per-round ratios. The first child also
    builds the image cache, so its startup is a first run's; `startup_s` is the median."""
    import torch

    children, plains = [], []
    with tempfile.TemporaryDirectory(prefix="ganlab-e2e-") as tmp:
        workdir = Path(tmp)
        write_folder(workdir / "images", num_images, resolution)
        case = Case("dcgan", resolution, batch, overrides=("data.hflip=true",))
        timing = Timing(warmup=3, steps=max(5, 2000 // batch), windows=plain_windows, rounds=1)
        for round_ in range(rounds):
            children.append(run_child(workdir, workdir / "images", resolution, batch, kimg,
                                      extra or [], name=f"run{round_}"))
            images = cached_train_images(workdir / "cache" / "data")
            cfg = compose_config(case, workdir / "plain", len(images))
            plains.append(run_plain(cfg, case, timing, torch.from_numpy(images)).median)
    steady = [child["steady_img_per_s"] for child in children]
    median = statistics.median
    return {"steady_img_per_s": round(median(steady), 2), "steady_per_round": steady,
            "plain_img_per_s": round(median(plains), 2),
            "plain_per_round": [round(x, 2) for x in plains],
            "ratio": round(median(steady) / median(plains), 3),
            "paired": round(median(c / p for c, p in zip(steady, plains, strict=True)), 3),
            "startup_s": median(child["startup_s"] for child in children),
            "first_startup_s": children[0]["startup_s"], "import_s": import_seconds(),
            "total_s": median(child["total_s"] for child in children),
            "kimg": children[0]["kimg"], "command": children[0]["command"], "rounds": rounds,
            "resolution": resolution, "batch": batch, "num_images": num_images}


def format_end_to_end(row: dict[str, Any]) -> str:
    return (f"end to end: DCGAN-{row['resolution']} batch {row['batch']}, {row['num_images']} "
            f"PNG images, {row['kimg']:.1f} kimg: ganlab.run {row['steady_img_per_s']:.1f} img/s "
            f"in steady state, plain loop {row['plain_img_per_s']:.1f} img/s (medians of "
            f"{row['rounds']} rounds), ratio {row['ratio']:.3f} (paired {row['paired']:.3f}); "
            f"startup (launch to first step) {row['startup_s']:.1f} s (first run, with the "
            f"cache build: {row['first_startup_s']:.1f} s), of "
            f"which `import ganlab.cli.train` {row['import_s']:.1f} s; "
            f"whole run {row['total_s']:.1f} s")
