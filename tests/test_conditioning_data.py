"""Labels from the data (`data.labels`): shapes classes, folder classes (sub-folders and
stylegan2-ada's dataset.json), CelebA attributes in both layouts, LSUN refusing labels, labels
through the cache (skipped images), the splits, the batches and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganlab.data.celeba import CelebADataModule
from ganlab.data.folder import ImageFolderDataModule
from ganlab.data.labels import LabelledDataset
from ganlab.data.lsun import LSUNDataModule
from ganlab.data.shapes import SHAPE_KINDS, ShapesDataModule, render_shapes
from ganlab.utils import ConfigError
from tests.data_makers import write_celeba, write_lmdb

COLOURS = {"apple": (220, 30, 30), "berry": (30, 220, 30), "cherry": (30, 30, 220)}


def write_classes(root: Path, per_class: int = 6, corrupt: str | None = None) -> Path:
    """ROOT/<class>/<i>.png in one solid colour per class (COLOURS); `corrupt`: that class also
    gets an unreadable file sorted first."""
    for name, colour in COLOURS.items():
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (12, 12), colour).save(folder / f"{i}.png")
        if name == corrupt:
            (folder / "0_bad.png").write_bytes(b"not a png")
    return root


def folder_module(root: Path, tmp_path: Path, **kwargs) -> ImageFolderDataModule:
    options = dict(resolution=8, batch_size=4, cache_dir=str(tmp_path / "cache"),
                   cache_workers=0, val_fraction=0.25, labels="class")
    return ImageFolderDataModule(root=str(root), **(options | kwargs))


def colour_class(images: torch.Tensor) -> list[int]:
    """Class of each uint8 image [N, 3, r, r] by its dominant channel (COLOURS' order)."""
    return images.float().mean((2, 3)).argmax(1).tolist()


def all_items(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    return dataset.__getitems__(list(range(len(dataset))))


# ----------------------------------------------------------------------------- shapes
def test_shapes_class_labels_are_the_kind_of_the_one_shape():
    dm = ShapesDataModule(num_images=64, num_val_images=16, resolution=16, labels="class")
    dm.setup("fit")
    images, labels = all_items(dm.train_set)
    _, drawn = render_shapes(64, 16, 0, return_labels=True, max_shapes=1)
    assert (drawn["num_shapes"] == 1).all()
    torch.testing.assert_close(images, torch.from_numpy(render_shapes(64, 16, 0, max_shapes=1)))
    assert labels.shape == (64, len(SHAPE_KINDS)) and labels.sum(1).eq(1).all()
    assert labels.argmax(1).tolist() == drawn["kind"][:, 0].tolist()
    info = dm.label_info()
    assert info.kind == "class" and list(info.names) == list(SHAPE_KINDS)
    assert abs(sum(info.frequencies) - 1) < 1e-5


def test_shapes_without_labels_are_the_images_as_before():
    dm = ShapesDataModule(num_images=32, num_val_images=8, resolution=16)
    dm.setup("fit")
    assert not isinstance(dm.train_set, LabelledDataset) and dm.label_info() is None
    np.testing.assert_array_equal(dm.train_set.array, render_shapes(32, 16, 0))


def test_shapes_labelled_batches_through_the_loader_and_transfer():
    dm = ShapesDataModule(num_images=40, num_val_images=8, resolution=16, batch_size=8,
                          labels="class", max_images=24)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    images, labels = dm.on_after_batch_transfer(batch, 0)
    assert images.shape == (8, 3, 16, 16) and images.dtype == torch.float32
    assert labels.shape == (8, 4)
    # every image keeps its label: the label table row of the same source index
    _, drawn = render_shapes(40, 16, 0, return_labels=True, max_shapes=1)
    order = dm.train_sampler._order(0)[:8].tolist()
    subset = dm.train_set.indices
    expected = sorted(subset[i] for i in order)
    assert labels.argmax(1).tolist() == [int(drawn["kind"][i, 0]) for i in expected]


def test_lsun_and_unknown_label_modes_are_config_errors(tmp_path):
    write_lmdb(tmp_path / "church_outdoor_train_lmdb", 4)
    with pytest.raises(ConfigError, match="no class labels"):
        LSUNDataModule(root=str(tmp_path), labels="class", cache_dir=str(tmp_path / "c"))
    with pytest.raises(ConfigError, match="data.labels"):
        ShapesDataModule(labels="kinds")
    with pytest.raises(ConfigError, match="no attributes labels"):
        ShapesDataModule(labels="attributes")


# ----------------------------------------------------------------------------- folder
def test_folder_classes_are_the_sorted_sub_folders_and_survive_a_skipped_image(tmp_path):
    root = write_classes(tmp_path / "data", corrupt="apple")
    dm = folder_module(root, tmp_path, max_bad_fraction=0.2)
    info = dm.label_info()
    assert list(info.names) == sorted(COLOURS)
    dm.setup("fit")
    for dataset in (dm.train_set, dm.val_set):
        images, labels = all_items(dataset)
        assert colour_class(images) == labels.argmax(1).tolist()
    assert len(dm.train_set) + len(dm.val_set) == 18  # the corrupt file is skipped
    # a second datamodule opens the cache (no rebuild) and finds the same labels
    again = folder_module(root, tmp_path, max_bad_fraction=0.2)
    again.setup("fit")
    torch.testing.assert_close(all_items(again.train_set)[1], all_items(dm.train_set)[1])


def test_folder_classes_with_train_and_val_folders(tmp_path):
    for split in ("train", "val"):
        write_classes(tmp_path / "data" / split, per_class=2)
    dm = folder_module(tmp_path / "data", tmp_path)
    dm.setup("fit")
    assert list(dm.label_info().names) == sorted(COLOURS)
    images, labels = all_items(dm.val_set)
    assert len(images) == 6 and colour_class(images) == labels.argmax(1).tolist()


def test_folder_empty_class_folder_is_a_config_error(tmp_path):
    root = write_classes(tmp_path / "data")
    (root / "durian").mkdir()
    with pytest.raises(ConfigError, match="durian.*hold no images"):
        folder_module(root, tmp_path).label_info()


def test_folder_images_outside_class_folders_are_a_config_error(tmp_path):
    root = write_classes(tmp_path / "data")
    Image.new("RGB", (12, 12)).save(root / "loose.png")
    with pytest.raises(ConfigError, match="outside any class folder"):
        folder_module(root, tmp_path).label_info()


def test_folder_dataset_json_labels(tmp_path):
    root = write_classes(tmp_path / "data", per_class=3)
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*.png"))
    labels = [[name, 2 if name.startswith("apple") else 0] for name in names]
    (root / "dataset.json").write_text(json.dumps({"labels": labels}))
    dm = folder_module(root, tmp_path)
    assert list(dm.label_info().names) == ["0", "1", "2"]
    dm.setup("fit")
    images, table = all_items(dm.train_set)
    for cls, label in zip(colour_class(images), table.argmax(1).tolist()):
        assert label == (2 if cls == 0 else 0)


def test_folder_dataset_json_that_misses_images_is_a_config_error(tmp_path):
    root = write_classes(tmp_path / "data", per_class=2)
    (root / "dataset.json").write_text(json.dumps({"labels": [["apple/0.png", 1]]}))
    with pytest.raises(ConfigError, match="does not match"):
        folder_module(root, tmp_path).label_info()
    (root / "dataset.json").write_text(json.dumps({"labels": [["apple/0.png", "one"]]}))
    with pytest.raises(ConfigError, match="class index"):
        folder_module(root, tmp_path).label_info()


# ----------------------------------------------------------------------------- CelebA
ATTRIBUTES = ["5_o_Clock_Shadow", "Eyeglasses", "Smiling"]


def write_attributes(root: Path, layout: str, skip: int = 0, bad_line: bool = False) -> dict:
    """list_attr_celeba in the layout's format for the 34 images of `write_celeba`; Smiling on
    odd numbers, Eyeglasses on multiples of 3. Returns {file: [Smiling, Eyeglasses]}."""
    rows, truth = [], {}
    for number in range(1, 35):
        if 2 <= number < 2 + skip:  # in the train partition
            continue
        name = f"{number:06d}.jpg"
        values = [-1, 1 if number % 3 == 0 else -1, 1 if number % 2 else -1]
        truth[name] = [int(values[2] > 0), int(values[1] > 0)]
        rows.append((name, values))
    if bad_line:
        rows[3] = (rows[3][0], [1, "x", 1])
    if layout == "torchvision":
        text = [str(len(rows)), " ".join(ATTRIBUTES)]
        text += [f"{n} " + " ".join(f"{v:>2}" for v in vals) for n, vals in rows]
        (root / "celeba" / "list_attr_celeba.txt").write_text("\n".join(text) + "\n")
    else:
        text = ["image_id," + ",".join(ATTRIBUTES)]
        text += [f"{n}," + ",".join(str(v) for v in vals) for n, vals in rows]
        (root / "list_attr_celeba.csv").write_text("\n".join(text) + "\n")
    return truth


def celeba_module(root: Path, tmp_path: Path, **kwargs) -> CelebADataModule:
    options = dict(resolution=8, crop=178, cache_dir=str(tmp_path / "cache"), cache_workers=0,
                   labels="attributes", attributes=["Smiling", "Eyeglasses"])
    return CelebADataModule(root=str(root), **(options | kwargs))


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["torchvision", "kaggle"])
def test_celeba_attributes_multi_hot_in_both_layouts(tmp_path, layout):
    root = write_celeba(tmp_path / "celeba_root", layout)
    truth = write_attributes(root, layout)
    dm = celeba_module(root, tmp_path)
    info = dm.label_info()
    assert info.kind == "attributes" and list(info.names) == ["Smiling", "Eyeglasses"]
    dm.setup("fit")
    names = dm.split_source("train").names
    _, labels = all_items(dm.train_set)
    assert labels.tolist() == [truth[name] for name in names]


def test_celeba_unknown_attribute_lists_the_known_ones(tmp_path):
    root = write_celeba(tmp_path / "r", "torchvision")
    write_attributes(root, "torchvision")
    with pytest.raises(ConfigError, match="Smile.*known attributes: 5_o_Clock_Shadow, Eyeglasses"):
        celeba_module(root, tmp_path, attributes=["Smile"]).label_info()
    with pytest.raises(ConfigError, match="needs data.attributes"):
        celeba_module(root, tmp_path, attributes=[]).label_info()


def test_celeba_missing_malformed_or_short_attribute_files(tmp_path):
    root = write_celeba(tmp_path / "r", "kaggle")
    with pytest.raises(ConfigError, match="no list_attr_celeba"):
        celeba_module(root, tmp_path).label_info()
    write_attributes(root, "kaggle", bad_line=True)
    with pytest.raises(ConfigError, match="line 5"):
        celeba_module(root, tmp_path).label_info()
    write_attributes(root, "kaggle", skip=2)  # two images without attributes
    dm = celeba_module(root, tmp_path)
    with pytest.raises(ConfigError, match="no attributes for 2 of the"):
        dm.setup("fit")


def test_celeba_class_labels_are_refused(tmp_path):
    root = write_celeba(tmp_path / "r", "bare")
    with pytest.raises(ConfigError, match="no class labels.*attributes"):
        celeba_module(root, tmp_path, labels="class")
