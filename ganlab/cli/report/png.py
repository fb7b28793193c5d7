"""The report's PNG view: the panels of ganlab.cli.report.run against kimg (matplotlib), every
run overlaid in its own colour, PGGAN stage boundaries marked (solid: a new resolution starts
fading in; dotted: the fade ends)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ganlab.cli.report.run import PANELS, Run, panel_lines


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """Exponential moving average (TensorBoard-style, debiased); weight 0 = none."""
    if weight <= 0 or len(values) < 2:
        return values
    out, last, norm = np.empty_like(values), 0.0, 0.0
    for i, value in enumerate(values):
        last, norm = weight * last + (1 - weight) * value, weight * norm + (1 - weight)
        out[i] = last / norm
    return out


def figure(runs: list[Run], smoothing: float = 0.0) -> Any:
    """The matplotlib figure: one axis per panel; training curves smoothed, val/* as points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PANELS), figsize=(5.5 * len(PANELS), 4.2), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, panel in zip(axes[0], PANELS):
        for j, (i, line, kimg, values) in enumerate(panel_lines(runs, panel)):
            sparse = line.key.startswith("val/")
            values = values if sparse else smooth(values, smoothing)
            style = ("o" if sparse else "") + ("--" if line.dashed else "-")
            label = f"{runs[i].label} {line.label}" if len(runs) > 1 else line.label
            ax.plot(kimg, values, style, color=colors[j % len(colors)], lw=1.2, ms=3, label=label)
        for i, run in enumerate(runs):
            color = colors[i % len(colors)]
            for kimg, text, fade_start in run.stage_boundaries():
                ax.axvline(kimg, color=color, lw=0.8, alpha=0.5, ls="-" if fade_start else ":")
                if text and panel is PANELS[0]:
                    ax.text(kimg, 1.0, text, transform=ax.get_xaxis_transform(), fontsize=7,
                            color=color, ha="left", va="top", rotation=90)
        ax.set_title(panel.title)
        ax.set_xlabel("kimg")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not logged", transform=ax.transAxes, ha="center", color="gray")
    fig.tight_layout()
    return fig


def plot(runs: list[Run], out: Path, smoothing: float = 0.0) -> Path:
    """Write the figure to `out` (PNG) and return it."""
    import matplotlib.pyplot as plt

    fig = figure(runs, smoothing)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
