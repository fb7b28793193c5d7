"""Training throughput of ganlab's real training path against a plain PyTorch loop.

    python -m ganlab.bench                      # DCGAN 64/64, SAGAN 64/32, PGGAN 32 px per stage
    python -m ganlab.bench --quick              # small sizes: about a minute on 2 CPU cores
    python -m ganlab.bench --model dcgan --resolution 64 --batch 64 --json bench.json
    python -m ganlab.bench --model sagan --device cuda --precision bf16-mixed --compile
    python -m ganlab.bench --model pggan -- model.generator.width=128   # then Hydra overrides

Both paths of a case are built from the same composed config (conf/train.yaml, data=shapes):
- ganlab: `ganlab.run.build` and `Trainer.fit` with the GAN module, logging at the default
  interval, reals from the in-memory loader; sample grids, checkpoints, the progress bar and the
  metric are off (they run every few kimg, not per step);
- plain: a hand-written loop over the same G, D, loss object, Adam settings, batch size, n_critic,
  EMA update and PGGAN fade, reals indexed from the same images held on the device; no Lightning.
Each path runs `warmup` iterations, then `windows` timed windows of `steps` iterations (default:
the logging interval, so each window holds one logging step); paths alternate over `rounds`;
the figure is the median window. Also: peak memory in the timed windows (RSS on CPU,
`torch.cuda.max_memory_allocated` on GPU), FLOPs per training image (torch.utils.flop_counter,
one iteration: forward, backward, penalties), achieved FLOP/s, host syncs (`.item()` and the
like) per training step outside logging steps, and, where present, the loader benchmark
(`ganlab.data.bench`) and one FID evaluation (`ganlab.bench_fid.time_evaluation`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import math
import os
import platform
import resource
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
REFERENCE = {"dcgan": (64, 64), "sagan": (64, 32), "pggan": (32, None)}  # model: (R, batch)
QUICK = {"dcgan": (32, 32), "sagan": (32, 16), "pggan": (16, None)}
CPU_OVERRIDES = {  # PGGAN's paper widths (512 channels up to 32 px) are for GPUs
    "pggan": ("model.generator.width=64", "model.discriminator.width=64"),
}
QUICK_OVERRIDES = {
    "sagan": ("model.generator.width=16", "model.discriminator.width=16"),
    "pggan": ("model.generator.width=16", "model.discriminator.width=16",
              "model.generator.z_dim=64"),
}
SYNC_OPS = ("aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select")
TARGET_RATIO = 0.95  # ganlab / plain images per second (issue 8)


@dataclass(frozen=True)
class Case:
    """One benchmark configuration.

    resolution: data.resolution (PGGAN: the final side); batch: images per iteration (None:
    data.batch_size; PGGAN: the schedule's per-resolution batch); phase (PGGAN only): (side,
    fading) measured; overrides: extra Hydra overrides."""

    model: str
    resolution: int
    batch: int | None = None
    device: str = "cpu"
    precision: str = "32"
    compile: bool = False
    phase: tuple[int, bool] | None = None
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Timing:
    """warmup: untimed iterations per path and round; steps: iterations per window (None: the
    logging interval); windows: timed windows per path and round; rounds: ganlab / plain
    alternations."""

    warmup: int = 3
    steps: int | None = None
    windows: int = 1
    rounds: int = 4


@dataclass
class PathResult:
    """Throughput of one path: images/s per timed window, peak memory, host syncs per step."""

    img_per_s: list[float] = field(default_factory=list)
    img_per_cpu_s: list[float] = field(default_factory=list)  # per second of process CPU time
    peak_memory_mb: float = 0.0
    host_syncs_per_step: int | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.img_per_s) if self.img_per_s else float("nan")

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.img_per_cpu_s) if self.img_per_cpu_s else float("nan")


# ----------------------------------------------------------------------------- config
def compose_config(case: Case, output_dir: Path, num_images: int) -> DictConfig:
    """conf/train.yaml composed for `case`, writing into `output_dir` (the in-memory shapes data,
    `num_images` training images, no metric, no periodic outputs)."""
    overrides = [
        f"model={case.model}",
        "data=shapes",
        f"data.resolution={case.resolution}",
        f"data.num_images={num_images}",
        "data.num_val_images=16",
        f"trainer.accelerator={'gpu' if case.device == 'cuda' else 'cpu'}",
        "trainer.devices=1",
        f"trainer.precision={'32-true' if case.precision == '32' else case.precision}",
        "trainer.enable_model_summary=false",
        "+trainer.enable_progress_bar=false",
        "metric=none",
        "kimg=null",
        "callbacks.samples=null",
        "callbacks.checkpoint=null",
        "callbacks.progress=null",
        "logger=csv",
        f"model.compile={str(case.compile).lower()}",
    ]
    if case.batch is not None:
        overrides.append(f"data.batch_size={case.batch}")
        if case.model == "pggan":
            overrides.append("model.schedule.batch_size_dict=null")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, *case.overrides], return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        del cfg.hydra
    return cfg


# ----------------------------------------------------------------------------- measuring
def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def reset_peak_memory(device: str) -> None:
    """Start a new peak: CUDA allocator statistics, or the process's RSS high-water mark."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return
    with contextlib.suppress(OSError):  # Linux >= 4.0: "5" resets VmHWM to the current RSS
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory_mb(device: str) -> float:
    """Peak since `reset_peak_memory`: CUDA memory allocated, else the process's peak RSS (MiB)."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class SyncCounter:
    """Counts host-device synchronising ops (`.item()`, `bool(tensor)`, nonzero, ...) between
    `start()` and `stop()` with torch.profiler, leaving out those inside `Optimizer.step`: Adam
    reads its step counters, which live on the CPU (no device sync), with `.item()`."""

    def __init__(self) -> None:
        self.profiler: torch.profiler.profile | None = None

    def start(self) -> None:
        self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
        with muted_stderr():
            self.profiler.__enter__()

    def stop(self) -> int:
        profiler, self.profiler = self.profiler, None
        with muted_stderr():
            profiler.__exit__(None, None, None)
        return sum(1 for event in profiler.events()
                   if event.name in SYNC_OPS and not in_optimizer_step(event))


@contextlib.contextmanager
def muted_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (the profiler's C++ start / stop lines) for a moment."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def in_optimizer_step(event: Any) -> bool:
    """True if a profiler event ran inside an `Optimizer.step#...` region."""
    while event is not None:
        if event.name.startswith("Optimizer.step"):
            return True
        event = event.cpu_parent
    return False


class Clock:
    """Window marks after `warmup` iterations, every `steps` iterations; counts host syncs in
    the warm-up iterations after the first (none of them is a logging step)."""

    def __init__(self, timing: Timing, steps: int, device: str) -> None:
        self.warmup, self.steps, self.windows, self.device = (
            timing.warmup, steps, timing.windows, device)
        self.iteration = 0
        self.marks: list[tuple[float, float, int]] = []  # (wall, CPU time, images shown)
        self.syncs: list[int] = []
        self.counter = SyncCounter()
        self.peak_mb = 0.0

    @property
    def done(self) -> bool:
        return len(self.marks) > self.windows

    def before_step(self) -> None:
        if 1 <= self.iteration < self.warmup:
            self.counter.start()

    def after_step(self, nimg: int) -> None:
        if 1 <= self.iteration < self.warmup:
            self.syncs.append(self.counter.stop())
        self.iteration += 1
        since = self.iteration - self.warmup
        if since < 0 or since % self.steps:
            return
        synchronize(self.device)
        self.marks.append((time.perf_counter(), time.process_time(), nimg))
        if since == 0:
            reset_peak_memory(self.device)
        elif self.done:
            self.peak_mb = peak_memory_mb(self.device)

    def result(self) -> PathResult:
        pairs = list(zip(self.marks[:-1], self.marks[1:]))
        rates = [(n1 - n0) / (t1 - t0) for (t0, _, n0), (t1, _, n1) in pairs]
        cpu_rates = [(n1 - n0) / max(c1 - c0, 1e-9) for (_, c0, n0), (_, c1, n1) in pairs]
        return PathResult(rates, cpu_rates, self.peak_mb, max(self.syncs) if self.syncs else None)


class ClockCallback(pl.Callback):
    """Drives a Clock from Lightning's batch hooks and stops the fit after the last window."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.clock.before_step()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.clock.after_step(pl_module.nimg)
        if self.clock.done:
            trainer.should_stop = True


