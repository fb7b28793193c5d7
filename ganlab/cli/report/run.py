"""The Run model the report's views share: one run folder read once (its metrics CSV as
(kimg, value) series, its resolved config, checkpoints, sample grids and eval.json), and the one
list of panels every view draws (text table, PNG, HTML)."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml


@dataclass(frozen=True)
class Line:
    """One logged column drawn in a panel: CSV key, legend label, dashed or solid."""

    key: str
    label: str
    dashed: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    lines: tuple[Line, ...]


PANELS = (  # every view draws these, in this order (absent columns: "not logged")
    Panel("losses", (Line("train/d_loss", "D"), Line("train/g_loss", "G", dashed=True))),
    Panel("D outputs (logits)",
          (Line("train/d_real", "real"), Line("train/d_fake", "fake", dashed=True))),
    Panel("FID / shapes FD", (Line("val/fid", "val/fid"), Line("val/fd_shapes", "val/fd_shapes"))),
    Panel("precision / recall",
          (Line("val/precision", "precision"), Line("val/recall", "recall", dashed=True))),
)
DISTANCES = ("val/fid", "val/fd_shapes")  # metric=fid, metric=shapes: the first one a run logged
CHECKPOINTS = ("best.ckpt", "last.ckpt")  # in order of preference


class ReportError(ValueError):
    """Bad input to the report (no metrics found); the CLI prints it and exits 2."""


@dataclass
class Run:
    """One run folder: its logged columns as (kimg, value) series and what else it wrote."""

    label: str
    path: Path
    series: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        return self.series.get(key, (np.empty(0), np.empty(0)))

    @property
    def final_kimg(self) -> float:
        kimg, _ = self.get("train/kimg")
        return float(kimg.max()) if len(kimg) else math.nan

    @property
    def distance_key(self) -> str:
        """The Frechet distance this run logged (FID, else the shapes FD); 'val/fid' if none."""
        return next((key for key in DISTANCES if len(self.get(key)[1])), DISTANCES[0])

    def best(self, key: str, lowest: bool = True) -> tuple[float, float]:
        """(best value of `key`, its kimg): the lowest (or highest); NaNs if not logged."""
        kimg, values = self.get(key)
        if not len(values):
            return math.nan, math.nan
        i = int(np.argmin(values) if lowest else np.argmax(values))
        return float(values[i]), float(kimg[i])

    def best_distance(self) -> tuple[float, float]:
        """(best FID or shapes FD, its kimg); NaNs without either."""
        return self.best(self.distance_key)

    def stage_boundaries(self) -> list[tuple[float, str, bool]]:
        """[(kimg, label, is_fade_start)] from train/resolution and train/alpha (PGGAN)."""
        kimg, res = self.get("train/resolution")
        akimg, alpha = self.get("train/alpha")
        marks = [(float(k), f"{int(r)}px", True)
                 for k, r, prev in zip(kimg[1:], res[1:], res[:-1]) if r != prev]
        marks += [(float(k), "", False)
                  for k, a, prev in zip(akimg[1:], alpha[1:], alpha[:-1]) if a >= 1 > prev]
        return sorted(marks)

    @property
    def config_text(self) -> str | None:
        """The resolved config (.hydra/config.yaml) as written, None if absent."""
        path = self.path / ".hydra" / "config.yaml"
        return path.read_text() if path.is_file() else None

    @property
    def config(self) -> dict[str, Any]:
        """The resolved config as a dict ({} if absent or unreadable)."""
        try:
            return yaml.safe_load(self.config_text or "") or {}
        except yaml.YAMLError:
            return {}

    @property
    def checkpoint(self) -> Path | None:
        """checkpoints/best.ckpt, else last.ckpt, else None."""
        return next((p for name in CHECKPOINTS
                     if (p := self.path / "checkpoints" / name).is_file()), None)

    def sample_grids(self) -> list[Path]:
        """samples/fakes_{nimg}.png, in order of kimg."""
        return sorted((self.path / "samples").glob("fakes_*.png"))

    def sheets(self) -> list[Path]:
        """The other PNGs of samples/: PGGAN stage sheets, SAGAN attention maps, reals."""
        return sorted(p for p in (self.path / "samples").rglob("*.png")
                      if not p.name.startswith("fakes_"))

    def eval_files(self) -> list[Path]:
        """eval.json files written by ganlab-evaluate into this run."""
        return sorted(self.path.rglob("eval.json"))


def panel_lines(runs: list[Run], panel: Panel) -> list[tuple[int, Line, np.ndarray, np.ndarray]]:
    """[(run index, line, kimg, values)] of `panel` for every run that logged the line."""
    return [(i, line, *run.get(line.key)) for i, run in enumerate(runs) for line in panel.lines
            if len(run.get(line.key)[1])]


def read_metrics_csv(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """metrics.csv -> {column: (kimg, values)} sorted by kimg, one value per kimg. A row's kimg:
    train/kimg, else val/kimg (FID rows), else interpolated from the logging step. Where a
    column has two values at one kimg (a resumed run's CSV written before ganlab rewound it on
    resume), the later row wins: the resumed run's, as the rewind would have kept."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))

    def number(row: dict, key: str) -> float:
        value = row.get(key)
        return float(value) if value not in (None, "") else math.nan

    steps = np.array([number(r, "step") for r in rows])
    kimg = np.array([number(r, "train/kimg") for r in rows])
    kimg = np.where(np.isnan(kimg), [number(r, "val/kimg") for r in rows], kimg)  # FID rows
    known = ~np.isnan(kimg) & ~np.isnan(steps)
    if known.any() and (~known).any():
        order = np.argsort(steps[known], kind="stable")
        fill = np.interp(steps, steps[known][order], kimg[known][order])
        kimg = np.where(np.isnan(kimg), fill, kimg)
    series = {}
    for key in rows[0].keys() if rows else []:
        values = np.array([number(r, key) for r in rows])
        keep = ~np.isnan(values) & ~np.isnan(kimg)
        last = {round(float(k), 6): v for k, v in zip(kimg[keep], values[keep], strict=True)}
        x = np.array(sorted(last), dtype=float)
        series[key] = (x, np.array([last[k] for k in sorted(last)], dtype=float))
    return series


def find_runs(paths: list[str | Path]) -> list[Run]:
    """Every metrics.csv under the given folders (a sweep folder gives one run per job)."""
    runs = []
    for arg in paths:
        root = Path(arg)
        if not root.exists():
            raise ReportError(f"{str(root)!r} does not exist; pass run folders (outputs/train/...)")
        files = [root] if root.is_file() else sorted(root.rglob("metrics.csv"))
        if not files:
            raise ReportError(
                f"no metrics.csv under {str(root)!r}: the report reads the CSV logger's file; "
                "train with logger=csv (the default) or logger=many"
            )
        for file in files:
            run_dir = file.parent.parent if file.parent.name == "csv" else file.parent
            label = root.name if run_dir == root else f"{root.name}/{run_dir.relative_to(root)}"
            runs.append(Run(label, run_dir, read_metrics_csv(file)))
    return runs
