"""`data=folder`: any folder tree of images (jpg, jpeg, png, webp, bmp; searched recursively).

Splits: each file goes to val with probability data.val_fraction, decided by a hash of
(data.split_seed, its path relative to data.root): the same split on every machine and run,
independent of the training seed, and adding files never moves existing ones. A ROOT/train +
ROOT/val pair of folders is used as given instead.
Preprocessing: centre crop data.crop (null: the largest centred square), then resize.
"""

from __future__ import annotations

import os
from pathlib import Path

from ganlab.data.cache import EncodedImageDataModule, split_by_hash
from ganlab.data.images import IMAGE_EXTENSIONS, FileSource, has_images, list_images
from ganlab.utils import ConfigError

SPLITS = ("train", "val")


class ImageFolderDataModule(EncodedImageDataModule):
    """`data=folder`.

    Args:
        root: folder of images, searched recursively.
        crop: centre-crop side in px before resizing (None: the largest centred square).
        val_fraction: fraction of the files held out for validation / FID, in (0, 1).
        split_seed: seed of the hash split.
        **kwargs: EncodedImageDataModule / ImageDataModule arguments.
    """

    dataset_name = "folder"

    def __init__(
        self,
        root: str | None = None,
        crop: int | None = None,
        val_fraction: float = 0.05,
        split_seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(root=root, crop=crop, **kwargs)
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction={val_fraction!r} must be in (0, 1)")
        self.val_fraction, self.split_seed = val_fraction, split_seed
        if not has_images(self.root):
            state = "does not exist" if not os.path.isdir(self.root) else "holds no images"
            raise ConfigError(
                f"data=folder: data.root={self.root} {state}. Expected a folder tree of images "
                f"({', '.join(IMAGE_EXTENSIONS)}), searched recursively; optionally ROOT/train "
                f"and ROOT/val."
            )
        self._split: dict[str, list[str]] | None = None

    def split_names(self) -> dict[str, list[str]]:
        """Relative paths of the 'train' and 'val' files, sorted."""
        if self._split is None:
            root = Path(self.root)
            if has_images(root / "train") and has_images(root / "val"):
                self._split = {s: [f"{s}/{n}" for n in list_images(root / s)] for s in SPLITS}
            else:
                fractions = {"val": self.val_fraction, "train": 1.0 - self.val_fraction}
                every = FileSource(root, list_images(root))
                parts = split_by_hash(every, fractions, self.split_seed)
                self._split = {split: part.names for split, part in parts.items()}
        return self._split

    def source(self, split: str) -> FileSource:
        return FileSource(self.root, self.split_names()[split])
