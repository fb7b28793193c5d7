"""The report's HTML view: one self-contained page of a run or a sweep (`ganlab-report RUN --html`).

No network and no external scripts: curves are inline SVG drawn here, images are inlined as
base64 PNG, and a few lines of inline JS run the sample slider and, once every plot and image
has rendered, mark the page (`<body data-rendered="ok">`, title suffix " [rendered]") so that a
headless browser check can tell a rendered page from a broken one.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from pathlib import Path

import numpy as np

from ganlab.cli.report.run import PANELS, Run, panel_lines

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
MAX_GRIDS = 40  # sample grids inlined per run (evenly spaced over kimg)
MAX_SHEETS = 24  # other PNGs (stage sheets, attention maps, reals) inlined per run
W, H, PAD = 420, 260, 44  # panel size and margin, px


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round tick values covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    step *= next(m for m in (1, 2, 5, 10) if (hi - lo) / (step * m) <= n)
    values = np.arange(math.ceil(lo / step) * step, hi + step / 2, step)
    return [float(v) for v in values if lo - 1e-9 * step <= v <= hi + 1e-9 * step]


def svg_panel(title: str, lines: list[tuple[str, str, bool, np.ndarray, np.ndarray]],
              marks: list[float]) -> str:
    """One inline SVG plot: lines [(label, colour, dashed, kimg, values)] against kimg."""
    lines = [line for line in lines if len(line[3])]
    head = (f'<svg class="plot" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img">'
            f'<text x="{W / 2}" y="16" text-anchor="middle" class="title">'
            f"{html.escape(title)}</text>")
    if not lines:
        return head + f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" fill="#999">' \
                      "not logged</text></svg>"
    xs = np.concatenate([line[3] for line in lines])
    ys = np.concatenate([line[4] for line in lines])
    ys = ys[np.isfinite(ys)]
    x0, x1 = float(xs.min()), float(xs.max()) or 1.0
    y0, y1 = (float(ys.min()), float(ys.max())) if len(ys) else (0.0, 1.0)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.5, y1 + 0.5
    sx = lambda x: PAD + (x - x0) / ((x1 - x0) or 1.0) * (W - 1.5 * PAD)  # noqa: E731
    sy = lambda y: H - PAD + (y0 - y) / (y1 - y0) * (H - 1.7 * PAD)  # noqa: E731
    parts = [head, f'<rect x="{PAD}" y="{0.7 * PAD}" width="{W - 1.5 * PAD}" '
                   f'height="{H - 1.7 * PAD}" class="frame"/>']
    for t in ticks(x0, x1):
        parts.append(f'<text x="{sx(t):.1f}" y="{H - PAD + 14}" text-anchor="middle">{t:g}</text>')
    for t in ticks(y0, y1):
        parts.append(f'<line x1="{PAD}" x2="{W - PAD / 2}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" '
                     f'class="grid"/><text x="{PAD - 4}" y="{sy(t) + 4:.1f}" '
                     f'text-anchor="end">{t:.4g}</text>')
    parts.append(f'<text x="{W / 2}" y="{H - 6}" text-anchor="middle">kimg</text>')
    for kimg in marks:
        parts.append(f'<line x1="{sx(kimg):.1f}" x2="{sx(kimg):.1f}" y1="{0.7 * PAD}" '
                     f'y2="{H - PAD}" class="mark"/>')
    for i, (label, color, dashed, kx, vy) in enumerate(lines):
        points = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(kx, vy) if np.isfinite(y))
        dash = ' stroke-dasharray="5,3"' if dashed else ""
        parts.append(f'<polyline class="curve" points="{points}" stroke="{color}"{dash}/>')
        if len(kx) < 30:  # sparse series (FID): dots
            parts += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{color}"/>'
                      for x, y in zip(kx, vy) if np.isfinite(y)]
        parts.append(f'<text x="{W - PAD / 2 - 4}" y="{0.7 * PAD + 14 + 13 * i}" fill="{color}" '
                     f'text-anchor="end">{html.escape(label)}</text>')
    return "".join(parts) + "</svg>"


def curves(runs: list[Run]) -> str:
    """The panels of ganlab.cli.report.run, every run overlaid (one colour per series)."""
    marks = [k for k, _, start in runs[0].stage_boundaries() if start] if len(runs) == 1 else []
    panels = []
    for panel in PANELS:
        lines = [(f"{runs[i].label} {line.label}" if len(runs) > 1 else line.label,
                  COLORS[j % len(COLORS)], line.dashed, kimg, values)  # a colour per series
                 for j, (i, line, kimg, values) in enumerate(panel_lines(runs, panel))]
        panels.append(svg_panel(panel.title, lines, marks))
    return '<div class="panels">' + "".join(panels) + "</div>"


def best(run: Run, key: str, lowest: bool) -> str:
    value, kimg = run.best(key, lowest)
    return "-" if math.isnan(value) else f"{value:.4g} <small>@ {kimg:.3g} kimg</small>"


def sweep_table(runs: list[Run]) -> str:
    """One row per job: best FID or shapes FD (lowest), best precision / recall (highest), final
    kimg."""
    rows = "".join(
        f"<tr><td>{html.escape(r.label)}</td><td>{best(r, r.distance_key, True)}</td>"
        f"<td>{best(r, 'val/precision', False)}</td><td>{best(r, 'val/recall', False)}</td>"
        f"<td>{r.final_kimg:.4g}</td></tr>" for r in runs)
    return ("<h2>Jobs</h2><table><tr><th>run</th><th>best FID / shapes FD</th>"
            "<th>best precision</th>"
            f"<th>best recall</th><th>final kimg</th></tr>{rows}</table>")


def sample_slider(run: Run, index: int) -> str:
    """The fakes_{nimg}.png grids over kimg behind a range slider (data URIs in a JS array)."""
    grids = run.sample_grids()
    if not grids:
        return "<p class='none'>no sample grids (samples/fakes_*.png)</p>"
    if len(grids) > MAX_GRIDS:
        grids = [grids[round(i)] for i in np.linspace(0, len(grids) - 1, MAX_GRIDS)]
    kimgs = [int(re.sub(r"\D", "", g.stem) or 0) / 1000 for g in grids]
    uris = [data_uri(g) for g in grids]
    last = len(grids) - 1
    return (
        f'<div class="slider"><input type="range" min="0" max="{last}" value="{last}" '
        f'id="slide{index}" oninput="showGrid({index}, this.value)"> '
        f'<span id="kimg{index}">{kimgs[-1]:g} kimg</span><br>'
        f'<img class="grid" id="grid{index}" src="{uris[-1]}" alt="samples"></div>'
        f"<script>GRIDS[{index}] = {json.dumps(uris)}; "
        f"KIMG[{index}] = {json.dumps(kimgs)};</script>"
    )


def sheets(run: Run) -> str:
    """Other PNGs in samples/: PGGAN stage sheets, SAGAN attention maps, reals.png."""
    files = run.sheets()[:MAX_SHEETS]
    if not files:
        return ""
    figures = "".join(f'<figure><img src="{data_uri(p)}" alt="{html.escape(p.name)}">'
                      f"<figcaption>{html.escape(str(p.relative_to(run.path)))}</figcaption></figure>"
                      for p in files)
    return f"<h3>Stage sheets, attention maps, reals</h3><div class='sheets'>{figures}</div>"


def eval_table(run: Run) -> str:
    """eval.json (ganlab-evaluate) as a key / value table, if present."""
    files = run.eval_files()
    if not files:
        return ""
    out = []
    for path in files:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            out.append(f"<p>{html.escape(str(path))}: unreadable ({html.escape(str(error))})</p>")
            continue
        items = data.items() if isinstance(data, dict) else enumerate(data)
        rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(json.dumps(v))}</td>"
                       "</tr>" for k, v in items)
        out.append(f"<h3>Evaluation: {html.escape(path.name)}</h3><table>{rows}</table>")
    return "".join(out)


def config(run: Run) -> str:
    text = run.config_text
    if text is None:
        return ""
    return (f"<details><summary>Resolved config (.hydra/config.yaml)</summary>"
            f"<pre>{html.escape(text)}</pre></details>")


def run_section(run: Run, index: int, single: bool) -> str:
    body = (f"<h3>Samples over kimg</h3>{sample_slider(run, index)}{sheets(run)}"
            f"{eval_table(run)}{config(run)}")
    if single:
        return body
    return f"<details><summary>{html.escape(run.label)}</summary>{body}</details>"


STYLE = """body{font:14px sans-serif;margin:20px;color:#222}h1{font-size:20px}
.panels{display:flex;flex-wrap:wrap;gap:8px}svg.plot{background:#fff;border:1px solid #ddd}
svg text{font-size:11px}svg .title{font-size:13px;font-weight:bold}
.frame{fill:none;stroke:#888}.grid{stroke:#eee}.mark{stroke:#999;stroke-dasharray:2,3}
.curve{fill:none;stroke-width:1.5}img.grid{image-rendering:pixelated;width:min(600px,90vw)}
.sheets{display:flex;flex-wrap:wrap;gap:8px}.sheets img{image-rendering:pixelated;width:200px}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
pre{background:#f6f6f6;padding:8px;max-height:400px;overflow:auto}"""

SCRIPT = """
function showGrid(i, v) {
  document.getElementById('grid' + i).src = GRIDS[i][v];
  document.getElementById('kimg' + i).textContent = KIMG[i][v] + ' kimg';
}
window.addEventListener('load', function () {
  var plots = document.querySelectorAll('svg.plot').length;
  var curves = document.querySelectorAll('svg.plot polyline.curve').length;
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (im) { return !im.complete || im.naturalWidth === 0; });
  var ok = plots > 0 && broken.length === 0;
  document.body.setAttribute('data-rendered', ok ? 'ok' : 'broken');
  document.body.setAttribute('data-counts',
    'plots=' + plots + ' curves=' + curves + ' images=' + imgs.length + ' broken=' + broken.length);
  document.title += ok ? ' [rendered]' : ' [broken]';
});
"""


def render_html(runs: list[Run], title: str) -> str:
    """The whole page as one string (see the module docstring)."""
    sections = "".join(run_section(run, i, len(runs) == 1) for i, run in enumerate(runs))
    table = sweep_table(runs) if len(runs) > 1 else ""
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style><script>var GRIDS = {{}}, KIMG = {{}};</script></head>"
        f"<body data-rendered='pending'><h1>{html.escape(title)}</h1>{table}<h2>Curves</h2>"
        f"{curves(runs)}<h2>Runs</h2>{sections}<script>{SCRIPT}</script></body></html>"
    )


def write_html(runs: list[Run], out: Path, title: str) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(runs, title), encoding="utf-8")
    return out
