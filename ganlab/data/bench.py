"""Loader benchmark: images/s of the cached path vs the decode-every-time path.

    python -m ganlab.data.bench                     # synthetic CelebA-like JPEGs, 64 px
    python -m ganlab.data.bench --root ~/data/celeba --num-images 20000 --json loader.json

Without --root it writes `--num-images` JPEGs of 178x218 (smooth content plus noise, about the
size of CelebA's files) into a temporary folder in the bare CelebA layout. Both paths run the
same DataLoader (shuffled batches, `--batch-size`); the figure is uint8 batches delivered to the
main process per second, after one warm-up batch. `loader_benchmark()` returns the dict.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader

# what the cached path must reach at 64 px: images/s, and its speed-up over decoding every step
TARGET_IMG_PER_S, TARGET_SPEEDUP = 10_000, 10.0


def write_fake_celeba(root: str | Path, num: int, seed: int = 0) -> Path:
    """`num` JPEGs of 178x218 (quality 90) in ROOT/img_align_celeba/ (the bare layout)."""
    folder = Path(root) / "img_align_celeba"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(1, num + 1):
        coarse = Image.fromarray((rng.random((11, 9, 3)) * 255).astype(np.uint8))
        smooth = np.asarray(coarse.resize((178, 218), Image.Resampling.BICUBIC), dtype=np.float32)
        noisy = np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"{index:06d}.jpg", quality=90)
    return Path(root)


def images_per_second(loader: DataLoader, seconds: float, min_batches: int = 5) -> float:
    """Images/s the loader delivers (re-iterating it as needed), after one warm-up batch."""
    iterator = iter(loader)
    next(iterator)
    count = batches = 0
    start = time.perf_counter()
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            continue
        count, batches = count + batch.shape[0], batches + 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and batches >= min_batches:
            del iterator
            return count / elapsed


def _datamodule(root: str, dataset: str, **kwargs):
    from ganlab.data.celeba import CelebADataModule
    from ganlab.data.folder import ImageFolderDataModule
    from ganlab.data.lsun import LSUNDataModule

    classes = {"celeba": CelebADataModule, "lsun_church": LSUNDataModule,
               "folder": ImageFolderDataModule}
    if dataset == "celeba":
        kwargs["train_split"] = "all"  # every image of the folder, whatever its partition
    return classes[dataset](root=root, **kwargs)


def loader_benchmark(
    root: str | None = None,
    dataset: str = "celeba",
    resolution: int = 64,
    num_images: int = 2000,
    batch_size: int = 256,
    num_workers: int = 0,
    decode_workers: int | None = None,
    seconds: float = 3.0,
    cache_dir: str | None = None,
) -> dict:
    """Measure the cached and the decode-every-time loader at `resolution`.

    root: dataset root (None: synthetic CelebA-like JPEGs in a temporary folder); num_images:
    training images used; num_workers: loader processes of the cached path; decode_workers:
    those of the decode path (None: all cores); cache_dir: None = a temporary folder.
    Returns a dict of the settings and the figures (images per second, speedup, cache build).
    """
    synthetic = root is None
    with tempfile.TemporaryDirectory(prefix="ganlab-bench-") as tmp:
        if synthetic:
            root = str(write_fake_celeba(Path(tmp) / "celeba", num_images))
        decode_workers = (os.cpu_count() or 1) if decode_workers is None else decode_workers
        common = dict(resolution=resolution, batch_size=batch_size, num_images=num_images,
                      cache_dir=cache_dir or os.path.join(tmp, "cache"), hflip=False)
        cached = _datamodule(root, dataset, num_workers=num_workers, **common)
        start = time.perf_counter()
        cached.train_set = cached.build_split("train")
        build_s = time.perf_counter() - start
        cached_rate = images_per_second(cached.train_dataloader(), seconds)

        decoded = _datamodule(root, dataset, num_workers=decode_workers, cache=False, **common)
        decoded.train_set = decoded.build_split("train")
        decode_rate = images_per_second(decoded.train_dataloader(), seconds)
    return {
        "dataset": "synthetic celeba" if synthetic else dataset,
        "resolution": resolution,
        "num_images": len(cached.train_set),
        "batch_size": batch_size,
        "cpu_count": os.cpu_count(),
        "cached_num_workers": num_workers,
        "decode_num_workers": decode_workers,
        "cached_img_per_s": round(cached_rate, 1),
        "decode_img_per_s": round(decode_rate, 1),
        "speedup": round(cached_rate / decode_rate, 1),
        "cache_build_s": round(build_s, 2),
        "cache_build_img_per_s": round(len(cached.train_set) / build_s, 1),
        "target_met": cached_rate >= TARGET_IMG_PER_S
        and cached_rate >= TARGET_SPEEDUP * decode_rate,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", help="dataset root (default: synthetic CelebA-like JPEGs)")
    parser.add_argument("--dataset", default="celeba", choices=["celeba", "lsun_church", "folder"])
    parser.add_argument("--resolution", type=int, default=64, help="px")
    parser.add_argument("--num-images", type=int, default=2000, help="training images used")
    parser.add_argument("--batch-size", type=int, default=256, help="images per batch")
    parser.add_argument("--workers", type=int, default=0, help="loader processes, cached path")
    parser.add_argument("--decode-workers", type=int, default=None,
                        help="loader processes, decode path (default: all cores)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per path")
    parser.add_argument("--cache-dir", help="cache folder (default: a temporary one)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    result = loader_benchmark(
        args.root, args.dataset, args.resolution, args.num_images, args.batch_size,
        args.workers, args.decode_workers, args.seconds, args.cache_dir,
    )
    print(f"loader at {result['resolution']} px, {result['num_images']} images, "
          f"batch {result['batch_size']}, {result['cpu_count']} cores")
    print(f"  cached (memmap, {result['cached_num_workers']} workers): "
          f"{result['cached_img_per_s']:>10,.0f} img/s")
    print(f"  decode every time ({result['decode_num_workers']} workers): "
          f"{result['decode_img_per_s']:>10,.0f} img/s")
    print(f"  speedup {result['speedup']}x; one-off cache build "
          f"{result['cache_build_img_per_s']:,.0f} img/s; target (>= {TARGET_IMG_PER_S:,} img/s "
          f"and >= {TARGET_SPEEDUP:.0f}x): {'met' if result['target_met'] else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
