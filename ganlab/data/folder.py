"""`data=folder`: any folder tree of images (jpg, jpeg, png, webp, bmp; searched recursively).

Splits: each file goes to val with probability data.val_fraction, decided by a hash of
(data.split_seed, its path relative to data.root): the same split on every machine and run,
independent of the training seed, and adding files never moves existing ones. A ROOT/train +
ROOT/val pair of folders is used as given instead.
Preprocessing: centre crop data.crop (null: the largest centred square), then resize.
Labels (data.labels=class): one class per sub-folder of data.root (ROOT/<class>/**, or
ROOT/train/<class>/ and ROOT/val/<class>/), named and sorted as torchvision's ImageFolder does;
or, when ROOT/dataset.json holds labels (stylegan2-ada's dataset_tool:
{"labels": [["sub/1.png", 0], ...]}), those, with classes named "0", "1", ...
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from ganlab.data.cache import EncodedImageDataModule, split_by_hash
from ganlab.data.images import IMAGE_EXTENSIONS, FileSource, has_images, list_images
from ganlab.data.labels import (
    check_class_folders,
    folder_class_names,
    one_hot,
    read_dataset_json,
)
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
    supported_labels = ("class",)

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
        self._classes: tuple[list[str], dict[str, int]] | None = None  # names, {file: class}

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

    # ------------------------------------------------------------------ labels
    def _class_of_files(self) -> tuple[list[str], dict[str, int]]:
        """(class names, {file path relative to root: class index}) of every split's files,
        from ROOT/dataset.json when it holds labels, else from the class folders."""
        if self._classes is None:
            names = [n for split in SPLITS for n in self.split_names()[split]]
            by_json = Path(self.root) / "dataset.json"
            labels = read_dataset_json(by_json) if by_json.is_file() else None
            if labels is not None:
                missing = [n for n in names if n not in labels]
                if missing:
                    raise ConfigError(
                        f"{by_json} labels {len(labels)} images but not {len(missing)} of the "
                        f"{len(names)} under data.root (e.g. {missing[0]}): the label count does "
                        "not match the images"
                    )
                count = max(labels[n] for n in names) + 1
                self._classes = [str(k) for k in range(count)], {n: labels[n] for n in names}
            else:
                split_root = has_images(Path(self.root) / "train") and has_images(
                    Path(self.root) / "val") and all(n.startswith(SPLITS) for n in names)
                inner = [n.split("/", 1)[1] if split_root else n for n in names]
                classes, index = folder_class_names(inner, self.root)
                for split in SPLITS if split_root else ("",):
                    check_class_folders(Path(self.root) / split, classes)
                self._classes = classes, dict(zip(names, index))
        return self._classes

    def label_names(self) -> list[str]:
        return self._class_of_files()[0]

    def source_labels(self, split: str) -> Tensor:
        classes, index = self._class_of_files()
        names = self.split_source(split).names
        return one_hot([index[n] for n in names], len(classes)) if names else torch.zeros(0)
