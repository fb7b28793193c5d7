"""Labels from the data (`data.labels=none|class|attributes`): readers, checks and the dataset that
hands them out with the images.

A label is a float32 vector [K] per image: one-hot for a class, multi-hot 0/1 for attributes.
With labels on, a dataset item is (uint8 image [3, R, R], label [K]) and a batch (images
[B, 3, R, R], labels [B, K]); without, an item is the image alone, as before. Labels are looked
up by the same index as the images, so the cache, `data.max_images`, the sampler's shuffling and
sharding, the train / val splits and exact resume treat them exactly like the images.

Where labels come from (written in each datamodule):
    shapes      class: the kind of the image's one shape (disc, square, triangle, ring); with
                labels on, every image has one shape (`ShapesDataModule.max_shapes`)
    folder      class: the first sub-folder of each file, sorted by name (torchvision
                ImageFolder's classes), or stylegan2-ada's dataset.json {"labels": [[path, int]]}
    celeba      attributes: data.attributes=[Smiling, ...] from list_attr_celeba.txt (torchvision)
                or list_attr_celeba.csv (Kaggle), -1 / 1 read as 0 / 1
    lsun        none (asking for labels is a ConfigError)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ganlab.logs import get_logger
from ganlab.utils import ConfigError

log = get_logger(__name__)

LABEL_MODES = ("none", "class", "attributes")


def check_label_mode(labels: str, supported: Sequence[str], dataset: str) -> None:
    """ConfigError unless `data.labels` is a known mode this dataset supports."""
    if labels not in LABEL_MODES:
        raise ConfigError(f"data.labels={labels!r} is not one of {list(LABEL_MODES)}")
    if labels != "none" and labels not in supported:
        has = " or ".join(f"data.labels={mode}" for mode in supported) or "no labels"
        raise ConfigError(
            f"data={dataset} has no {labels} labels (it supports {has}); set data.labels=none "
            "for an unconditional run"
        )


@dataclass(frozen=True)
class LabelInfo:
    """What the model needs to know about the labels: kind (class | attributes), the names of the
    K classes or attributes, and their frequencies in the training split (class shares, or each
    attribute's share of 1s), used to draw labels for fakes."""

    kind: str
    names: tuple[str, ...]
    frequencies: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.names)


def label_info(kind: str, names: Sequence[str], table: Tensor) -> LabelInfo:
    """LabelInfo of a training label table [N, K] (one-hot or multi-hot)."""
    frequencies = table.float().mean(0) if len(table) else torch.zeros(len(names))
    return LabelInfo(kind, tuple(names), tuple(round(float(f), 6) for f in frequencies))


def one_hot(classes: np.ndarray | Sequence[int], num_classes: int) -> Tensor:
    """int class indices [N] -> float32 one-hot [N, K]."""
    index = torch.as_tensor(np.asarray(classes, dtype=np.int64))
    return torch.nn.functional.one_hot(index, num_classes).float()


def describe(info: LabelInfo, table: Tensor, split: str) -> str:
    """'class counts of the train split: disc 2510, square 2466, ...' (attributes: ones)."""
    counts = table.sum(0).long().tolist()
    what = "class counts" if info.kind == "class" else "images with each attribute"
    pairs = ", ".join(f"{name} {count}" for name, count in zip(info.names, counts))
    return f"{what} of the {split} split ({len(table)} images): {pairs}"


class LabelledDataset(Dataset):
    """(image, label) items: `images` (uint8 [3, R, R] items, any dataset) with `labels`
    float32 [N, K], row i the label of image i.

    `__getitems__` (one batch) returns (images [B, 3, R, R], labels [B, K]) in ascending index
    order: the image datasets read a batch sorted (a memory map reads forward), so the labels are
    taken in the same order and stay with their images.
    """

    def __init__(self, images: Dataset, labels: Tensor) -> None:
        if len(images) != len(labels):
            raise ConfigError(
                f"{len(labels)} labels for {len(images)} images: the label source does not match "
                "the images (rebuild the cache or check the label file)"
            )
        self.images, self.labels = images, labels.float()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        order = sorted(int(i) for i in indices)
        if hasattr(self.images, "__getitems__"):
            images = self.images.__getitems__(order)
        else:
            images = torch.stack([self.images[i] for i in order])
        return images, self.labels[order]