# ----------------------------------------------------------------------------- PGGAN phases
def phase_nimg(module: Any, side: int, fading: bool) -> int:
    """Images shown at the middle of PGGAN's stabilising at `side` (or its fade-in)."""
    schedule = module.schedule
    if side not in schedule.resolutions:
        raise ValueError(f"{side} px is not a stage of {schedule.resolutions}")
    index = schedule.resolutions.index(side)
    if fading:
        if index == 0:
            raise ValueError(f"{side} px is the start resolution: it does not fade in")
        _, fade_start, end = schedule.phases[index - 1]
        return (fade_start + end) // 2
    if index == len(schedule.phases):
        return schedule.growth_end_nimg
    start, fade_start, _ = schedule.phases[index]
    return (start + fade_start) // 2


def start_nimg(case: Case, module: Any) -> int:
    return 0 if case.phase is None else phase_nimg(module, *case.phase)


# ----------------------------------------------------------------------------- ganlab path
def run_ganlab(cfg: DictConfig, case: Case, timing: Timing, train_set: Any) -> PathResult:
    """ganlab's real path: `ganlab.run.build` + `Trainer.fit`, timed by a callback."""
    from ganlab.run import build

    pl.seed_everything(cfg.seed, verbose=False)
    with quiet_lightning():
        datamodule, module, trainer = build(cfg)
        datamodule.train_set = train_set  # rendered once per case; setup() keeps it
        module.nimg = start_nimg(case, module)
        clock = Clock(timing, timing.steps or cfg.trainer.log_every_n_steps, case.device)
        trainer.callbacks.append(ClockCallback(clock))
        trainer.fit(module, datamodule=datamodule)
    return clock.result()


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's start-up banners and warnings while a path runs."""
    names = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric")
    levels = {name: logging.getLogger(name).level for name in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            logging.getLogger(name).setLevel(logging.ERROR)
        try:
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)


