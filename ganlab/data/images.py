"""Encoded-image sources and the decode + crop + resize step every real dataset shares.

Light on purpose (numpy and PIL only, no torch): the cache build runs this module in worker
processes. A source is "a list of encoded images": files on disk (`FileSource`) or the values of
an LMDB (`LmdbSource`). `Preprocess` turns one encoded image into uint8 [3, R, R].
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
RESIZE_FILTERS = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "box": Image.Resampling.BOX,
    "nearest": Image.Resampling.NEAREST,
}
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error (skipped), never half grey


# ----------------------------------------------------------------------------- sources
class ListedSource:
    """What every source shares: a location (folder or LMDB), the items in it (file names or
    LMDB keys), a fingerprint for cache keys, and subsets. Subclasses read one item."""

    def __init__(self, location: str | Path, items: Sequence) -> None:
        self.location, self.items = str(location), list(items)
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.items)

    def stamps(self) -> Iterable[bytes]:
        """Size and modification time of what holds the items (one entry per stamp)."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """Identity for cache keys (data and FID statistics): the location, the items and their
        sizes and modification times, so files replaced under the same names change it. Computed
        once per source object."""
        if self._fingerprint is None:
            digest = hashlib.blake2b(os.path.realpath(self.location).encode(), digest_size=16)
            for item in self.items:
                digest.update((item.encode() if isinstance(item, str) else item) + b"\0")
            for stamp in self.stamps():
                digest.update(stamp)
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def subset(self, indices: Iterable[int]):
        return type(self)(self.location, [self.items[i] for i in indices])


def file_stamp(path: str) -> bytes:
    """Size and mtime (ns) of one file, as bytes for a digest."""
    stat = os.stat(path)
    return f"{stat.st_size}:{stat.st_mtime_ns}\0".encode()


class FileSource(ListedSource):
    """Image files, read as bytes. `names` (paths relative to `root`) identify them in messages."""

    def __init__(self, root: str | Path, names: Sequence[str]) -> None:
        super().__init__(root, names)

    @property
    def root(self) -> str:
        return self.location

    @property
    def names(self) -> list[str]:
        return self.items

    def read(self, index: int) -> bytes:
        with open(os.path.join(self.root, self.names[index]), "rb") as f:
            return f.read()

    def name(self, index: int) -> str:
        return self.names[index]

    def stamps(self) -> Iterable[bytes]:
        return (file_stamp(os.path.join(self.root, name)) for name in self.names)


_LMDB_ENVS: dict[str, object] = {}  # one open environment per process and path


def open_lmdb(path: str):
    """Open an LMDB read-only (cached per process). Raises ImportError / lmdb.Error."""
    import lmdb

    if path not in _LMDB_ENVS:
        _LMDB_ENVS[path] = lmdb.open(
            path, readonly=True, lock=False, readahead=False, meminit=False, max_readers=256
        )
    return _LMDB_ENVS[path]


class LmdbSource(ListedSource):
    """Values of an LMDB (encoded images, e.g. LSUN's WebP), addressed by their keys."""

    def __init__(self, path: str | Path, keys: Sequence[bytes]) -> None:
        super().__init__(path, keys)

    @property
    def path(self) -> str:
        return self.location

    @property
    def keys(self) -> list[bytes]:
        return self.items

    @classmethod
    def scan(cls, path: str | Path) -> LmdbSource:
        """All keys of the LMDB at `path`, in key order."""
        with open_lmdb(str(path)).begin(write=False) as txn:
            keys = list(txn.cursor().iternext(keys=True, values=False))
        return cls(path, keys)

    def read(self, index: int) -> bytes:
        with open_lmdb(self.path).begin(write=False) as txn:
            value = txn.get(self.keys[index])
        if value is None:
            raise KeyError(f"key {self.keys[index]!r} not in the LMDB")
        return value

    def name(self, index: int) -> str:
        return f"{Path(self.path).name}[{self.keys[index].decode(errors='replace')}]"

    def stamps(self) -> Iterable[bytes]:
        data = os.path.join(self.path, "data.mdb")  # the LMDB's data file (a folder LMDB)
        return [file_stamp(data if os.path.isdir(self.path) else self.path)]


def list_images(root: str | Path, recursive: bool = True) -> list[str]:
    """Sorted paths (relative to root, '/'-separated) of files with an image extension."""
    root = str(root)
    found: list[str] = []
    if recursive:
        for folder, dirs, files in os.walk(root, followlinks=True):
            dirs.sort()
            rel = os.path.relpath(folder, root)
            prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            found += [prefix + f for f in files if f.lower().endswith(IMAGE_EXTENSIONS)]
    else:
        with os.scandir(root) as entries:
            found = [e.name for e in entries if e.name.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(found)


def has_images(root: str | Path, recursive: bool = True) -> bool:
    """Whether `root` is a folder holding at least one image file (stops at the first)."""
    if not os.path.isdir(root):
        return False
    if recursive:
        for _, _, files in os.walk(root, followlinks=True):
            if any(f.lower().endswith(IMAGE_EXTENSIONS) for f in files):
                return True
        return False
    with os.scandir(root) as entries:
        return any(e.name.lower().endswith(IMAGE_EXTENSIONS) for e in entries)


def hash_fraction(name: str, seed: int) -> float:
    """Deterministic number in [0, 1) from a file name and a seed (the hash split)."""
    digest = hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


# ----------------------------------------------------------------------------- decoding
def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode (L, LA, P, PA, RGBA, CMYK, I;16, ...) -> RGB. Alpha is dropped."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit grey: keep the top 8 bits
        grey = np.asarray(image).astype(np.int64)
        scale = 256 if grey.max(initial=0) > 255 else 1
        image = Image.fromarray(np.clip(grey // scale, 0, 255).astype(np.uint8), "L")
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


@dataclass(frozen=True)
class Preprocess:
    """Encoded image -> uint8 [3, R, R] (EXIF orientation applied, any mode -> RGB).

    crop: side of the centre crop in px, taken before resizing (CelebA: 178, 160, 140); None =
    the largest centred square (shorter side; = resize shorter side then centre crop, the PGGAN
    and StyleGAN dataset-tool convention for LSUN). Images smaller than the crop are first
    upscaled so the shorter side equals the crop (reported as `upscaled`).
    resolution: output side R; filter: PIL filter name (RESIZE_FILTERS) for crop -> R.
    """

    resolution: int
    crop: int | None = None
    filter: str = "lanczos"

    def __call__(self, data: bytes) -> tuple[np.ndarray, bool]:
        """Returns (uint8 [3, R, R], upscaled). Raises on unreadable data."""
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            image = to_rgb(ImageOps.exif_transpose(image))  # phone photos: apply EXIF rotation
        width, height = image.size
        short = min(width, height)
        side = short if self.crop is None else self.crop
        upscaled = short < (self.resolution if self.crop is None else self.crop)
        if short < side:  # smaller than the crop: scale the shorter side up to it
            scale = side / short
            width, height = max(side, round(width * scale)), max(side, round(height * scale))
            image = image.resize((width, height), RESIZE_FILTERS[self.filter])
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
        if side != self.resolution:
            image = image.resize((self.resolution, self.resolution), RESIZE_FILTERS[self.filter])
        array = np.asarray(image, dtype=np.uint8)  # [R, R, 3]
        return np.ascontiguousarray(array.transpose(2, 0, 1)), upscaled


def decode_range(
    source: FileSource | LmdbSource, preprocess: Preprocess, start: int, stop: int
) -> tuple[int, np.ndarray, list[tuple[int, str]], list[int]]:
    """Decode source items [start, stop).

    Returns (start, good images uint8 [n_good, 3, R, R] in source order, bad [(index, reason)],
    upscaled indices).
    """
    size = preprocess.resolution
    out = np.empty((stop - start, 3, size, size), dtype=np.uint8)
    good, bad, upscaled = 0, [], []
    for index in range(start, stop):
        try:
            out[good], was_upscaled = preprocess(source.read(index))
        except Exception as error:  # noqa: BLE001 - any unreadable item is skipped and counted
            bad.append((index, f"{type(error).__name__}: {error}"[:200]))
            continue
        if was_upscaled:
            upscaled.append(index)
        good += 1
    return start, out[:good], bad, upscaled


# worker-process state of the parallel cache build (set once per process by `init_worker`)
_WORKER: dict[str, object] = {}


def init_worker(source: FileSource | LmdbSource, preprocess: Preprocess) -> None:
    # A forked worker inherits the parent's Python signal handlers (e.g. the training run's
    # graceful-stop handler); restore the defaults so Pool.terminate()'s SIGTERM ends it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled by the parent
    _WORKER["source"], _WORKER["preprocess"] = source, preprocess


def decode_range_in_worker(span: tuple[int, int]):
    return decode_range(_WORKER["source"], _WORKER["preprocess"], *span)