def collate(batch: Tensor | tuple | Sequence) -> Tensor | tuple[Tensor, Tensor]:
    """The loaders' collate: a batch from `__getitems__` arrives stacked (images, or (images,
    labels)); single items (images, or (image, label) pairs) are stacked here."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, tuple) and len(batch) == 2 and isinstance(batch[1], Tensor) and (
        batch[0].dim() == 4
    ):
        return batch
    items = list(batch)
    if isinstance(items[0], tuple):
        return torch.stack([i for i, _ in items]), torch.stack([label for _, label in items])
    return torch.stack(items)


def images_of(item: Tensor | tuple[Tensor, Tensor]) -> Tensor:
    """The image(s) of a dataset item or batch, with or without its label(s)."""
    return item if isinstance(item, Tensor) else item[0]


# ----------------------------------------------------------------------------- folder classes
def folder_class_names(names: Sequence[str], root: str | Path) -> tuple[list[str], list[int]]:
    """Classes of files (paths relative to root, '/'-separated) by their first sub-folder, as
    torchvision's ImageFolder names them: the sorted folder names. Returns (class names, class
    index per file). ConfigError for files directly under root (no class folder)."""
    top = [name.split("/", 1)[0] if "/" in name else None for name in names]
    loose = [name for name, folder in zip(names, top) if folder is None]
    if loose:
        raise ConfigError(
            f"data=folder data.labels=class: {len(loose)} images lie directly in "
            f"data.root={root} (e.g. {loose[0]}), outside any class folder; put every image in "
            "ROOT/<class>/ (one sub-folder per class), or add a dataset.json"
        )
    classes = sorted(set(top))  # type: ignore[arg-type]
    index = {name: k for k, name in enumerate(classes)}
    return classes, [index[folder] for folder in top]  # type: ignore[index]


def check_class_folders(root: str | Path, classes: Sequence[str]) -> None:
    """ConfigError naming any sub-folder of root that holds no image (an empty class)."""
    from ganlab.data.images import has_images

    root = Path(root)
    empty = sorted(
        entry.name for entry in os.scandir(root)
        if entry.is_dir() and not entry.name.startswith(".") and entry.name not in classes
        and not has_images(entry.path)
    )
    if empty:
        raise ConfigError(
            f"data=folder data.labels=class: the class folder(s) {empty} under data.root={root} "
            "hold no images; remove them or add images (every sub-folder is a class)"
        )


def read_dataset_json(path: str | Path) -> dict[str, int] | None:
    """stylegan2-ada's dataset.json {"labels": [["sub/1.png", 0], ...]} -> {path: class}; None
    when `labels` is null. ConfigError when malformed."""
    try:
        data = json.loads(Path(path).read_text())
        labels = data.get("labels") if isinstance(data, dict) else data
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read the labels in {path}: {error}") from None
    if labels is None:
        return None
    out: dict[str, int] = {}
    for entry in labels if isinstance(labels, list) else [labels]:
        if (not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[0], str)
                or isinstance(entry[1], bool) or not isinstance(entry[1], int) or entry[1] < 0):
            raise ConfigError(
                f"{path}: expected {{\"labels\": [[\"sub/1.png\", 0], ...]}} (a path and a class "
                f"index >= 0 per image), got the entry {entry!r}"
            )
        out[entry[0].replace("\\", "/")] = entry[1]
    return out


# ----------------------------------------------------------------------------- CelebA attributes
ATTRIBUTE_FILES = (
    "celeba/list_attr_celeba.txt",
    "list_attr_celeba.csv",
    "list_attr_celeba.txt",
    "celeba/list_attr_celeba.csv",
)


def find_attribute_file(root: str | Path, image_dir: str | Path) -> Path | None:
    """list_attr_celeba.txt / .csv in ROOT, ROOT/celeba, beside or above the image folder."""
    root, image_dir = Path(root), Path(image_dir)
    candidates = [root / name for name in ATTRIBUTE_FILES] + [
        folder / f"list_attr_celeba.{ext}" for folder in (image_dir, image_dir.parent)
        for ext in ("txt", "csv")
    ]
    return next((path for path in candidates if path.is_file()), None)


def read_celeba_attributes(path: str | Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """(the 40 attribute names, {file name: int8 [40] of 0 / 1}) from list_attr_celeba.txt
    (line 1 the image count, line 2 the names, then "000001.jpg -1  1 ..." with one or two spaces)
    or list_attr_celeba.csv (header "image_id,5_o_Clock_Shadow,...", then -1 / 1 values).
    ConfigError (file and line) when malformed."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read the CelebA attribute file {path}: {error}") from None
    csv = path.suffix.lower() == ".csv"
    if csv:
        header, first, count = lines[0].split(",") if lines else [], 1, None
        if not header or header[0] != "image_id":
            raise ConfigError(f"{path}: line 1 must be the header 'image_id,5_o_Clock_Shadow,...'")
        names = [name.strip() for name in header[1:]]
    else:
        if len(lines) < 2 or not lines[0].strip().isdigit():
            raise ConfigError(
                f"{path}: expected the torchvision layout (line 1 the image count, line 2 the "
                "attribute names, then 'NAME.jpg -1 1 ...')"
            )
        count, names, first = int(lines[0]), lines[1].split(), 2
    rows: dict[str, np.ndarray] = {}
    for number, line in enumerate(lines[first:], first + 1):
        fields = line.split(",") if csv else line.split()
        if not fields or not line.strip():
            continue
        values = fields[1:]
        if len(values) != len(names) or any(v.strip() not in ("-1", "1", "0") for v in values):
            raise ConfigError(
                f"{path}, line {number}: expected a file name and {len(names)} values of -1 / 1, "
                f"got {line.strip()[:120]!r}"
            )
        rows[fields[0].strip()] = (np.array([int(v) for v in values]) > 0).astype(np.int8)
    if count is not None and count != len(rows):
        raise ConfigError(f"{path}: line 1 says {count} images, the file lists {len(rows)}")
    return names, rows


