"""The preprocessed image cache and the base class of every dataset read from encoded images.

On first use each split is decoded, cropped and resized once (in parallel, with a progress bar)
to the final resolution and stored as raw uint8 [N, 3, R, R] in `cache_dir`:

    NAME.u8    the images, C-contiguous, memory-mapped by later runs and every lower stage
    NAME.json  written last (the completion marker): shape, key, checksum, skipped files (their
           source indices in full, so labels can follow the kept images)

NAME = `{dataset}_{split}_crop{C|sq}_{R}px_{filter}_{hash}`; the hash covers the key (dataset,
split, crop, resolution, filter, image cap, cache format) and the source (root path and the
list of file names / LMDB keys, not their contents). The build writes `NAME.u8.tmp*` and
renames it; a cache whose marker is missing, whose key differs, whose size is wrong or whose
checksum (of the whole file up to 64 MiB, else of 64 sampled blocks) fails is rebuilt, never
used. A file lock serialises concurrent builders (DDP ranks, parallel runs).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import multiprocessing
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ganlab.data.base import ArrayImageDataset, ImageDataModule
from ganlab.data.images import (
    RESIZE_FILTERS,
    FileSource,
    LmdbSource,
    Preprocess,
    decode_range,
    decode_range_in_worker,
    hash_fraction,
    init_worker,
)
from ganlab.logs import get_logger
from ganlab.utils import ConfigError, check_int

log = get_logger(__name__)

CACHE_FORMAT = 1
FULL_CHECKSUM_BYTES = 64 << 20  # files up to this size are hashed whole
SAMPLE_BLOCKS, BLOCK_BYTES = 64, 64 << 10  # otherwise: this many blocks of this size
Source = FileSource | LmdbSource


def default_cache_dir() -> str:
    """$GANLAB_CACHE/data, else ~/.cache/ganlab/data (the same place conf/paths uses)."""
    base = os.environ.get("GANLAB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache/ganlab")
    return os.path.join(base, "data")


# ----------------------------------------------------------------------------- memory-mapped set
class MemmapImageDataset(ArrayImageDataset):
    """ArrayImageDataset over a raw uint8 file [N, 3, R, R]; pickles as (path, shape), so loader
    workers re-open the map instead of copying the images."""

    def __init__(self, path: str | Path, shape: tuple[int, int, int, int]) -> None:
        self.path, self.shape = str(path), tuple(int(s) for s in shape)
        super().__init__(np.memmap(self.path, dtype=np.uint8, mode="r", shape=self.shape))

    def __getstate__(self) -> dict:
        return {"path": self.path, "shape": self.shape}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["shape"])


class DecodedImageDataset(Dataset):
    """The decode-every-time path (`data.cache=false`): each access reads, decodes, crops and
    resizes one image -> uint8 [3, R, R]. An unreadable item is replaced by the next readable
    one (counted in `num_bad`), so training never stops on one bad file."""

    def __init__(self, source: Source, preprocess: Preprocess) -> None:
        self.source, self.preprocess, self.num_bad = source, preprocess, 0

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> Tensor:
        for attempt in range(min(len(self.source), 100)):
            item = (index + attempt) % len(self.source)
            try:
                image, _ = self.preprocess(self.source.read(item))
                return torch.from_numpy(image)
            except Exception as error:  # noqa: BLE001 - skip any unreadable item
                self.num_bad += 1
                if self.num_bad == 1:
                    log.warning("skipping unreadable image %s: %s", self.source.name(item), error)
        raise RuntimeError(f"100 consecutive unreadable images from {self.source.name(index)}")


# ----------------------------------------------------------------------------- the cache files
def cache_key(dataset: str, split: str, preprocess: Preprocess, source: Source) -> dict:
    """What a cache holds; two builds with equal keys hold the same images."""
    return {
        "format": CACHE_FORMAT,
        "dataset": dataset,
        "split": split,
        "crop": preprocess.crop,
        "resolution": preprocess.resolution,
        "filter": preprocess.filter,
        "num_source": len(source),
        "source": source.fingerprint(),
    }


def cache_name(key: dict) -> str:
    digest = hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=5).hexdigest()
    crop = "sq" if key["crop"] is None else key["crop"]
    size, resize = key["resolution"], key["filter"]
    return f"{key['dataset']}_{key['split']}_crop{crop}_{size}px_{resize}_{digest}"


def file_checksum(path: str | Path) -> str:
    """blake2b of the whole file (<= 64 MiB) or of 64 evenly spaced 64 KiB blocks and the size."""
    size = os.path.getsize(path)
    digest = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as f:
        if size <= FULL_CHECKSUM_BYTES:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        else:
            for k in range(SAMPLE_BLOCKS):
                f.seek((size - BLOCK_BYTES) * k // (SAMPLE_BLOCKS - 1))
                digest.update(f.read(BLOCK_BYTES))
    return digest.hexdigest()


def _paths(cache_dir: str | Path, key: dict) -> tuple[Path, Path]:
    base = Path(cache_dir) / cache_name(key)
    return base.with_suffix(".u8"), base.with_suffix(".json")


def open_cache(
    cache_dir: str | Path, key: dict, need_skipped: bool = False
) -> tuple[MemmapImageDataset, dict] | None:
    """The cached images for `key` and their metadata, or None (logging why) if the cache is
    absent, partial or corrupt; `need_skipped`: also if it skipped images without listing them
    all (built before the list was kept; labels need it)."""
    data_path, meta_path = _paths(cache_dir, key)
    if not meta_path.is_file():
        if data_path.exists():
            log.warning("cache %s has no completion marker (interrupted build): rebuilding",
                        data_path)
        return None
    try:
        meta = json.loads(meta_path.read_text())
        shape = tuple(meta["shape"])
        problem = None
        if meta.get("key") != key:
            problem = "its key differs"
        elif not data_path.is_file() or data_path.stat().st_size != math.prod(shape):
            problem = f"its size is not {math.prod(shape)} bytes"
        elif file_checksum(data_path) != meta.get("checksum"):
            problem = "its checksum does not match"
        elif need_skipped and meta.get("num_bad") and "skipped" not in meta:
            problem = "it does not list the images it skipped, which labels need"
    except (OSError, ValueError, KeyError, TypeError) as error:
        problem = f"its metadata cannot be read ({error})"
    if problem is not None:
        log.warning("cache %s is corrupt (%s): rebuilding", data_path, problem)
        return None
    return MemmapImageDataset(data_path, shape), meta


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _spans(total: int, resolution: int, workers: int) -> list[tuple[int, int]]:
    by_memory = max(1, (16 << 20) // (3 * resolution * resolution))  # <= 16 MiB per chunk
    size = int(np.clip(math.ceil(total / max(1, workers * 8)), 1, min(256, by_memory)))
    return [(start, min(start + size, total)) for start in range(0, total, size)]


def _decode_all(source: Source, preprocess: Preprocess, workers: int) -> Iterator[tuple]:
    spans = _spans(len(source), preprocess.resolution, workers)
    if workers == 0:
        for span in spans:
            yield decode_range(source, preprocess, *span)
        return
    methods = multiprocessing.get_all_start_methods()  # fork: workers need not re-import torch
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with context.Pool(workers, initializer=init_worker, initargs=(source, preprocess)) as pool:
        yield from pool.imap(decode_range_in_worker, spans)


def build_cache(
    cache_dir: str | Path,
    key: dict,
    source: Source,
    preprocess: Preprocess,
    workers: int = 0,
    max_bad_fraction: float = 0.01,
    what: str = "images",
) -> dict:
    """Decode every item of `source` once into the cache for `key`; returns its metadata.

    Unreadable items are skipped and counted; more than `max_bad_fraction` of them raises
    ConfigError (nothing is kept). The images land in a temporary file renamed into place, then
    the metadata (the completion marker) is written the same way.
    """
    from tqdm.auto import tqdm

    data_path, meta_path = _paths(cache_dir, key)
    meta_path.unlink(missing_ok=True)
    tmp = data_path.with_name(f"{data_path.name}.tmp{os.getpid()}")
    total, count, bad, upscaled, skipped = len(source), 0, [], [], []
    limit = max_bad_fraction * total
    try:
        with open(tmp, "wb") as out, tqdm(
            total=total, unit="img", desc=f"caching {what}", mininterval=1.0, leave=False
        ) as bar:
            for _, images, bad_items, upscaled_items in _decode_all(source, preprocess, workers):
                out.write(images.tobytes())
                count += len(images)
                bad += [(source.name(i), reason) for i, reason in bad_items]
                skipped += [i for i, _ in bad_items]
                upscaled += [source.name(i) for i in upscaled_items]
                bar.update(len(images) + len(bad_items))
                if len(bad) > limit:
                    raise ConfigError(_too_many_bad(what, bad, total, max_bad_fraction))
            if count == 0:
                raise ConfigError(_too_many_bad(what, bad, total, max_bad_fraction))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, data_path)
    finally:
        tmp.unlink(missing_ok=True)
    meta = {
        "key": key,
        "shape": [count, 3, preprocess.resolution, preprocess.resolution],
        "checksum": file_checksum(data_path),
        "num_bad": len(bad),
        "bad": bad[:20],
        "skipped": skipped,  # source indices of every skipped image
        "num_upscaled": len(upscaled),
        "upscaled": upscaled[:20],
    }
    meta_tmp = meta_path.with_name(f"{meta_path.name}.tmp{os.getpid()}")
    meta_tmp.write_text(json.dumps(meta, indent=1))
    os.replace(meta_tmp, meta_path)
    _report(what, meta, total, preprocess)
    return meta


def _too_many_bad(
    what: str, bad: list, total: int, max_bad_fraction: float, num_bad: int | None = None
) -> str:
    examples = "; ".join(f"{name} ({reason})" for name, reason in bad[:5])
    return (
        f"{what}: {num_bad or len(bad)} of {total} images cannot be read, more than "
        f"data.max_bad_fraction={max_bad_fraction} of them; e.g. {examples}. Check that the "
        f"dataset is complete and uncorrupted (re-extract it), or raise data.max_bad_fraction."
    )


def _report(what: str, meta: dict, total: int, preprocess: Preprocess) -> None:
    if meta["num_bad"]:
        examples = ", ".join(f"{name} ({reason})" for name, reason in meta["bad"][:3])
        log.warning(
            "%s: skipped %d of %d images that cannot be read (%.2f%%), e.g. %s",
            what, meta["num_bad"], total, 100 * meta["num_bad"] / total, examples,
        )
    if meta["num_upscaled"]:
        side = preprocess.crop or preprocess.resolution
        log.warning(
            "%s: %d images were smaller than %d px and were upscaled, e.g. %s",
            what, meta["num_upscaled"], side, ", ".join(meta["upscaled"][:3]),
        )


def cached_images(
    cache_dir: str | Path,
    key: dict,
    source: Source,
    preprocess: Preprocess,
    workers: int = 0,
    max_bad_fraction: float = 0.01,
    what: str = "images",
    need_skipped: bool = False,
) -> MemmapImageDataset:
    """Open the cache for `key`, building (or rebuilding) it first if needed, under a lock.

    The dataset's `kept` is the source index of each cached image (None: every one was kept),
    what labels of the source are looked up by; `need_skipped`: see `open_cache`."""
    data_path, _ = _paths(cache_dir, key)
    with _locked(data_path.with_suffix(".lock")):
        opened = open_cache(cache_dir, key, need_skipped)
        if opened is None:
            log.info("building the %s cache in %s", what, data_path)
            build_cache(cache_dir, key, source, preprocess, workers, max_bad_fraction, what)
            opened = open_cache(cache_dir, key)
            assert opened is not None, f"cache {data_path} unreadable right after its build"
    dataset, meta = opened
    if meta["num_bad"] > max_bad_fraction * key["num_source"]:  # built with a looser limit
        raise ConfigError(_too_many_bad(what, meta["bad"], key["num_source"], max_bad_fraction,
                                        meta["num_bad"]))
    if meta["num_bad"]:
        log.info("%s: %d unreadable images were skipped when the cache was built", what,
                 meta["num_bad"])
    dataset.kept = kept_indices(key["num_source"], meta.get("skipped")) if meta["num_bad"] else None
    return dataset


def kept_indices(total: int, skipped: list[int] | None) -> np.ndarray | None:
    """Source indices of the cached images, in order: all of [0, total) but `skipped` (None when
    the list is unknown)."""
    if skipped is None:
        return None
    keep = np.ones(total, dtype=bool)
    keep[np.asarray(skipped, dtype=np.int64)] = False
    return np.flatnonzero(keep)


# ----------------------------------------------------------------------------- splits
def hash_split(names: list[str], fractions: dict[str, float], seed: int) -> dict[str, list[int]]:
    """Deterministic split by a seeded hash of each name: item i goes to the first split whose
    cumulative fraction exceeds hash(seed, name) in [0, 1). Independent of file order and of the
    training seed; adding files never moves existing ones. Every split gets at least one item
    (the one with the smallest hash among the rest) when there are enough items."""
    bounds, acc = [], 0.0
    for split, fraction in fractions.items():
        acc += fraction
        bounds.append((acc, split))
    values = [hash_fraction(name, seed) for name in names]
    out: dict[str, list[int]] = {split: [] for split in fractions}
    for index, value in enumerate(values):
        out[next((s for bound, s in bounds if value < bound), bounds[-1][1])].append(index)
    for split in fractions:  # tiny datasets: borrow one item from the largest split
        largest = max(out, key=lambda s: len(out[s]))
        if not out[split] and len(out[largest]) > 1:
            moved = min(out[largest], key=lambda i: values[i])
            out[largest].remove(moved)
            out[split].append(moved)
    return out


def split_by_hash(source: Source, fractions: dict[str, float], seed: int) -> dict[str, Source]:
    """`hash_split` of a source by its items' names (file paths, LMDB keys): one subset per
    split, e.g. {"val": 0.05, "train": 0.95} -> {"val": Source, "train": Source}."""
    ids = hash_split([source.name(i) for i in range(len(source))], fractions, seed)
    return {split: source.subset(indices) for split, indices in ids.items()}


# ----------------------------------------------------------------------------- the base class
class EncodedImageDataModule(ImageDataModule):
    """Base of the datasets read from encoded images (files or LMDB values).

    A subclass sets `dataset_name` and implements `source(split)` -> FileSource | LmdbSource for
    split 'train' or 'val' (and checks data.root in its __init__); this class turns it into the
    cached uint8 dataset (or the decode-every-time one).

    Args:
        root: the folder the user has (data.root); layouts are the subclass's.
        crop: centre-crop side in px before resizing (None: the largest centred square).
        resize_filter: PIL filter from the crop to data.resolution (lanczos | bicubic | bilinear
            | box | nearest).
        cache: decode once into `cache_dir` (True) or decode every image at every step (False).
        cache_dir: folder of the preprocessed caches (None: $GANLAB_CACHE/data).
        cache_workers: processes decoding during the cache build (None: all cores; 0: none).
        max_bad_fraction: largest tolerated fraction of unreadable images, in [0, 1].
        num_images: use at most this many training images (None: all), e.g. for a quick run.
        num_val_images: use at most this many validation images (None: all).
        **kwargs: ImageDataModule arguments (resolution, batch_size, num_workers, hflip, ...).
    """

    dataset_name = "images"

    def __init__(
        self,
        root: str | None = None,
        crop: int | None = None,
        resize_filter: str = "lanczos",
        cache: bool = True,
        cache_dir: str | None = None,
        cache_workers: int | None = None,
        max_bad_fraction: float = 0.01,
        num_images: int | None = None,
        num_val_images: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if root in (None, ""):
            raise ConfigError(
                f"data.root is not set: data={self.dataset_name} needs data.root=/path/to/data"
            )
        if crop is not None and (not isinstance(crop, int) or crop < 1):
            raise ConfigError(f"data.crop={crop!r} must be a positive integer (px) or null")
        if resize_filter not in RESIZE_FILTERS:
            raise ConfigError(
                f"data.resize_filter={resize_filter!r}: choose one of {tuple(RESIZE_FILTERS)}"
            )
        if not 0.0 <= max_bad_fraction <= 1.0:
            raise ConfigError(f"data.max_bad_fraction={max_bad_fraction!r} must be in [0, 1]")
        check_int(cache_workers, "data.cache_workers", 0, allow_none=True)
        for name, value in (("num_images", num_images), ("num_val_images", num_val_images)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"data.{name}={value!r} must be a positive integer or null")
        self.root = os.path.expanduser(str(root))
        self.preprocess = Preprocess(self.max_resolution, crop, resize_filter)
        self.cache, self.cache_dir = cache, cache_dir or default_cache_dir()
        self.cache_workers = (os.cpu_count() or 1) if cache_workers is None else cache_workers
        self.max_bad_fraction = max_bad_fraction
        self.limits = {"train": num_images, "val": num_val_images}
        self._sources: dict[str, Source] = {}

    def source(self, split: str) -> Source:
        """The encoded images of `split` ('train' | 'val'), uncapped."""
        raise NotImplementedError

    def split_source(self, split: str) -> Source:
        """`source(split)` (memoised), capped at num_images / num_val_images; never empty."""
        if split not in self._sources:
            source, limit = self.source(split), self.limits.get(split)
            if limit is not None and len(source) > limit:
                source = source.subset(range(limit))
            if len(source) == 0:
                raise ConfigError(
                    f"data={self.dataset_name}: split '{split}' has no images under "
                    f"data.root={self.root}"
                )
            self._sources[split] = source
        return self._sources[split]

    def source_fingerprint(self, split: str) -> str:
        """Fingerprint of `split`'s images (names, sizes, mtimes): in the FID statistics key."""
        return self.split_source(split).fingerprint()

    def split_label(self, split: str) -> str:
        """Name of `split` in cache names and messages (e.g. CelebA's partition)."""
        return split

    def prepare_data(self) -> None:
        """Build the caches once (Lightning calls this on one process per node)."""
        if self.cache:
            for split in ("train", "val"):
                self.build_split(split)

    def build_split(self, split: str) -> Dataset:
        source = self.split_source(split)
        if not self.cache:
            return DecodedImageDataset(source, self.preprocess)
        label = self.split_label(split)
        what = f"data={self.dataset_name} {label} split at {self.max_resolution}px"
        key = cache_key(self.dataset_name, label, self.preprocess, source)
        return cached_images(
            self.cache_dir, key, source, self.preprocess, self.cache_workers,
            self.max_bad_fraction, what, need_skipped=self.labels != "none",
        )

    def source_labels(self, split: str) -> Tensor:
        """Label table float32 [len(split_source(split)), K] of the split's items, in order."""
        raise NotImplementedError

    def train_label_table(self) -> Tensor:
        return self.source_labels("train")

    def split_labels(self, split: str, images: Dataset) -> Tensor:
        """The labels of `build_split(split)`'s images: the source's, less the images the cache
        skipped as unreadable."""
        table = self.source_labels(split)
        kept = getattr(images, "kept", None)
        return table if kept is None else table[torch.from_numpy(kept)]
