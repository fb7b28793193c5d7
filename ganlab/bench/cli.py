"""`python -m ganlab.bench`: runs the cases, prints the table, writes the JSON."""


from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from ganlab.bench.cases import (
    OVERHEAD_TARGET,
    TARGET_RATIO,
    Case,
    PathResult,
    Timing,
    cases_for,
    compose_config,
    render_train_set,
    stage_batch,
)
from ganlab.bench.counters import peak_tflops
from ganlab.bench.paths import flops_per_image, run_ganlab, run_plain


# ----------------------------------------------------------------------------- one case
def bench_case(case: Case, timing: Timing, train_set: Any, workdir: Path) -> dict[str, Any]:
    """Both paths of one case, alternating over `timing.rounds`; returns the figures."""
    from ganlab.training.fit import set_tf32

    cfg = compose_config(case, workdir / "run", len(train_set))
    set_tf32(cfg.get("tf32"))
    images = torch.from_numpy(train_set.array).to(case.device)
    ganlab, plain = PathResult(), PathResult()
    for _ in range(timing.rounds):
        for result, run in ((ganlab, lambda: run_ganlab(cfg, case, timing, train_set)),
                            (plain, lambda: run_plain(cfg, case, timing, images))):
            measured = run()
            result.img_per_s += measured.img_per_s
            result.img_per_cpu_s += measured.img_per_cpu_s
            result.peak_memory_mb = max(result.peak_memory_mb, measured.peak_memory_mb)
            if measured.host_syncs_per_step is not None:
                result.host_syncs_per_step = max(result.host_syncs_per_step or 0,
                                                 measured.host_syncs_per_step)
    flops = flops_per_image(cfg, case, images)
    side = case.phase[0] if case.phase else case.resolution
    batch = case.batch or stage_batch(cfg, case, side)
    return {
        **{k: v for k, v in asdict(case).items() if k != "overrides"},
        "overrides": list(case.overrides),
        "side": side,
        "fading": bool(case.phase and case.phase[1]),
        "batch": batch,
        "overhead_ms_per_step": round(1e3 * batch * (1 / ganlab.median - 1 / plain.median), 3),
        "ganlab_img_per_s": round(ganlab.median, 2),
        "plain_img_per_s": round(plain.median, 2),
        "ratio": round(ganlab.median / plain.median, 3),
        "ratio_paired": round(statistics.median(  # per alternation: cancels slow drift
            g / p for g, p in zip(ganlab.img_per_s, plain.img_per_s)), 3),
        "ganlab_windows": [round(v, 2) for v in ganlab.img_per_s],
        "plain_windows": [round(v, 2) for v in plain.img_per_s],
        "ganlab_img_per_cpu_s": round(ganlab.cpu_median, 2),
        "plain_img_per_cpu_s": round(plain.cpu_median, 2),
        "cpu_time_ratio": round(ganlab.cpu_median / plain.cpu_median, 3),
        "ganlab_peak_memory_mb": round(ganlab.peak_memory_mb, 1),
        "plain_peak_memory_mb": round(plain.peak_memory_mb, 1),
        "memory_kind": ("cuda max_memory_allocated" if case.device == "cuda" else "process RSS")
        + ", both paths in one process (peak reset before each timed window; CPU: the RSS "
          "high-water mark also holds what the other path left allocated)",
        "host_syncs_per_step": ganlab.host_syncs_per_step,
        "gflop_per_image": round(flops / 1e9, 3),
        "fraction_of_peak": fraction_of_peak(flops * ganlab.median, case, cfg),
        "ganlab_gflop_per_s": round(flops * ganlab.median / 1e9, 2),
    }


# ----------------------------------------------------------------------------- extras
def fraction_of_peak(flop_per_s: float, case: Case, cfg: Any) -> float | None:
    """Achieved FLOP/s over the card's dense peak (counters.PEAK_TFLOPS); None on a CPU or an
    unknown card."""
    if case.device != "cuda":
        return None
    tf32 = bool(cfg.get("tf32")) or torch.backends.cuda.matmul.allow_tf32
    peak = peak_tflops(torch.cuda.get_device_name(), case.precision, tf32)
    return None if peak is None else round(flop_per_s / (peak * 1e12), 4)