# ----------------------------------------------------------------------------- plain path
def plain_step(module: Any, device: str, precision: str) -> Callable[[Tensor], None]:
    """One GAN iteration on reals [B, 3, r, r] in [-1, 1], written without any framework:
    the same math as GANModule.training_step (fakes once, D step, G step every n_critic, EMA
    over the images since its last update; not the lazy R1 phase nor PGGAN's EMA of a fading
    block, which the bench's configs leave off or which cost a copy per fade)."""
    from ganlab.models.base import ema_beta

    G, D, G_ema, loss = module.generator, module.discriminator, module.generator_ema, module.loss
    hp = module.hparams
    betas = tuple(hp.betas)
    opt_g = torch.optim.Adam(G.parameters(), lr=hp.lr_g, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=hp.lr_d, betas=betas)
    ema_params, params = list(G_ema.parameters()), list(G.parameters())
    ema_buffers, buffers = list(G_ema.buffers()), list(G.buffers())
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
    state = {"iteration": 0, "nimg": module.nimg, "ema_images": 0}

    def step(real: Tensor) -> None:
        batch = real.shape[0]
        train_g = (state["iteration"] + 1) % hp.n_critic == 0
        with autocast:
            with torch.set_grad_enabled(train_g):
                fake = G(torch.randn(batch, G.z_dim, device=device))
            d_loss, _ = loss.discriminator_step(D, real, fake.detach())
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            if train_g:
                D.requires_grad_(False)
                g_loss = loss.g_loss(D(fake))
                opt_g.zero_grad(set_to_none=True)
                g_loss.backward()
                opt_g.step()
                D.requires_grad_(True)
        state["iteration"] += 1
        state["nimg"] += batch
        state["ema_images"] += batch
        if train_g:
            with torch.no_grad():
                beta = ema_beta(state["ema_images"], hp.ema_kimg, hp.ema_rampup, state["nimg"])
                state["ema_images"] = 0
                torch._foreach_lerp_(ema_params, params, 1.0 - beta)
                if ema_buffers:
                    torch._foreach_copy_(ema_buffers, buffers)

    return step


