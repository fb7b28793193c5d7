"""ganlab against the peers' own code at the peers' own architectures (issue 13, item 4).

    PYTHONPATH=$PWD python experiments/peers/bench_peers.py \\
        --sagan-repo /work/peers/sagan --pggan-repo /work/peers/pggan \\
        --json experiments/bench_peers.json            # the real run, ALONE on a quiet machine
    ... --quick                                         # a smoke test: tiny batches and widths

The peers (public repositories, never part of this project; extract them outside it, e.g.
`git --git-dir=DIR archive HEAD | tar -x -C /work/peers/NAME`):
- heykeetae/Self-Attention-GAN (commit 8714a54b): its Trainer (trainer.py) with its Generator /
  Discriminator (sagan_models.py), imsize 64, batch 64, z 128, g/d conv_dim 64, hinge loss,
  Adam (0, 0.9), TTUR 1e-4 / 4e-4. One timed step is one call of its own `Trainer.train()` with
  total_step=1 (its D step, with the fakes' graph kept as it does, then its G step on fresh
  latents); logging, sample images and checkpoints are pushed past the run. Reals: random
  images in [-1, 1] from memory (its DataLoader decodes CelebA: that would only slow it down).
- facebookresearch/pytorch_GAN_zoo (commit b75dee40): its ProgressiveGAN built as its
  ProgressiveGANTrainer.initModel does from its default PGAN config (pgan_config.py:
  depthScales 512 up to 32 px, z 512, WGAN-GP lambda 10 + epsilon 0.001, minibatch stddev,
  equalised lr, pixel norm, Adam (0, 0.99) lr 1e-3, EMA 0.999), grown to 32 px with
  addScale, alpha 0.5 (mid-fade), batch 16. One timed step is its trainer's per-batch work:
  `ProgressiveGANTrainer.inScaleUpdate` (the fade of the reals) + `optimizeParameters`.

ganlab runs the same architectures through `ganlab.bench`'s real path (`run_ganlab`: run.build +
Trainer.fit, in-memory shapes data, CSV logging at the default interval):
- SAGAN-64, batch 64, z 128, attention at G 16 + 32 px and D 8 + 4 px (heykeetae's layout),
  width 32 (= 64 channels at 32 px, heykeetae's conv_dim 64; 512 at 4 px). ganlab's nets are
  the SNGAN "standard CNN" (a linear stem, a 3x3 to-RGB conv at 64 px; heykeetae: a 4x4
  transposed conv from z and a transposed conv to RGB), and ganlab keeps its defaults: the G
  step reuses the D step's fakes (model.regenerate_fakes=false), an EMA generator.
- PGGAN 32 px, fading in (alpha 0.5), batch 16, the paper's widths (512 up to 32 px), z 512,
  WGAN-GP + drift 0.001, minibatch stddev (group 4), equalised lr, pixel norm.

Windows alternate in every round: ganlab float32, the peer, then (in the first --fast-rounds
rounds) ganlab with each fast-path switch: bf16-mixed autocast, model.channels_last,
model.adam_impl=foreach, =fused, and all of them together (bf16 + channels_last + fused).
Windows: 2 warm-up steps, then SAGAN 5 steps, PGGAN 2 steps; 3 rounds; the fast-path variants
in 2 (SAGAN) / 1 (PGGAN) of them. SAGAN's attention is SDPA (ganlab's default,
nets.layers.SelfAttention(use_sdpa=True)) in every column. Figures: the median window's
img/s; `ratio` = ganlab float32 / peer (medians); `paired` = the median of the per-round
ratios. Everything runs in one process, float32 unless the column says otherwise.

Patches to the peers' code (applied in memory at import time, never written to their files;
PATCHES below; the script prints them):
- Self-Attention-GAN trainer.py `.data[0]` -> `.item()`: torch >= 0.5 rejects indexing a 0-dim
  tensor (IndexError). Only its log line uses it, which the timed steps never reach.
- Self-Attention-GAN trainer.py `.cuda()` -> `.to(DEVICE)`: only because this machine has no
  GPU (`.cuda()` raises); on a GPU DEVICE is "cuda" and the line is unchanged in effect.
- pytorch_GAN_zoo models/progressive_gan.py `betas=[0, 0.99]` -> `betas=[0.0, 0.99]` (both
  optimizers): today's torch.optim.Adam rejects an int and a float ("betas must be either both
  floats or both Tensors").
- pytorch_GAN_zoo models/progressive_gan.py `self.avgG.module.setNewAlpha(newAlpha)` ->
  `self.getOriginalAvgG().setNewAlpha(newAlpha)`: only because this machine has no GPU (its
  EMA generator is wrapped in DataParallel only on a GPU; on a CPU updateAlpha raises
  AttributeError); on a GPU the two lines do the same.
- pytorch_GAN_zoo: its trainer package imports h5py (HDF5 datasets, unused here, not
  installed): an empty `h5py` module stands in for that import (no code changed).
Deprecated calls that today's torch still accepts are left alone (pytorch_GAN_zoo's
`add_(0.001, p.data)` and `F.upsample`: warnings only; `torch.autograd.Variable`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import importlib.util
import io
import os
import statistics
import subprocess
import sys
import tempfile
import types
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ganlab.bench.cases import Case, PathResult, Timing, compose_config, render_train_set
from ganlab.bench.cli import machine, prepare_process, write_json
from ganlab.bench.counters import Clock
from ganlab.bench.paths import run_ganlab

# (peer, file, old, new, why): text replacements made in memory before the module is executed
PATCHES = [
    ("sagan", "trainer.py", ".data[0]", ".item()",
     "torch >= 0.5 rejects indexing a 0-dim tensor (IndexError); its log line only"),
    ("sagan", "trainer.py", ".cuda()", ".to(DEVICE)",
     "CPU-only machine: .cuda() raises without a GPU (DEVICE = the bench's device)"),
    ("pggan", "models/progressive_gan.py", "betas=[0, 0.99]", "betas=[0.0, 0.99]",
     "today's torch (2.14 here) rejects Adam betas of mixed int / float (ValueError: betas "
     "must be either both floats or both Tensors); both optimizers"),
    ("pggan", "models/progressive_gan.py", "self.avgG.module.setNewAlpha(newAlpha)",
     "self.getOriginalAvgG().setNewAlpha(newAlpha)",
     "CPU only: the EMA generator is wrapped in DataParallel (.module) only on a GPU, so "
     "updateAlpha raises AttributeError on a CPU; on a GPU both lines do the same"),
]
IMPORT_STUBS = [("pggan", "h5py", "its trainer package imports h5py (HDF5 datasets, unused "
                 "here, not installed): an empty module stands in")]
TARGETS = {"sagan": 1.5, "pggan": 1.3}  # ganlab / peer in float32 (issue 13)
FAST = {  # fast-path switch -> (precision, extra Hydra overrides)
    "bf16": ("bf16-mixed", ()),
    "channels_last": ("32", ("model.channels_last=true",)),
    "foreach": ("32", ("model.adam_impl=foreach",)),
    "fused": ("32", ("model.adam_impl=fused",)),
    "all": ("bf16-mixed", ("model.channels_last=true", "model.adam_impl=fused")),
}


@dataclass(frozen=True)
class PeerCase:
    """One peer architecture: its ganlab Case, timing (fp32 and the peer: `timing.rounds`
    rounds; the fast-path variants: the first `fast_rounds` of them) and the peer's build
    arguments."""

    name: str
    case: Case
    timing: Timing
    fast_rounds: int
    peer: dict[str, Any]


def peer_cases(args: argparse.Namespace, device: str) -> list[PeerCase]:
    """SAGAN-64 (heykeetae) and PGGAN 32 px mid-fade (pytorch_GAN_zoo); --quick: tiny."""
    quick = args.quick
    sagan_batch = 4 if quick else 64
    sagan = Case("sagan", 64, sagan_batch, device, "32", overrides=(
        "model.generator.attention=[16,32]", "model.discriminator.attention=[8,4]",
        "model.generator.width=32", "model.discriminator.width=32", "model.generator.z_dim=128"))
    width, z_dim, pggan_batch = (32, 64, 4) if quick else (512, 512, 16)
    pggan = Case("pggan", 32, pggan_batch, device, "32", phase=(32, True), overrides=(
        f"model.generator.width={width}", f"model.discriminator.width={width}",
        f"model.generator.z_dim={z_dim}"))
    slow = Timing(warmup=2, steps=1, windows=1, rounds=1) if quick else None
    cases = [
        PeerCase("sagan", sagan, slow or Timing(warmup=2, steps=5, windows=1, rounds=3), 2,
                 {"batch": sagan_batch}),
        PeerCase("pggan", pggan, slow or Timing(warmup=2, steps=2, windows=1, rounds=3), 1,
                 {"batch": pggan_batch, "depth": width, "z_dim": z_dim, "alpha": 0.5}),
    ]
    if args.fast_rounds:
        cases = [replace(c, fast_rounds=args.fast_rounds) for c in cases]
    if args.rounds:
        cases = [replace(c, timing=replace(c.timing, rounds=args.rounds)) for c in cases]
    if args.steps:
        cases = [replace(c, timing=replace(c.timing, steps=args.steps)) for c in cases]
    return [c for c in cases if c.name in args.cases]


# ----------------------------------------------------------------------------- peers' code
class PatchedLoader(importlib.abc.Loader):
    """Executes a peer's source file with its PATCHES applied in memory (the file and any
    cached bytecode stay as they are)."""

    def __init__(self, path: Path, peer: str, relpath: str, extra: dict[str, Any]) -> None:
        self.path, self.peer, self.relpath, self.extra = path, peer, relpath, extra

    def create_module(self, spec: Any) -> None:
        return None  # the default module

    def exec_module(self, module: types.ModuleType) -> None:
        source = self.path.read_text()
        for peer, filename, old, new, _ in PATCHES:
            if peer == self.peer and filename == self.relpath:
                if old not in source:
                    raise SystemExit(f"patch {old!r} -> {new!r}: not found in {self.path}")
                source = source.replace(old, new)
        module.__dict__.update(self.extra)
        exec(compile(source, str(self.path), "exec"), module.__dict__)


@contextlib.contextmanager
def peer_imports(repo: Path, peer: str, extra: dict[str, Any] | None = None) -> Iterator[None]:
    """Inside: `repo` is importable and its PATCHES files import patched (module names from
    their paths: trainer.py -> trainer, models/progressive_gan.py -> models.progressive_gan)."""
    files = {rel[:-3].replace("/", "."): rel for p, rel, *_ in PATCHES if p == peer}

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
            if name not in files:
                return None
            loader = PatchedLoader(repo / files[name], peer, files[name], extra or {})
            return importlib.util.spec_from_file_location(name, repo / files[name], loader=loader)

    finder = Finder()
    sys.path.insert(0, str(repo))
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        sys.path.remove(str(repo))


def synthetic_images(count: int, side: int) -> torch.Tensor:
    """Random images [count, 3, side, side] in [-1, 1] (CPU), the peers' training data."""
    return torch.rand(count, 3, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1


class Batches:
    """A stand-in for the peers' DataLoader: endless (images [B, 3, r, r] in [-1, 1], labels)
    batches drawn at random from images held in memory."""

    def __init__(self, images: torch.Tensor, batch: int) -> None:
        self.images, self.batch = images, batch

    def __len__(self) -> int:
        return 10**9

    def __iter__(self):
        while True:
            index = torch.randint(len(self.images), (self.batch,))
            yield self.images[index], torch.zeros(self.batch, dtype=torch.long)


class SaganPeer:
    """heykeetae's Trainer at imsize 64; `step()` is one call of its train() loop body."""

    def __init__(self, repo: Path, device: str, batch: int, workdir: Path) -> None:
        with peer_imports(repo, "sagan", {"DEVICE": torch.device(device)}):
            import trainer  # patched; sagan_models, spectral, utils as they are
        config = types.SimpleNamespace(
            model="sagan", adv_loss="hinge", imsize=64, g_num=5, z_dim=128, g_conv_dim=64,
            d_conv_dim=64, parallel=False, lambda_gp=10.0, total_step=1, d_iters=5,
            batch_size=batch, num_workers=0, g_lr=1e-4, d_lr=4e-4, lr_decay=0.95, beta1=0.0,
            beta2=0.9, pretrained_model=None, dataset="celeb", use_tensorboard=False,
            image_path=str(workdir), log_path=str(workdir), model_save_path=str(workdir),
            sample_path=str(workdir), attn_path=str(workdir), version="bench",
            log_step=10**9, sample_step=10**9, model_save_step=1e9)  # never while timing
        loader = Batches(synthetic_images(256, 64), batch)
        with contextlib.redirect_stdout(io.StringIO()):  # it prints G and D
            self.trainer = trainer.Trainer(loader, config)
        self.batch = batch

    def step(self) -> int:
        self.trainer.train()  # total_step=1: one D step and one G step
        return self.batch


class PgganPeer:
    """pytorch_GAN_zoo's ProgressiveGAN grown to 32 px at a fixed alpha; `step()` is its
    trainer's per-batch work (inScaleUpdate + optimizeParameters)."""

    def __init__(self, repo: Path, device: str, batch: int, depth: int, z_dim: int,
                 alpha: float) -> None:
        sys.modules.setdefault("h5py", types.ModuleType("h5py"))  # IMPORT_STUBS
        with peer_imports(repo, "pggan"):
            from models.progressive_gan import ProgressiveGAN  # patched
            from models.trainer.progressive_gan_trainer import ProgressiveGANTrainer
            from models.trainer.standard_configurations.pgan_config import _C
        config = dict(vars(_C))  # as ProgressiveGANTrainer.initModel
        depths = [min(d, depth) for d in config["depthScales"]]
        config.update(depthScales=depths, depthScale0=depths[0], dimLatentVector=z_dim,
                      miniBatchSize=batch)
        with contextlib.redirect_stdout(io.StringIO()):  # updateAlpha prints
            model = ProgressiveGAN(useGPU=device == "cuda", **config)
            for scale in (1, 2, 3):  # 4 -> 8 -> 16 -> 32 px
                model.addScale(depths[scale])
            model.updateAlpha(alpha)
        self.model, self.batch, self.scale = model, batch, 3
        # inScaleUpdate's state: past the last alpha jump, so it only fades the reals
        self.trainer = types.SimpleNamespace(
            model=model, indexJumpAlpha=1,
            modelConfig=types.SimpleNamespace(iterAlphaJump=[[0]] * 4))
        self.in_scale_update = ProgressiveGANTrainer.inScaleUpdate
        self.loader = iter(Batches(synthetic_images(256, 32), batch))
        self.iteration = 0

    def step(self) -> int:
        reals, labels = next(self.loader)
        reals = self.in_scale_update(self.trainer, self.iteration, self.scale, reals)
        self.model.optimizeParameters(reals, inputLabels=labels)
        self.iteration += 1
        return self.batch


def time_peer(step: Callable[[], int], timing: Timing, device: str) -> PathResult:
    """Windows of a peer's steps, marked by ganlab.bench's Clock (warm-up, then windows)."""
    clock = Clock(timing, timing.steps, device)
    nimg = 0
    while not clock.done:
        clock.before_step()
        nimg += step()
        clock.after_step(nimg)
    return clock.result()


# ----------------------------------------------------------------------------- running
def variants(case: Case, fast: list[str]) -> dict[str, Case]:
    """ganlab float32 and its fast-path variants of `case`."""
    out = {"fp32": case}
    for name in fast:
        precision, overrides = FAST[name]
        out[name] = replace(case, precision=precision, overrides=(*case.overrides, *overrides))
    return out


def bench_peer_case(pc: PeerCase, peer: Any, fast: list[str], device: str) -> dict[str, Any]:
    """Every round: ganlab fp32, the peer, then each fast-path variant of ganlab."""
    from ganlab.run import set_tf32

    train_set = render_train_set(pc.case, 512)
    paths = variants(pc.case, fast)
    results = {name: PathResult() for name in (*paths, "peer")}
    with tempfile.TemporaryDirectory(prefix="ganlab-peers-") as tmp:
        for round_index in range(pc.timing.rounds):
            for name in ["fp32", "peer", *(fast if round_index < pc.fast_rounds else [])]:
                if name == "peer":
                    measured = time_peer(peer.step, pc.timing, device)
                else:
                    cfg = compose_config(paths[name], Path(tmp) / name, len(train_set))
                    set_tf32(cfg.get("tf32"))
                    measured = run_ganlab(cfg, paths[name], pc.timing, train_set)
                results[name].img_per_s += measured.img_per_s
                if measured.host_syncs_per_step is not None:
                    results[name].host_syncs_per_step = measured.host_syncs_per_step
                print(f"  {pc.name} round {round_index + 1}/{pc.timing.rounds} {name:<13} "
                      + " ".join(f"{v:.2f}" for v in measured.img_per_s) + " img/s", flush=True)
    fp32, peer_result = results["fp32"], results["peer"]
    row = {
        "case": pc.name,
        "batch": pc.case.batch,
        "overrides": list(pc.case.overrides),
        "timing": asdict(pc.timing),
        "fast_rounds": min(pc.fast_rounds, pc.timing.rounds),
        "peer_img_per_s": round(peer_result.median, 3),
        "ganlab_fp32_img_per_s": round(fp32.median, 3),
        "ratio": round(fp32.median / peer_result.median, 3),
        "ratio_paired": round(statistics.median(
            g / p for g, p in zip(fp32.img_per_s, peer_result.img_per_s)), 3),
        "target": TARGETS[pc.name],
        "peer_syncs_per_step": peer_result.host_syncs_per_step,
        "ganlab_syncs_per_step": fp32.host_syncs_per_step,
        "windows": {name: [round(v, 3) for v in r.img_per_s] for name, r in results.items()},
        "fast": {name: {"img_per_s": round(results[name].median, 3),
                        "vs_fp32": round(results[name].median / fp32.median, 3),
                        "vs_peer": round(results[name].median / peer_result.median, 3),
                        "precision": paths[name].precision,
                        "overrides": list(paths[name].overrides[len(pc.case.overrides):])}
                 for name in fast},
    }
    return row


def build_peer(pc: PeerCase, args: argparse.Namespace, device: str, workdir: Path) -> Any:
    if pc.name == "sagan":
        return SaganPeer(Path(args.sagan_repo), device, pc.peer["batch"], workdir)
    return PgganPeer(Path(args.pggan_repo), device, **pc.peer)


def cpu_flags() -> dict[str, bool]:
    """The CPU features that matter for bf16: AVX-512 BF16 and AMX (Linux /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines()
                      if line.startswith("flags")), []))
    return {name: name in flags for name in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile")}


def bf16_note(flags: dict[str, bool]) -> str:
    """Which bf16 instructions this CPU has (what bf16-mixed runs on)."""
    units = "AMX tiles" if flags.get("amx_bf16") else (
        "AVX-512 BF16" if flags.get("avx512_bf16") else "no bf16 instructions (emulated)")
    return (f"CPU: avx512_bf16 {'yes' if flags.get('avx512_bf16') else 'no'}, AMX "
            f"{'yes' if flags.get('amx_bf16') else 'no'}: bf16-mixed runs on {units}")


def repo_commit(repo: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True,
                             text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None  # an extracted archive has no .git


# ----------------------------------------------------------------------------- output
def format_table(rows: list[dict[str, Any]], fast: list[str]) -> str:
    head = (f"{'case':<7} {'batch':>5} {'peer img/s':>11} {'ganlab fp32':>11} {'ratio':>6} "
            f"{'paired':>6} {'target':>6}")
    head += "".join(f" {name:>16}" for name in fast)
    lines = [head, "-" * len(head)]
    for row in rows:
        line = (f"{row['case']:<7} {row['batch']:>5} {row['peer_img_per_s']:>11.3f} "
                f"{row['ganlab_fp32_img_per_s']:>11.3f} {row['ratio']:>6.3f} "
                f"{row['ratio_paired']:>6.3f} {row['target']:>6}")
        for name in fast:
            f = row["fast"][name]
            line += f" {f['img_per_s']:>8.3f} ({f['vs_fp32']:.2f}x)"
        lines.append(line)
    lines.append("ratio: ganlab fp32 / peer img/s; fast-path columns: ganlab img/s (x its fp32); "
                 + "; ".join(f"{n} = {FAST[n][0]} {' '.join(FAST[n][1])}".strip() for n in fast))
    return "\n".join(lines)


def describe_patches() -> list[str]:
    lines = [f"{peer} {file}: {old!r} -> {new!r} ({why})" for peer, file, old, new, why in PATCHES]
    lines += [f"{peer}: import stub {name} ({why})" for peer, name, why in IMPORT_STUBS]
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sagan-repo", required=True, help="heykeetae/Self-Attention-GAN")
    parser.add_argument("--pggan-repo", required=True, help="facebookresearch/pytorch_GAN_zoo")
    parser.add_argument("--cases", nargs="+", choices=["sagan", "pggan"],
                        default=["sagan", "pggan"])
    parser.add_argument("--fast", nargs="*", choices=list(FAST), default=list(FAST),
                        help="fast-path variants of ganlab (default: all; none: `--fast`)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: SAGAN batch 4, PGGAN width 32 batch 4, 1 step windows")
    parser.add_argument("--rounds", type=int, help="alternations (SAGAN, PGGAN: 3; quick: 1)")
    parser.add_argument("--steps", type=int, help="steps per window (SAGAN 5, PGGAN 2)")
    parser.add_argument("--fast-rounds", type=int,
                        help="rounds that also time the fast-path variants (SAGAN 2, PGGAN 1)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    for name in ("rounds", "steps", "fast_rounds"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: must be >= 1")
    for key in ("sagan_repo", "pggan_repo"):
        if not Path(getattr(args, key)).is_dir():
            parser.error(f"--{key.replace('_', '-')} {getattr(args, key)}: not a directory")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    prepare_process(args.threads)  # ganlab.run's allocator setting: the peers get it too
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible")
    warnings.filterwarnings("ignore", category=UserWarning)  # the peers' deprecated calls
    flags = cpu_flags()
    print("patches to the peers' code (in memory):", *describe_patches(), sep="\n  ")
    print(bf16_note(flags), flush=True)
    result: dict[str, Any] = {
        "machine": {**machine(), "cpu_flags": flags, "bf16": bf16_note(flags)},
        "peers": {"sagan": {"repo": args.sagan_repo, "commit": repo_commit(args.sagan_repo)},
                  "pggan": {"repo": args.pggan_repo, "commit": repo_commit(args.pggan_repo)}},
        "patches": describe_patches(), "quick": args.quick, "rows": [],
    }
    with tempfile.TemporaryDirectory(prefix="peer-") as workdir:
        for pc in peer_cases(args, args.device):
            peer = build_peer(pc, args, args.device, Path(workdir))
            result["rows"].append(bench_peer_case(pc, peer, args.fast, args.device))
            del peer
    result["machine"]["load_average_1min_end"] = os.getloadavg()[0]
    print()
    print(format_table(result["rows"], args.fast))
    write_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