def loader_figures(quick: bool) -> dict[str, Any] | None:
    """ganlab.data.bench.loader_benchmark (cached vs decoding loader), if that module exists."""
    try:
        from ganlab.data.bench import loader_benchmark
    except ImportError:
        return None
    if quick:
        return loader_benchmark(num_images=256, batch_size=64, seconds=1.0)
    return loader_benchmark()


def fid_figures(quick: bool, device: str) -> dict[str, Any]:
    """One FID evaluation timed by ganlab.bench.fid.time_evaluation."""
    from ganlab.bench.fid import time_evaluation

    if quick:
        return time_evaluation(resolution=32, num_real=16, num_fake=16, batch_size=16,
                               device=device)
    return time_evaluation(resolution=64, num_real=256, num_fake=256, device=device)


def machine() -> dict[str, Any]:
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


# ----------------------------------------------------------------------------- output
HEADER = (f"{'model':<6} {'px':>4} {'phase':<6} {'batch':>5} {'prec':<10} {'comp':<4} "
          f"{'ganlab img/s':>12} {'plain img/s':>12} {'ratio':>6} {'GFLOP/img':>9} "
          f"{'GFLOP/s':>8} {'peak MiB g/p':>13} {'syncs':>5}")


def format_row(row: dict[str, Any]) -> str:
    """One training row of the table."""
    phase = ("fade" if row["fading"] else "stable") if row["model"] == "pggan" else ""
    syncs = row["host_syncs_per_step"]
    return (
        f"{row['model']:<6} {row['side']:>4} {phase:<6} {row['batch']:>5} "
        f"{row['precision']:<10} {'yes' if row['compile'] else 'no':<4} "
        f"{row['ganlab_img_per_s']:>12.2f} {row['plain_img_per_s']:>12.2f} "
        f"{row['ratio']:>6.3f} {row['gflop_per_image']:>9.3g} {row['ganlab_gflop_per_s']:>8.3g} "
        f"{row['ganlab_peak_memory_mb']:>6.0f}/{row['plain_peak_memory_mb']:<6.0f} "
        f"{syncs if syncs is not None else '-':>5}"
    )