def plain_reals(module: Any, images: Tensor, data_cfg: DictConfig, batch: int | None) -> Callable:
    """reals(nimg) -> a random batch [B, 3, r, r] in [-1, 1] of `images` (uint8, on the device)
    at the stage of `nimg`; for PGGAN it also sets the networks' stage and alpha, as the
    PGGAN module does."""
    from ganlab.data.base import fade_reals, random_hflip, resize, to_float

    schedule = getattr(module, "schedule", None)
    nets = (module.generator, module.discriminator, module.generator_ema)
    base_batch = batch or data_cfg.batch_size
    current = {"phase": None}

    def reals(nimg: int) -> Tensor:
        side, alpha, size = data_cfg.resolution, 1.0, base_batch
        if schedule is not None:
            phase = schedule.at(nimg)
            if phase != current["phase"]:
                for net in nets:
                    net.set_stage(phase.level, phase.alpha)
                current["phase"] = phase
            side, alpha = phase.resolution, phase.alpha
            size = batch or module.batch_size_dict.get(side, base_batch)
        index = torch.randint(images.shape[0], (size,), device=images.device)
        x = fade_reals(resize(to_float(images[index]), side, data_cfg.downsample), alpha)
        return random_hflip(x) if data_cfg.hflip else x

    return reals


def plain_module(cfg: DictConfig, case: Case, compile: bool | None = None) -> Any:
    """The variant's module from the config, only as a holder of G, D, EMA-G, loss and
    hyperparameters (nothing of Lightning runs); on the case's device, at its start phase."""
    pl.seed_everything(cfg.seed, verbose=False)
    module = instantiate(cfg.model) if compile is None else instantiate(cfg.model, compile=compile)
    module.to(case.device)
    module.nimg = start_nimg(case, module)
    return module


def run_plain(cfg: DictConfig, case: Case, timing: Timing, images: Tensor) -> PathResult:
    """The plain loop: reals indexed from `images` on the device, `plain_step` per iteration."""
    module = plain_module(cfg, case)
    reals = plain_reals(module, images, cfg.data, case.batch)
    step = plain_step(module, case.device, case.precision)
    clock = Clock(timing, timing.steps or cfg.trainer.log_every_n_steps, case.device)
    nimg = module.nimg
    while not clock.done:
        clock.before_step()
        real = reals(nimg)
        step(real)
        nimg += real.shape[0]
        clock.after_step(nimg)
    return clock.result()


# ----------------------------------------------------------------------------- FLOPs
class FlopCounter(TorchDispatchMode):
    """Sums the FLOPs of every op that torch.utils.flop_counter knows (convolutions, matmuls,
    attention; forward and backward). Its FlopCounterMode cannot be used here: its module
    tracker fails on `autograd.grad` of a leaf input, which gradient penalties do."""

    def __init__(self) -> None:
        super().__init__()
        from torch.utils.flop_counter import flop_registry

        self.registry, self.total = flop_registry, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = self.registry.get(func._overloadpacket)
        if count is not None:
            self.total += count(*args, **kwargs, out_val=out)
        return out


def flops_per_image(cfg: DictConfig, case: Case, images: Tensor) -> float:
    """Model FLOPs of one training iteration (G and D forward and backward, penalties with
    their double backward), per real image, counted on eager nets (no compile)."""
    module = plain_module(cfg, case, compile=False)
    real = plain_reals(module, images, cfg.data, case.batch)(module.nimg)
    step = plain_step(module, case.device, case.precision)
    with FlopCounter() as counter:
        step(real)
    return counter.total / real.shape[0]


# ----------------------------------------------------------------------------- one case
def bench_case(case: Case, timing: Timing, train_set: Any, workdir: Path) -> dict[str, Any]:
    """Both paths of one case, alternating over `timing.rounds`; returns the figures."""
    from ganlab.run import set_tf32

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
        "memory_kind": "cuda max_memory_allocated" if case.device == "cuda" else "process RSS",
        "host_syncs_per_step": ganlab.host_syncs_per_step,
        "gflop_per_image": round(flops / 1e9, 3),
        "ganlab_gflop_per_s": round(flops * ganlab.median / 1e9, 2),
    }


