"""`data=lsun_church`: LSUN church_outdoor (126,227 train + 300 val images, WebP/JPEG in LMDB).

Layouts accepted under data.root (ROOT), tried in this order (CAT = data.category):
    LMDB      ROOT/CAT_train_lmdb/ (data.mdb, lock.mdb) + ROOT/CAT_val_lmdb/
              (or data.root pointing at the CAT_train_lmdb folder itself)
    exported  ROOT/CAT_train/**/*.webp|jpg|png (+ ROOT/CAT_val/), e.g. from LSUN's
              `python data.py export` (any depth)
    folder    ROOT/**/*.webp|jpg|png (train / val by a seeded hash of the path)
Without a val LMDB / folder, data.val_fraction of train is held out by a seeded hash of the key.
Preprocessing: resize the shorter side then centre crop to a square (data.crop=null), as the
PGGAN and StyleGAN dataset tools do. Labels: none (one scene category; data.labels=class or
attributes is a ConfigError).
"""

from __future__ import annotations

from pathlib import Path

from ganlab.data.cache import EncodedImageDataModule, Source, split_by_hash
from ganlab.data.images import FileSource, LmdbSource, has_images, list_images, open_lmdb
from ganlab.utils import ConfigError


def layouts(category: str) -> str:
    return (
        f"  LMDB:     ROOT/{category}_train_lmdb/ (data.mdb) + ROOT/{category}_val_lmdb/\n"
        f"  exported: ROOT/{category}_train/**/*.webp (+ ROOT/{category}_val/)\n"
        f"  folder:   ROOT/**/*.webp|jpg|jpeg|png|bmp (train/val by a seeded hash)"
    )


def check_lmdb(path: str | Path) -> int:
    """Number of entries of the LMDB at `path`; ConfigError if lmdb is missing or it can't open."""
    try:
        import lmdb
    except ImportError:
        raise ConfigError(
            f"reading the LMDB {path} needs the `lmdb` package: pip install 'lmdb>=1.4'"
        ) from None
    try:
        entries = open_lmdb(str(path)).stat()["entries"]
    except lmdb.Error as error:
        raise ConfigError(
            f"cannot open the LMDB {path} ({type(error).__name__}: {error}). It must be a folder "
            f"holding data.mdb as LSUN distributes it (unzip CAT_train_lmdb.zip completely)."
        ) from None
    if entries == 0:
        raise ConfigError(f"the LMDB {path} is empty")
    return entries


class LSUNDataModule(EncodedImageDataModule):
    """`data=lsun_church` (any LSUN scene category through data.category).

    Args:
        root: the folder holding the LMDBs or exported images (layouts above).
        category: LSUN category, the prefix of the folder names (church_outdoor).
        crop: centre-crop side in px before resizing (None: resize shorter side + centre crop).
        val_split: val (the val LMDB / folder, or the held-out fraction) | train (FID against
            training images).
        val_fraction: fraction of train held out when there is no val LMDB / folder.
        split_seed: seed of that hash split.
        **kwargs: EncodedImageDataModule / ImageDataModule arguments.
    """

    def __init__(
        self,
        root: str | None = None,
        category: str = "church_outdoor",
        crop: int | None = None,
        val_split: str = "val",
        val_fraction: float = 0.01,
        split_seed: int = 0,
        **kwargs,
    ) -> None:
        self.dataset_name = "lsun_church" if category == "church_outdoor" else f"lsun_{category}"
        super().__init__(root=root, crop=crop, **kwargs)
        if val_split not in ("val", "train"):
            raise ConfigError(f"data.val_split={val_split!r}: choose val or train")
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction={val_fraction!r} must be in (0, 1)")
        self.category, self.val_split = category, val_split
        self._sources: dict[Path, Source] = {}  # scanned items per LMDB / folder path
        self.val_fraction, self.split_seed = val_fraction, split_seed
        self.train_path, self.val_path, self.kind = self._find_layout()
        if self.kind == "lmdb":
            for path in (self.train_path, self.val_path):
                if path is not None:
                    check_lmdb(path)

    def _find_layout(self) -> tuple[Path, Path | None, str]:
        """(train path, val path or None, 'lmdb' | 'folder')."""
        root, cat = Path(self.root), self.category
        if (root / "data.mdb").exists() or root.name.endswith("_lmdb"):  # root is the LMDB
            val = root.parent / f"{cat}_val_lmdb"
            return root, val if val.is_dir() and val != root else None, "lmdb"
        if (root / f"{cat}_train_lmdb").is_dir():
            val = root / f"{cat}_val_lmdb"
            return root / f"{cat}_train_lmdb", val if val.is_dir() else None, "lmdb"
        if has_images(root / f"{cat}_train"):
            val = root / f"{cat}_val"
            return root / f"{cat}_train", val if has_images(val) else None, "folder"
        if has_images(root):
            return root, None, "folder"
        state = "does not exist" if not root.is_dir() else f"holds no LSUN {cat} data"
        raise ConfigError(
            f"data={self.dataset_name}: data.root={root} {state}. Expected one of these layouts "
            f"(ROOT = data.root):\n{layouts(cat)}\nGet the LMDBs with LSUN's download script "
            f"(README, section Datasets)."
        )

    def _read(self, path: Path) -> Source:
        """The items under `path`, scanned once per path (train and val splits share it)."""
        if path not in self._sources:
            if self.kind == "lmdb":
                self._sources[path] = LmdbSource.scan(path)
            else:
                self._sources[path] = FileSource(path, list_images(path))
        return self._sources[path]

    def split_label(self, split: str) -> str:
        return "train" if split == "val" and self.val_split == "train" else split

    def source(self, split: str) -> Source:
        split = self.split_label(split)  # val_split=train: the training images (one cache)
        if self.val_path is not None:
            return self._read(self.train_path if split == "train" else self.val_path)
        fractions = {"val": self.val_fraction, "train": 1.0 - self.val_fraction}
        return split_by_hash(self._read(self.train_path), fractions, self.split_seed)[split]