def format_table(result: dict[str, Any]) -> str:
    """The figures as a plain-text table."""
    lines = [HEADER, "-" * len(HEADER), *map(format_row, result["training"])]
    short = [f"{r['model']} {r['side']}" for r in result["training"] if r["ratio"] < TARGET_RATIO]
    if result["training"]:
        lines.append(f"ganlab / plain >= {TARGET_RATIO}: "
                     + (f"short for {', '.join(short)}" if short else "met for every row"))
    for row in result["training"]:
        if row.get("callbacks"):  # the overhead-bound case (--overhead)
            lines.append(f"overhead-bound case ({row['model']} {row['side']} px, batch "
                         f"{row['batch']}, default callbacks): {row['overhead_ms_per_step']:.2f} "
                         f"ms per step over the plain loop, ratio {row['ratio']:.3f} "
                         f"(target >= {OVERHEAD_TARGET})")
    if result.get("end_to_end"):
        from ganlab.bench.end_to_end import format_end_to_end

        lines.append(format_end_to_end(result["end_to_end"]))
    loader = result.get("loader")
    if loader:
        lines.append(f"loader: cached {loader['cached_img_per_s']:,.0f} img/s, decoding "
                     f"{loader['decode_img_per_s']:,.0f} img/s ({loader['speedup']}x) at "
                     f"{loader['resolution']} px")
    fid = result.get("fid")
    if fid:
        lines.append(f"FID at {fid['resolution']} px, {fid['num_real']} real / {fid['num_fake']} "
                     f"fake ({fid['weights']}): {fid['miss_s']:.1f} s without cached real "
                     f"statistics, {fid['hit_s']:.1f} s with")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every case and the extras; returns the JSON-ready result."""
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible")
    if args.end_to_end:
        return run_end_to_end(args)
    defaults = Timing(warmup=2, steps=5, windows=2, rounds=1) if args.quick else Timing()
    if args.overhead and not args.quick:  # short steps: long windows, many rounds
        defaults = Timing(warmup=20, steps=200, windows=3, rounds=4)
    timing = Timing(
        warmup=args.warmup or defaults.warmup, steps=args.steps or defaults.steps,
        windows=args.windows or defaults.windows, rounds=args.rounds or defaults.rounds,
    )
    result: dict[str, Any] = {"machine": machine(), "timing": asdict(timing),
                              "target_ratio": TARGET_RATIO, "training": []}
    sets: dict[tuple[str, int], Any] = {}
    load = os.getloadavg()[0]
    if load > 0.5 * (os.cpu_count() or 1) + 0.5:
        print(f"note: 1-minute load average {load:.1f} on {os.cpu_count()} cores: other "
              "processes compete for the CPU, so the figures will be noisy")
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory(prefix="ganlab-bench-") as tmp:
        for case in cases_for(args):
            key = (case.model, case.resolution)
            if key not in sets:
                sets[key] = render_train_set(case, args.num_images)
            headline = case.phase is None or case.phase == (case.resolution, True)
            rounds = timing.rounds if headline else max(1, timing.rounds // 2)
            row = bench_case(case, replace(timing, rounds=rounds), sets[key], Path(tmp))
            result["training"].append(row)
            print(format_row(row), flush=True)
            if args.versus:  # the same case with the baseline's overrides, in this process
                base = replace(case, overrides=(*case.overrides, *args.versus))
                base_row = bench_case(base, replace(timing, rounds=rounds), sets[key], Path(tmp))
                result.setdefault("versus", []).append(versus_row(row, base_row, args.versus))
                print(format_row(base_row), f"  <- {' '.join(args.versus)}", flush=True)
                versus = result["versus"][-1]
                print(f"speed-up of ganlab img/s over the baseline: {versus['speed_up']:.2f}x "
                      f"(per CPU second: {versus['speed_up_cpu_time']:.2f}x)", flush=True)
    if "loader" not in args.skip:
        result["loader"] = loader_figures(args.quick)
    if "fid" not in args.skip:
        result["fid"] = fid_figures(args.quick, args.device)
    result["machine"]["load_average_1min_end"] = os.getloadavg()[0]
    return result


def versus_row(row: dict[str, Any], base_row: dict[str, Any], versus: list[str]) -> dict:
    """`--versus`: a case against its baseline (the same case with the `versus` overrides)."""
    return {"model": row["model"], "side": row["side"], "batch": row["batch"],
            "baseline_overrides": list(versus), "img_per_s": row["ganlab_img_per_s"],
            "baseline_img_per_s": base_row["ganlab_img_per_s"],
            "speed_up": round(row["ganlab_img_per_s"] / base_row["ganlab_img_per_s"], 3),
            # per second of process CPU time: what other processes' load leaves unchanged
            "speed_up_cpu_time": round(row["ganlab_img_per_cpu_s"]
                                       / base_row["ganlab_img_per_cpu_s"], 3),
            "baseline": base_row}


def run_end_to_end(args: argparse.Namespace) -> dict[str, Any]:
    """`--end-to-end`: a real ganlab.run against the plain loop (ganlab.bench.end_to_end)."""
    from ganlab.bench.end_to_end import end_to_end, format_end_to_end

    if args.quick:
        row = end_to_end(resolution=16, batch=16, kimg=0.4, num_images=128, plain_windows=2,
                         rounds=1,
                         extra=["model.generator.width=8", "model.discriminator.width=8",
                                *args.overrides])
    else:
        row = end_to_end(resolution=args.resolution or 32, batch=args.batch or 64,
                         kimg=args.e2e_kimg, rounds=args.rounds or 3, extra=list(args.overrides))
    print(format_end_to_end(row), flush=True)
    return {"machine": machine(), "training": [], "end_to_end": row}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ganlab.bench",
        description="Training throughput: ganlab's real path against a plain PyTorch loop.",
        epilog="Arguments after `--` are Hydra overrides applied to every case.")
    parser.add_argument("--model", choices=["dcgan", "sagan", "pggan"],
                        help="one model (default: the three reference cases)")
    parser.add_argument("--resolution", type=int, help="data.resolution, px (PGGAN: final side)")
    parser.add_argument("--batch", type=int, help="images per iteration (PGGAN default: the "
                                                  "schedule's per-resolution batch)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", choices=["32", "bf16-mixed"], default="32")
    parser.add_argument("--compile", action="store_true", help="model.compile=true")
    parser.add_argument("--compile-mode", choices=["default", "reduce-overhead", "max-autotune",
                                                   "max-autotune-no-cudagraphs"],
                        help="with --compile: torch.compile's mode (model.compile_mode; "
                             "reduce-overhead: CUDA graphs on a GPU)")
    parser.add_argument("--quick", action="store_true", help="small sizes, short windows")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--overhead", action="store_true",
                        help="the overhead-bound case: DCGAN 16 px, width 16, batch 16, with a "
                             "default run's callbacks (progress bar) and logging; reports ms of "
                             "overhead per step")
    parser.add_argument("--end-to-end", action="store_true",
                        help="a real `python -m ganlab.run` (folder data, default callbacks) "
                             "against the plain loop: steady-state img/s and startup time")
    parser.add_argument("--e2e-kimg", type=float, default=12.0,
                        help="--end-to-end: length of the run, kimg (12: ~1 min at 200 img/s)")
    parser.add_argument("--warmup", type=int, help="untimed iterations per run (3; quick: 2)")
    parser.add_argument("--steps", type=int, help="iterations per window (default: the "
                                                  "logging interval; quick: 5)")
    parser.add_argument("--windows", type=int, help="timed windows per path and round (1)")
    parser.add_argument("--rounds", type=int, help="ganlab / plain alternations (4; PGGAN's "
                                                   "other phases: half; quick: 1)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--num-images", type=int, default=2048, help="training images rendered")
    parser.add_argument("--no-stages", action="store_true",
                        help="PGGAN: only the fade-in of the final side, not every phase")
    parser.add_argument("--skip", action="append", default=[], choices=["loader", "fid"],
                        help="leave out the loader benchmark or the FID timing")
    parser.add_argument("--versus", nargs="+", metavar="OVERRIDE",
                        help="also time every case with these Hydra overrides (the baseline, "
                        "e.g. model.generator.attention_kernel=sdpa) and print the speed-up")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (after --)")
    args = parser.parse_args(argv)
    for name, low in (("warmup", 2), ("windows", 1), ("rounds", 1), ("steps", 1)):
        value = getattr(args, name)
        if value is not None and value < low:
            parser.error(f"--{name} {value}: must be >= {low}")
    if args.compile_mode is not None:
        if not args.compile:
            parser.error("--compile-mode: only with --compile")
        args.overrides = [f"model.compile_mode={args.compile_mode}", *args.overrides]
    if args.resolution is not None and not (args.resolution >= 4 and
                                            math.log2(args.resolution).is_integer()):
        parser.error(f"--resolution {args.resolution}: a power of two >= 4 (DCGAN, SAGAN: >= 8)")
    return args


def prepare_process(threads: int | None) -> None:
    """A bench process set up as `ganlab.run` sets up its own: torch threads (if given) and the
    `heap_malloc` allocator setting, which every path timed in this process then shares."""
    from ganlab.training.fit import keep_freed_memory

    if threads:
        torch.set_num_threads(threads)
    keep_freed_memory(True)


def write_json(result: dict[str, Any], path: str | None) -> None:
    """The figures as JSON at `path` (folders made), if a path is given."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(result, indent=2) + "\n")
        print(f"figures written to {path}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    prepare_process(args.threads)
    result = run(args)
    print()
    print(format_table(result))
    write_json(result, args.json)
    return result
