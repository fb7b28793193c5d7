"""Soak run (a benchmark, not a test): train DCGAN and PGGAN on the CPU for a wall-clock budget
each, with sample grids, checkpoints and the shapes metric every few kimg and two SIGTERM /
resume cycles, sampling the training process's resident memory, open file descriptors, the run
folder's size and its kimg every few seconds. Writes soak.json and soak.png (the curves) into
--out and prints the figures that go into experiments/RELIABILITY.md.

    OMP_NUM_THREADS=1 python experiments/soak.py --minutes 12 --out experiments/soak

Each run is a `python -m ganlab.run` child with one thread (torch and OpenMP); both models run
at the same time. Figures: memory and descriptor growth after warm-up (the first sample past
`--warmup` of the budget, PGGAN: past its last growth) to the end of each segment; images per
second over the first and the last ten minutes after warm-up (meaningful only on an idle
machine); every checkpoint of the run folder loaded at the end with ganlab's loader.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["data=shapes", "data.resolution=32", "data.batch_size=16", "metric=shapes",
          "metric.num_real=2000", "metric.every_kimg=5", "callbacks.samples.every_kimg=2",
          "callbacks.checkpoint.every_kimg=2", "callbacks.checkpoint.snapshot_kimg=10",
          "callbacks.progress=null", "+trainer.enable_progress_bar=false", "logger=csv",
          "+logger.csv.flush_logs_every_n_steps=10", "kimg=100000", "trainer.accelerator=cpu",
          "extras.print_config=false", "heap_malloc=true"]
MODELS = {
    "dcgan": ["model=dcgan_small"],
    "pggan": ["model=pggan", "model.generator.width=64", "model.discriminator.width=64",
              "model.schedule.stabilize_kimg=3", "model.schedule.fade_kimg=3",
              "model.schedule.batch_size_dict=null", "model.generator.z_dim=128"],
}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def folder_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def last_kimg(run: Path) -> float:
    """The last train/kimg in the run's metrics.csv (the CSV logger writes every 100 rows)."""
    path = run / "csv" / "metrics.csv"
    if not path.is_file():
        return 0.0
    lines = path.read_text().splitlines()
    if len(lines) < 2:
        return 0.0
    header = lines[0].split(",")
    column = header.index("train/kimg") if "train/kimg" in header else None
    for line in reversed(lines[1:]):
        cells = line.split(",")
        if column is not None and column < len(cells) and cells[column]:
            return float(cells[column])
    return 0.0


