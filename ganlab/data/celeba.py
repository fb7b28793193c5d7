"""`data=celeba`: CelebA, aligned and cropped (202,599 JPEG faces of 178x218), as people have it.

Layouts accepted under data.root (ROOT), tried in this order:
    torchvision  ROOT/celeba/img_align_celeba/*.jpg + ROOT/celeba/list_eval_partition.txt
    Kaggle       ROOT/img_align_celeba/img_align_celeba/*.jpg + ROOT/list_eval_partition.csv
    bare         ROOT/img_align_celeba/*.jpg (or ROOT/*.jpg), split by a seeded hash
A partition file found in ROOT, ROOT/celeba or beside the images (.txt "000001.jpg 0" or .csv
with header "image_id,partition") gives the official splits: 0 train, 1 valid, 2 test. Without
one, each file goes to train / valid / test by a hash of (data.split_seed, file name): 80/10/10.
Preprocessing: centre crop data.crop x data.crop (178 by default), then resize.
Labels (data.labels=attributes, data.attributes=[Smiling, ...]): those of the 40 attributes, read
from list_attr_celeba.txt (torchvision) or list_attr_celeba.csv (Kaggle) in ROOT, ROOT/celeba or
beside the images, -1 / 1 as 0 / 1: a multi-hot vector per image.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor

from ganlab.data.cache import EncodedImageDataModule, split_by_hash
from ganlab.data.images import FileSource, has_images, list_images
from ganlab.data.labels import (
    attribute_indices,
    find_attribute_file,
    lookup_rows,
    read_celeba_attributes,
)
from ganlab.logs import get_logger
from ganlab.utils import ConfigError

log = get_logger(__name__)

PARTITIONS = {"train": (0,), "valid": (1,), "test": (2,), "all": (0, 1, 2)}
HASH_FRACTIONS = {"train": 0.8, "valid": 0.1, "test": 0.1}
IMAGE_DIRS = (
    "celeba/img_align_celeba",
    "img_align_celeba/img_align_celeba",
    "img_align_celeba",
    ".",
)
PARTITION_FILES = (
    "celeba/list_eval_partition.txt",
    "list_eval_partition.csv",
    "list_eval_partition.txt",
    "celeba/list_eval_partition.csv",
)
LAYOUTS = (
    "  torchvision: ROOT/celeba/img_align_celeba/*.jpg + ROOT/celeba/list_eval_partition.txt\n"
    "  Kaggle:      ROOT/img_align_celeba/img_align_celeba/*.jpg + ROOT/list_eval_partition.csv\n"
    "  bare:        ROOT/img_align_celeba/*.jpg (train/valid/test by a seeded hash of the name)"
)
MANUAL_DOWNLOAD = (
    "Download it by hand: 'Align&Cropped Images' (img_align_celeba.zip) and "
    "list_eval_partition.txt from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Google Drive "
    "/ Baidu links), or the Kaggle dataset jessicali9530/celeba-dataset "
    "(`kaggle datasets download -d jessicali9530/celeba-dataset`), unzip it under data.root so "
    "that it matches one of these layouts:\n" + LAYOUTS
)


def read_partition(path: str | Path) -> dict[str, int]:
    """{file name: partition} from list_eval_partition.txt ("000001.jpg 0") or .csv
    ("image_id,partition" header, "000001.jpg,0" rows)."""
    partition: dict[str, int] = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            fields = line.replace(",", " ").split()
            if not fields or fields[0] == "image_id":
                continue
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise ConfigError(
                    f"partition file {path}, line {number}: expected 'NAME.jpg 0|1|2' or "
                    f"'NAME.jpg,0|1|2', got {line.strip()!r}"
                )
            partition[fields[0]] = int(fields[1])
    return partition


def find_layout(root: str | Path) -> tuple[Path, Path | None] | None:
    """(image folder, partition file or None) of the first layout present under root."""
    root = Path(root)
    for images in IMAGE_DIRS:
        if has_images(root / images, recursive=False):
            candidates = [root / p for p in PARTITION_FILES] + [
                root / images / "list_eval_partition.txt",
                root / images / "list_eval_partition.csv",
                root / images / "../list_eval_partition.txt",
                root / images / "../list_eval_partition.csv",
            ]
            partition = next((p for p in candidates if p.is_file()), None)
            return root / images, partition
    return None


def download_celeba(root: str | Path) -> None:
    """torchvision's Google-Drive downloader into ROOT/celeba (its layout). No md5 check of the
    partition file (copies differ); the image zip is checked by its md5."""
    from torchvision.datasets import CelebA
    from torchvision.datasets.utils import download_file_from_google_drive, extract_archive

    folder = os.path.join(root, "celeba")
    for file_id, md5, name in CelebA.file_list:
        if name in ("img_align_celeba.zip", "list_eval_partition.txt"):
            checked = md5 if name.endswith(".zip") else None
            download_file_from_google_drive(file_id, folder, name, checked)
    extract_archive(os.path.join(folder, "img_align_celeba.zip"))


class CelebADataModule(EncodedImageDataModule):
    """`data=celeba`.

    Args:
        root: the folder holding CelebA in one of the layouts above.
        download: when root holds no CelebA, try torchvision's downloader (else: an error).
        crop: centre-crop side in px before resizing (178: the whole width; thesis 160; 140).
        train_split: partition(s) to train on: train | valid | test | all.
        val_split: partition for validation / FID: valid | test | train | all.
        split_seed: seed of the hash split (bare layout only).
        attributes: with data.labels=attributes, the attribute names, e.g. [Smiling, Eyeglasses].
        **kwargs: EncodedImageDataModule / ImageDataModule arguments.
    """

    dataset_name = "celeba"
    supported_labels = ("attributes",)

    def __init__(
        self,
        root: str | None = None,
        download: bool = False,
        crop: int | None = 178,
        train_split: str = "train",
        val_split: str = "valid",
        split_seed: int = 0,
        attributes: list[str] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(root=root, crop=crop, **kwargs)
        self.attributes = [str(a) for a in attributes or []]
        self._attributes: tuple[Path, list[str], dict] | None = None  # file, names, rows
        for name, value in (("train_split", train_split), ("val_split", val_split)):
            if value not in PARTITIONS:
                raise ConfigError(f"data.{name}={value!r}: choose one of {tuple(PARTITIONS)}")
        self.download, self.split_seed = download, split_seed
        self.partitions = {"train": train_split, "val": val_split}
        self.layout = find_layout(self.root)
        if self.layout is None and not download:
            raise ConfigError(self._not_found() + "Or set data.download=true to try a download.")
        self._names: dict[str, list[str]] | None = None

    def _not_found(self) -> str:
        state = "does not exist" if not os.path.isdir(self.root) else "holds no CelebA images"
        return (
            f"data=celeba: data.root={self.root} {state}. Expected one of these layouts "
            f"(ROOT = data.root):\n{LAYOUTS}\n"
        )

    def prepare_data(self) -> None:
        if self.layout is None:
            self._download()
        super().prepare_data()

    def _download(self) -> None:
        log.info("data=celeba: downloading CelebA into %s with torchvision", self.root)
        try:
            download_celeba(self.root)
        except Exception as error:  # noqa: BLE001 - any failure: explain the manual download
            raise ConfigError(
                f"data=celeba: the download into data.root={self.root} failed "
                f"({type(error).__name__}: {error}). The Google Drive links torchvision uses are "
                f"often over quota. {MANUAL_DOWNLOAD}"
            ) from None
        self.layout = find_layout(self.root)
        if self.layout is None:
            raise ConfigError(self._not_found() + MANUAL_DOWNLOAD)

    def split_names(self) -> dict[str, list[str]]:
        """File names (relative to the image folder) of each partition, sorted."""
        if self._names is None:
            if self.layout is None:
                self._download()
            images, partition_file = self.layout
            if partition_file is not None:
                partition = read_partition(partition_file)
                self._names = {
                    split: sorted(n for n, p in partition.items() if p in PARTITIONS[split])
                    for split in PARTITIONS
                }
            else:
                log.info("data=celeba: no partition file in %s; splitting by a seeded hash", images)
                every = FileSource(images, list_images(images, recursive=False))
                parts = split_by_hash(every, HASH_FRACTIONS, self.split_seed)
                self._names = {split: part.names for split, part in parts.items()}
                self._names["all"] = every.names
        return self._names

    def split_label(self, split: str) -> str:
        return self.partitions.get(split, split)

    def source(self, split: str) -> FileSource:
        names = self.split_names()[self.partitions.get(split, split)]
        return FileSource(self.layout[0], names)

    # ------------------------------------------------------------------ labels
    def _attribute_rows(self) -> tuple[Path, list[str], dict]:
        """(attribute file, its 40 names, {file name: 0/1 row}), read once; ConfigError when
        the file is missing or malformed."""
        if self._attributes is None:
            if self.layout is None:
                self._download()
            path = find_attribute_file(self.root, self.layout[0])
            if path is None:
                raise ConfigError(
                    f"data=celeba data.labels=attributes: no list_attr_celeba.txt (torchvision) or "
                    f"list_attr_celeba.csv (Kaggle) in data.root={self.root}, {self.root}/celeba "
                    f"or beside the images {self.layout[0]}; download it with the images"
                )
            names, rows = read_celeba_attributes(path)
            self._attributes = path, names, rows
        return self._attributes

    def label_names(self) -> list[str]:
        path, names, _ = self._attribute_rows()
        attribute_indices(self.attributes, names, path)  # unknown names: ConfigError
        return list(self.attributes)

    def source_labels(self, split: str) -> Tensor:
        path, names, rows = self._attribute_rows()
        columns = attribute_indices(self.attributes, names, path)
        return lookup_rows(self.split_source(split).names, rows, columns, path)
