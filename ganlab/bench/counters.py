"""What the bench counts: windows of images per second (Clock), peak memory, host syncs, FLOPs."""


from __future__ import annotations

import contextlib
import os
import resource
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from ganlab.bench.cases import PathResult, Timing

# dense peak TFLOP/s by card (datasheets, SXM parts, no sparsity): bf16 tensor cores, TF32, FP32
PEAK_TFLOPS = {
    "H200": {"bf16-mixed": 989.0, "tf32": 494.0, "32": 67.0},
    "H100": {"bf16-mixed": 989.0, "tf32": 494.0, "32": 67.0},
    "A100": {"bf16-mixed": 312.0, "tf32": 156.0, "32": 19.5},
    "L4": {"bf16-mixed": 121.0, "tf32": 60.0, "32": 30.3},
}


def peak_tflops(device_name: str, precision: str, tf32: bool) -> float | None:
    """The card's dense peak for `precision` ("32" uses TF32's if `tf32`), None if unknown."""
    for card, peaks in PEAK_TFLOPS.items():
        if card in device_name:
            return peaks["tf32" if precision == "32" and tf32 else precision]
    return None


SYNC_OPS = ("aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select")

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


class DeviceToHostCounter(TorchDispatchMode):
    """Counts copies from an accelerator tensor to a CPU tensor (`.cpu()`, `.to("cpu")`,
    `cpu_tensor.copy_(cuda_tensor)`): device-to-host transfers that the profiler's op names
    alone do not tell apart from host-to-device ones."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func._overloadpacket.__name__
        if name in ("_to_copy", "copy_") and len(args) >= 1:
            source = args[1] if name == "copy_" else args[0]
            target = args[0] if name == "copy_" else out
            if (isinstance(source, Tensor) and isinstance(target, Tensor)
                    and source.device.type != "cpu" and target.device.type == "cpu"):
                self.count += 1
        return out


class SyncCounter:
    """Counts host-device synchronising ops (`.item()`, `bool(tensor)`, nonzero, ...) between
    `start()` and `stop()` with torch.profiler, leaving out those inside `Optimizer.step`: Adam
    reads its step counters, which live on the CPU (no device sync), with `.item()`. On an
    accelerator it also counts device-to-host copies (`DeviceToHostCounter`); on the CPU there
    are none to count."""

    def __init__(self, device: str = "cpu") -> None:
        self.profiler: torch.profiler.profile | None = None
        self.copies: DeviceToHostCounter | None = None
        self.device = device

    def start(self) -> None:
        self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
        with muted_stderr():
            self.profiler.__enter__()
        if self.device != "cpu":
            self.copies = DeviceToHostCounter().__enter__()

    def stop(self) -> int:
        copies, self.copies = self.copies, None
        if copies is not None:
            copies.__exit__(None, None, None)
        profiler, self.profiler = self.profiler, None
        with muted_stderr():
            profiler.__exit__(None, None, None)
        syncs = sum(1 for event in profiler.events()
                    if event.name in SYNC_OPS and not in_optimizer_step(event))
        return syncs + (copies.count if copies is not None else 0)


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
        self.counter = SyncCounter(device)
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