def stage_batch(cfg: DictConfig, case: Case, side: int) -> int:
    """Images per iteration at `side`: PGGAN's per-resolution batch, else data.batch_size."""
    sizes = cfg.model.get("schedule", {}).get("batch_size_dict") if case.model == "pggan" else None
    return int((sizes or {}).get(side, cfg.data.batch_size))


def render_train_set(case: Case, num_images: int) -> Any:
    """The shapes training images of a case (rendered once, shared by both paths; the
    datamodule's training seed for seed=0)."""
    from ganlab.data.base import ArrayImageDataset
    from ganlab.data.shapes import render_shapes

    return ArrayImageDataset(render_shapes(num_images, case.resolution, 0))


def pggan_phases(resolution: int, start: int = 4) -> list[tuple[int, bool]]:
    """(side, fading) of every PGGAN phase from `start` to `resolution`, in training order."""
    phases = [(start, False)]
    side = start * 2
    while side <= resolution:
        phases += [(side, True), (side, False)]
        side *= 2
    return phases


def cases_for(args: argparse.Namespace) -> list[Case]:
    """The cases the command line asks for (PGGAN: every phase, the headline being the fade-in
    of the final side)."""
    table = QUICK if args.quick else REFERENCE
    models = [args.model] if args.model else list(table)
    cases = []
    for model in models:
        resolution = args.resolution or table[model][0]
        batch = args.batch if args.batch is not None else table[model][1]
        overrides = []
        if args.device == "cpu":
            overrides += CPU_OVERRIDES.get(model, ())
        if args.quick:
            overrides += QUICK_OVERRIDES.get(model, ())
        base = Case(model, resolution, batch, args.device, args.precision, args.compile,
                    overrides=(*overrides, *args.overrides))
        if model != "pggan":
            cases.append(base)
        elif args.quick or args.no_stages:
            cases.append(replace(base, phase=(resolution, resolution > 4)))
        else:
            cases += [replace(base, phase=phase) for phase in pggan_phases(resolution)]
    return cases


# ----------------------------------------------------------------------------- extras
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
    """One FID evaluation timed by ganlab.bench_fid.time_evaluation."""
    from ganlab.bench_fid import time_evaluation

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
    defaults = Timing(warmup=2, steps=5, windows=2, rounds=1) if args.quick else Timing()
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
    if "loader" not in args.skip:
        result["loader"] = loader_figures(args.quick)
    if "fid" not in args.skip:
        result["fid"] = fid_figures(args.quick, args.device)
    result["machine"]["load_average_1min_end"] = os.getloadavg()[0]
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ganlab.bench", description=__doc__.split("\n")[0],
        epilog="Arguments after `--` are Hydra overrides applied to every case.")
    parser.add_argument("--model", choices=["dcgan", "sagan", "pggan"],
                        help="one model (default: the three reference cases)")
    parser.add_argument("--resolution", type=int, help="data.resolution, px (PGGAN: final side)")
    parser.add_argument("--batch", type=int, help="images per iteration (PGGAN default: the "
                                                  "schedule's per-resolution batch)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", choices=["32", "bf16-mixed"], default="32")
    parser.add_argument("--compile", action="store_true", help="model.compile=true")
    parser.add_argument("--quick", action="store_true", help="small sizes, short windows")
    parser.add_argument("--json", help="also write the figures to this file")
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
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (after --)")
    args = parser.parse_args(argv)
    for name, low in (("warmup", 2), ("windows", 1), ("rounds", 1), ("steps", 1)):
        value = getattr(args, name)
        if value is not None and value < low:
            parser.error(f"--{name} {value}: must be >= {low}")
    if args.resolution is not None and not (args.resolution >= 4 and
                                            math.log2(args.resolution).is_integer()):
        parser.error(f"--resolution {args.resolution}: a power of two >= 4 (DCGAN, SAGAN: >= 8)")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args)
    print()
    print(format_table(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return result


if __name__ == "__main__":
    main()
