"""The report's plain-text view: one row per run with its best FID or shapes FD."""

from __future__ import annotations

import math

from ganlab.cli.report.run import Run


def _fmt(value: float, width: int, digits: int | None = None) -> str:
    if math.isnan(value):
        return f"{'-':>{width}}"
    digits = digits if digits is not None else (1 if abs(value) >= 10 else 3)  # kimg
    return f"{value:>{width}.{digits}f}"


def table(runs: list[Run]) -> str:
    """Columns: run, best FID / shapes FD (lowest), its kimg, final kimg, the metric's key."""
    width = max([len("run"), *(len(r.label) for r in runs)])
    lines = [f"{'run':<{width}}  {'best FID/FD':>11}  {'at kimg':>9}  {'final kimg':>10}  metric"]
    for run in runs:
        value, at = run.best_distance()
        key = run.distance_key if not math.isnan(value) else "-"
        lines.append(f"{run.label:<{width}}  {_fmt(value, 11, 2)}  {_fmt(at, 9)}  "
                     f"{_fmt(run.final_kimg, 10)}  {key}")
    return "\n".join(lines)
