"""Training curves of one or more runs in one PNG (or one self-contained HTML page), without W&B.

    python -m ganlab.report RUN_DIR [RUN_DIR ...] [--out report.png] [--smooth 0.9]
    python -m ganlab.report RUN_OR_SWEEP_DIR --html [--out report.html] [--check]

Panels against kimg: D and G losses, D outputs on reals and fakes, FID (`val/fid`). PGGAN stage
boundaries are marked (solid line: a new resolution starts fading in; dotted: the fade ends).
Several runs (or a sweep folder, which expands to its jobs) are overlaid, one colour per run.
Prints a table of each run's best FID (with its kimg) and final kimg. Reads the CSV logger's
`metrics.csv` (logger=csv, the default, or logger=many).

--html writes one self-contained page instead (ganlab/report_html.py): curves (losses, D outputs,
FID, precision / recall), the sample grids over kimg behind a slider, the other PNGs of samples/
(PGGAN stage sheets, SAGAN attention maps, reals), eval.json, the resolved config and, for a sweep,
one row per job. --check opens it in headless Chromium and fails unless it rendered.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PANELS = (  # title, [(column, line style, label)]
    ("losses", [("train/d_loss", "-", "D"), ("train/g_loss", "--", "G")]),
    ("D outputs (logits)", [("train/d_real", "-", "real"), ("train/d_fake", "--", "fake")]),
    ("FID", [("val/fid", "o-", "val/fid")]),
)


class ReportError(ValueError):
    """Bad input to the report (no metrics found); the CLI prints it and exits 2."""


@dataclass
class Run:
    """One run's logged columns as (kimg, value) series."""

    label: str
    path: Path
    series: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        return self.series.get(key, (np.empty(0), np.empty(0)))

    @property
    def final_kimg(self) -> float:
        kimg, _ = self.get("train/kimg")
        return float(kimg.max()) if len(kimg) else math.nan

    def best_fid(self) -> tuple[float, float]:
        """(best val/fid, its kimg); NaNs without FID."""
        kimg, fid = self.get("val/fid")
        if not len(fid):
            return math.nan, math.nan
        i = int(np.argmin(fid))
        return float(fid[i]), float(kimg[i])

    def stage_boundaries(self) -> list[tuple[float, str, bool]]:
        """[(kimg, label, is_fade_start)] from train/resolution and train/alpha (PGGAN)."""
        kimg, res = self.get("train/resolution")
        akimg, alpha = self.get("train/alpha")
        marks = [(float(k), f"{int(r)}px", True)
                 for k, r, prev in zip(kimg[1:], res[1:], res[:-1]) if r != prev]
        marks += [(float(k), "", False)
                  for k, a, prev in zip(akimg[1:], alpha[1:], alpha[:-1]) if a >= 1 > prev]
        return sorted(marks)


def read_metrics_csv(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """metrics.csv -> {column: (kimg, values)} sorted by kimg. A row's kimg: train/kimg, else
    val/kimg (FID rows), else interpolated from the logging step."""
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
        order = np.argsort(kimg[keep], kind="stable")
        series[key] = (kimg[keep][order], values[keep][order])
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


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """Exponential moving average (TensorBoard-style, debiased); weight 0 = none."""
    if weight <= 0 or len(values) < 2:
        return values
    out, last, norm = np.empty_like(values), 0.0, 0.0
    for i, value in enumerate(values):
        last, norm = weight * last + (1 - weight) * value, weight * norm + (1 - weight)
        out[i] = last / norm
    return out


def plot(runs: list[Run], out: Path, smoothing: float = 0.0) -> Path:
    """Write the figure to `out` (PNG) and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PANELS), figsize=(5.5 * len(PANELS), 4.2), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, run in enumerate(runs):
        color = colors[i % len(colors)]
        for ax, (title, lines) in zip(axes[0], PANELS):
            for key, style, name in lines:
                kimg, values = run.get(key)
                if not len(values):
                    continue
                values = values if key.startswith("val/") else smooth(values, smoothing)
                label = f"{run.label} {name}" if len(lines) > 1 or len(runs) > 1 else name
                ax.plot(kimg, values, style, color=color, lw=1.2, ms=3, label=label)
            for kimg, text, fade_start in run.stage_boundaries():
                ax.axvline(kimg, color=color, lw=0.8, alpha=0.5, ls="-" if fade_start else ":")
                if text and title == PANELS[0][0]:
                    ax.text(kimg, 1.0, text, transform=ax.get_xaxis_transform(), fontsize=7,
                            color=color, ha="left", va="top", rotation=90)
    for ax, (title, _) in zip(axes[0], PANELS):
        ax.set_title(title)
        ax.set_xlabel("kimg")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not logged", transform=ax.transAxes, ha="center", color="gray")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def table(runs: list[Run]) -> str:
    """Plain-text table: run, best FID, kimg of the best FID, final kimg."""
    def fmt(value: float, width: int, digits: int | None = None) -> str:
        if math.isnan(value):
            return f"{'-':>{width}}"
        digits = digits if digits is not None else (1 if abs(value) >= 10 else 3)  # kimg
        return f"{value:>{width}.{digits}f}"

    width = max([len("run"), *(len(r.label) for r in runs)])
    lines = [f"{'run':<{width}}  {'best FID':>9}  {'at kimg':>9}  {'final kimg':>10}"]
    for run in runs:
        fid, at = run.best_fid()
        lines.append(f"{run.label:<{width}}  {fmt(fid, 9, 2)}  {fmt(at, 9)}  "
                     f"{fmt(run.final_kimg, 10)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ganlab.report", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders, sweep folders or metrics.csv files")
    parser.add_argument("--out", help="PNG / HTML path (default: RUN_DIR/report.png or "
                        ".html for one folder, else ./report.png or .html)")
    parser.add_argument("--html", action="store_true", help="one self-contained HTML page")
    parser.add_argument("--check", action="store_true", help="with --html: render it in headless "
                        "Chromium, write a screenshot next to it, exit 1 unless it rendered")
    parser.add_argument("--smooth", type=float, default=0.0,
                        help="EMA weight for the training curves, 0..1 (default 0: raw)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.smooth < 1.0:
        parser.error(f"--smooth={args.smooth} must be in [0, 1)")
    try:
        runs = find_runs(args.runs)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    first = Path(args.runs[0])
    first = first.parent if first.is_file() else first
    suffix = ".html" if args.html else ".png"
    default = first / f"report{suffix}" if len(args.runs) == 1 else Path(f"report{suffix}")
    out = Path(args.out) if args.out else default
    print(table(runs))
    if not args.html:
        print(f"wrote {plot(runs, out, args.smooth)}")
        return 0
    from ganlab.cli.report_html import write_html

    print(f"wrote {write_html(runs, out, f'ganlab report: {first.resolve().name}')}")
    return check_in_browser(out) if args.check else 0


def check_in_browser(page: Path) -> int:
    """`--check`: 0 if headless Chromium rendered the page (see ganlab.browser), else 1."""
    from ganlab.cli.browser import check_page

    try:
        seen = check_page(page, page.with_suffix(".screenshot.png"))
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"browser check: marker={seen.rendered} ({seen.counts}), console errors="
          f"{len(seen.console_errors)}, screenshot {seen.screenshot} with "
          f"{seen.distinct_colors} colours: {'ok' if seen.ok else 'FAILED'}")
    for line in seen.console_errors:
        print(f"  console: {line}", file=sys.stderr)
    return 0 if seen.ok else 1


if __name__ == "__main__":
    sys.exit(main())