def attribute_indices(wanted: Sequence[str], names: Sequence[str], path: str | Path) -> list[int]:
    """Positions of the wanted attributes among the file's names; ConfigError listing the known
    names for an unknown one."""
    if not wanted:
        raise ConfigError(
            "data.labels=attributes needs data.attributes, e.g. "
            "data.attributes=[Smiling,Eyeglasses]"
        )
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise ConfigError(
            f"data.attributes: {unknown} not in {path}; known attributes: {', '.join(names)}"
        )
    if len(set(wanted)) != len(wanted):
        raise ConfigError(f"data.attributes={list(wanted)} names an attribute twice")
    return [list(names).index(name) for name in wanted]


def lookup_rows(files: Sequence[str], rows: dict[str, np.ndarray], columns: Sequence[int],
                path: str | Path) -> Tensor:
    """Label table float32 [len(files), K] of the files (base names looked up in `rows`);
    ConfigError naming missing files (a label count that does not match the images)."""
    missing = [name for name in files if os.path.basename(name) not in rows]
    if missing:
        raise ConfigError(
            f"{path} has no attributes for {len(missing)} of the {len(files)} images (e.g. "
            f"{missing[0]}): the attribute file does not match the images"
        )
    table = np.stack([rows[os.path.basename(name)][list(columns)] for name in files])
    return torch.from_numpy(table.astype(np.float32))
