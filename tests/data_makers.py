"""Tiny datasets written in the exact on-disk layouts people have (never downloaded)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

CELEBA_SPLITS = {"train": 24, "valid": 6, "test": 4}  # 34 files, partitions 0 / 1 / 2
BLUE, RED = (30, 60, 220), (220, 40, 30)


def banded(width: int, height: int, band: int, seed: int = 0) -> np.ndarray:
    """uint8 [height, width, 3]: a blue centre square (side min(w, h) - 2 band) with a little
    noise, red bands outside it; a correct centre crop of that side sees only blue."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.uint8)
    image[:] = RED
    side = min(width, height) - 2 * band
    top, left = (height - side) // 2, (width - side) // 2
    noise = rng.integers(-10, 10, (side, side, 3))
    image[top : top + side, left : left + side] = np.clip(np.array(BLUE) + noise, 0, 255)
    return image


def write_celeba(root: Path, layout: str) -> Path:
    """CelebA-like JPEGs of 178x218 in the torchvision / kaggle / bare layout; returns root.
    The central 178x178 square is blue, the 20-px bands above and below it red."""
    images = {
        "torchvision": root / "celeba" / "img_align_celeba",
        "kaggle": root / "img_align_celeba" / "img_align_celeba",
        "bare": root / "img_align_celeba",
    }[layout]
    images.mkdir(parents=True)
    rows, number = [], 0
    for partition, count in enumerate(CELEBA_SPLITS.values()):
        for _ in range(count):
            number += 1
            name = f"{number:06d}.jpg"
            Image.fromarray(banded(178, 218, 0, seed=number)).save(images / name, quality=95)
            rows.append((name, partition))
    if layout == "torchvision":
        lines = [f"{name} {p}" for name, p in rows]
        (root / "celeba" / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    elif layout == "kaggle":
        lines = ["image_id,partition"] + [f"{name},{p}" for name, p in rows]
        (root / "list_eval_partition.csv").write_text("\n".join(lines) + "\n")
    return root


def webp_bytes(width: int, height: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(banded(width, height, 0, seed)).save(buffer, format="WEBP", quality=90)
    return buffer.getvalue()


def write_lmdb(path: Path, num: int, seed: int = 0, bad: int = 0) -> list[bytes]:
    """An LSUN-style LMDB: hex keys -> WebP images of varied landscape sizes (the last `bad`
    values are garbage). Returns the keys."""
    import lmdb

    keys = []
    env = lmdb.open(str(path), map_size=64 << 20)
    with env.begin(write=True) as txn:
        for index in range(num):
            key = f"{seed:02d}{index:06d}a1b2c3d4e5f6".encode()
            width, height = 48 + (index % 4) * 8, 36 + (index % 3) * 2
            value = b"not an image" if index >= num - bad else webp_bytes(width, height, index)
            txn.put(key, value)
            keys.append(key)
    env.close()
    return keys


def write_folder(root: Path) -> dict[str, int]:
    """A nested folder of mixed formats and modes, 3 corrupt files and 2 non-images.
    Returns {'good': n, 'bad': n}."""
    rng = np.random.default_rng(0)
    good = 0
    for index in range(36):
        sub = root / f"group{index % 3}" / ("deep" if index % 2 else "")
        sub.mkdir(parents=True, exist_ok=True)
        rgb = (rng.random((20 + index % 5, 24, 3)) * 255).astype(np.uint8)
        image = Image.fromarray(rgb)
        kind = index % 9
        if kind == 0:
            image.save(sub / f"{index}.jpg")
        elif kind == 1:
            image.save(sub / f"{index}.JPEG")
        elif kind == 2:
            image.convert("RGBA").save(sub / f"{index}.png")
        elif kind == 3:
            image.save(sub / f"{index}.webp")
        elif kind == 4:
            image.save(sub / f"{index}.bmp")
        elif kind == 5:
            image.convert("L").save(sub / f"{index}.png")
        elif kind == 6:
            image.convert("P").save(sub / f"{index}.png")
        elif kind == 7:
            image.convert("CMYK").save(sub / f"{index}.jpg")
        else:
            grey16 = (rng.random((20, 24)) * 65535).astype(np.uint16)
            Image.fromarray(grey16).save(sub / f"{index}.png")
        good += 1
    (root / "group0" / "empty.jpg").write_bytes(b"")
    (root / "group1" / "notes.jpg").write_text("this is not an image")
    whole = io.BytesIO()
    Image.fromarray((rng.random((24, 24, 3)) * 255).astype(np.uint8)).save(whole, format="PNG")
    (root / "group2" / "truncated.png").write_bytes(whole.getvalue()[:200])
    (root / "readme.txt").write_text("ignored: not an image extension")
    (root / "group0" / "data.csv").write_text("a,b\n")
    return {"good": good, "bad": 3}
