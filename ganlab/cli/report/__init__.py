"""Training curves of one or more runs in one PNG (or one self-contained HTML page), without W&B.

    ganlab-report RUN_DIR [RUN_DIR ...] [--out report.png] [--smooth 0.9]
    ganlab-report RUN_OR_SWEEP_DIR --html [--out report.html] [--check]

(`python -m ganlab.report` is the same.) Three views over one model (run.py: a run folder read
once, and the one list of panels): a text table (text.py) of each run's best FID or shapes FD
(`val/fid`, `val/fd_shapes`) with its kimg and final kimg; a PNG (png.py) of the panels against
kimg: D and G losses, D outputs on reals and fakes, FID / shapes FD, precision / recall, PGGAN
stage boundaries marked; and with --html one self-contained page (page.py) with the same panels,
the sample grids over kimg behind a slider, the other PNGs of samples/ (PGGAN stage sheets, SAGAN
attention maps, reals), eval.json, the resolved config and, for a sweep, one row per job. Several
runs (or a sweep folder, which expands to its jobs) are overlaid, one colour per run. Reads the
CSV logger's `metrics.csv` (logger=csv, the default, or logger=many). --check opens the page in
headless Chromium (browser.py) and fails unless it rendered.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ganlab.cli.report.run import (  # noqa: F401 - the report's model, for `from ganlab.report`
    PANELS,
    ReportError,
    Run,
    find_runs,
    read_metrics_csv,
)
from ganlab.cli.report.text import table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ganlab-report", description=__doc__.split(
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
        from ganlab.cli.report.png import plot  # matplotlib: imported only for the PNG

        print(f"wrote {plot(runs, out, args.smooth)}")
        return 0
    from ganlab.cli.report.page import write_html

    print(f"wrote {write_html(runs, out, f'ganlab report: {first.resolve().name}')}")
    return check_in_browser(out) if args.check else 0


def check_in_browser(page: Path) -> int:
    """`--check`: 0 if headless Chromium rendered the page (report/browser.py), else 1."""
    from ganlab.cli.report.browser import check_page

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