class Job:
    """One model's run: a child process per segment, samples of it every `every_s` seconds."""

    def __init__(self, name: str, out: Path, seconds: float) -> None:
        self.name, self.run, self.seconds = name, out / name, seconds
        self.samples: list[dict] = []
        self.segments: list[dict] = []
        self.process: subprocess.Popen | None = None
        self.start = self.segment_start = 0.0

    def launch(self) -> None:
        resume = self.run / "checkpoints" / "last.ckpt"
        overrides = [*COMMON, *MODELS[self.name], f"hydra.run.dir={self.run}"]
        if resume.is_file():
            overrides.append(f"ckpt_path={resume}")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "WANDB_MODE": "offline"}
        log = open(self.run.parent / f"{self.name}.log", "a")  # noqa: SIM115 - the child's
        self.process = subprocess.Popen([sys.executable, "-m", "ganlab.run", *overrides],
                                        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.segment_start = time.monotonic()
        self.segments.append({"start_s": self.segment_start - self.start})

    def sample(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        pid = self.process.pid
        try:
            row = {"t_s": time.monotonic() - self.start, "rss_mib": rss_mib(pid),
                   "fds": open_fds(pid), "folder_mib": folder_mib(self.run),
                   "kimg": last_kimg(self.run), "segment": len(self.segments) - 1}
        except (FileNotFoundError, ProcessLookupError):
            return
        self.samples.append(row)

    def stop(self) -> int:
        """SIGTERM: the run saves last.ckpt after its current iteration and exits."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=600)
        self.segments[-1]["end_s"] = time.monotonic() - self.start
        self.segments[-1]["exit_code"] = code
        self.segments[-1]["kimg_at_stop"] = last_kimg(self.run)
        return code


def check_checkpoints(run: Path) -> dict[str, float]:
    from ganlab.checkpoints import load_checkpoint

    return {p.name: load_checkpoint(p)["ganlab"]["nimg"] / 1000
            for p in sorted((run / "checkpoints").glob("*.ckpt"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="budget per model, minutes")
    parser.add_argument("--every", type=float, default=10.0, help="sampling interval, seconds")
    parser.add_argument("--cycles", type=int, default=2, help="SIGTERM / resume cycles")
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "soak")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    seconds = args.minutes * 60
    jobs = [Job(name, args.out, seconds) for name in args.models]
    stops = [seconds * (k + 1) / (args.cycles + 1) for k in range(args.cycles)]
    start = time.monotonic()
    for job in jobs:
        job.start = start
        job.launch()
    done = 0
    while time.monotonic() - start < seconds:
        time.sleep(args.every)
        for job in jobs:
            job.sample()
        elapsed = time.monotonic() - start
        if done < len(stops) and elapsed >= stops[done]:
            for job in jobs:
                print(f"{elapsed:.0f} s: SIGTERM {job.name} (exit {job.stop()}), resuming",
                      flush=True)
                job.launch()
            done += 1
    for job in jobs:
        job.stop()
    result = {"minutes": args.minutes, "every_s": args.every, "jobs": {}}
    for job in jobs:
        result["jobs"][job.name] = {"samples": job.samples, "segments": job.segments,
                                    "checkpoints_kimg": check_checkpoints(job.run)}
    (args.out / "soak.json").write_text(json.dumps(result, indent=1))
    summarize(result, args.out)
    return 0


def growth(samples: list[dict], key: str, warmup_s: float) -> dict[str, float]:
    """Per segment: value at the first sample after warm-up and at the segment's last sample."""
    out = {}
    for segment in sorted({s["segment"] for s in samples}):
        rows = [s for s in samples if s["segment"] == segment]
        start_t = rows[0]["t_s"] + warmup_s
        later = [s for s in rows if s["t_s"] >= start_t]
        if len(later) >= 2:
            first, last = later[0][key], later[-1][key]
            out[f"segment {segment}"] = {"after_warmup": first, "end": last,
                                         "growth_pct": 100 * (last - first) / first}
    return out


def summarize(result: dict, out: Path, warmup_s: float = 120.0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(9, 11), sharex=True)
    for name, job in result["jobs"].items():
        t = [s["t_s"] / 60 for s in job["samples"]]
        for ax, key in zip(axes[:3], ("rss_mib", "fds", "folder_mib"), strict=True):
            ax.plot(t, [s[key] for s in job["samples"]], label=name)
        rate = [(b["kimg"] - a["kimg"]) * 1000 / (b["t_s"] - a["t_s"])
                if b["segment"] == a["segment"] and b["kimg"] >= a["kimg"] else float("nan")
                for a, b in zip(job["samples"], job["samples"][1:], strict=False)]
        axes[3].plot(t[1:], rate, label=name)
        for segment in job["segments"][1:]:
            for ax in axes:
                ax.axvline(segment["start_s"] / 60, color="grey", lw=0.5, ls="--")
    for ax, label in zip(axes, ("RSS, MiB", "open fds", "run folder, MiB",
                                "images/s (CSV kimg)"), strict=True):
        ax.set_ylabel(label)
        ax.legend()
    axes[-1].set_xlabel("minutes (dashed: SIGTERM + resume)")
    fig.tight_layout()
    fig.savefig(out / "soak.png", dpi=80)
    for name, job in result["jobs"].items():
        print(f"== {name}: checkpoints (kimg) {job['checkpoints_kimg']}")
        print(f"   segments {job['segments']}")
        for key in ("rss_mib", "fds"):
            print(f"   {key}: {json.dumps(growth(job['samples'], key, warmup_s))}")


if __name__ == "__main__":
    sys.exit(main())
