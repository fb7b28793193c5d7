"""data=celeba in its three on-disk layouts: splits, crop, shapes, errors, a short training run."""

import numpy as np
import pytest
import torch

from ganlab.data import celeba
from ganlab.data.celeba import CelebADataModule, read_partition
from ganlab.training.fit import build, train
from ganlab.utils import ConfigError
from tests.conftest import read_metrics
from tests.data_makers import BLUE, CELEBA_SPLITS, write_celeba


def datamodule(root, tmp_path, **kwargs):
    kwargs = {"resolution": 16, "batch_size": 4, "cache_dir": str(tmp_path / "cache"),
              "cache_workers": 0, **kwargs}
    return CelebADataModule(root=str(root), **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["torchvision", "kaggle"])
def test_partition_file_gives_the_official_splits(tmp_path, layout):
    root = write_celeba(tmp_path / "data", layout)
    dm = datamodule(root, tmp_path)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set)) == (CELEBA_SPLITS["train"], CELEBA_SPLITS["valid"])
    assert len(dm.build_split("test")) == CELEBA_SPLITS["test"]
    names = dm.split_names()
    assert names["train"][0] == "000001.jpg" and names["valid"][0] == "000025.jpg"
    assert len(datamodule(root, tmp_path, val_split="test").build_split("val")) == 4
    assert len(datamodule(root, tmp_path, train_split="all").build_split("train")) == 34


def test_bare_folder_is_split_by_a_seeded_hash(tmp_path):
    root = write_celeba(tmp_path / "data", "bare")
    dm = datamodule(root, tmp_path)
    names = dm.split_names()
    sizes = [len(names[s]) for s in ("train", "valid", "test")]
    assert sum(sizes) == 34 and min(sizes) >= 1 and sizes[0] > sizes[1]
    assert names == datamodule(root, tmp_path, seed=5).split_names()  # not the training seed
    assert names != datamodule(root, tmp_path, split_seed=1).split_names()
    # data.root may also be the image folder itself
    assert datamodule(root / "img_align_celeba", tmp_path).split_names() == names


def test_partition_formats_parse_the_same(tmp_path):
    (tmp_path / "a.txt").write_text("000001.jpg 0\n000002.jpg 2\n")
    (tmp_path / "a.csv").write_text("image_id,partition\n000001.jpg,0\n000002.jpg,2\n")
    assert read_partition(tmp_path / "a.txt") == read_partition(tmp_path / "a.csv") == {
        "000001.jpg": 0, "000002.jpg": 2}
    (tmp_path / "bad.txt").write_text("000001.jpg 7\n")
    with pytest.raises(ConfigError, match=r"bad.txt, line 1: expected 'NAME.jpg 0\|1\|2'"):
        read_partition(tmp_path / "bad.txt")


@pytest.mark.parametrize("resolution", [8, 16, 32])
def test_images_are_centre_cropped_uint8_at_the_final_resolution(tmp_path, resolution):
    root = write_celeba(tmp_path / "data", "torchvision")
    dm = datamodule(root, tmp_path, resolution=resolution, num_images=8)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 3, resolution, resolution) and batch.dtype == torch.uint8
    colour = batch.float().mean((0, 2, 3)).numpy()
    assert np.abs(colour - BLUE).max() < 8  # crop 178 of 178x218: none of the red bands
    reals = dm.prepare_reals(batch)
    assert reals.min() >= -1 and reals.max() <= 1 and reals.dtype == torch.float32
    dm.set_resolution(4)
    assert dm.prepare_reals(batch).shape == (4, 3, 4, 4)
    wide = datamodule(root, tmp_path, resolution=resolution, num_images=8, crop=200)
    red = wide.build_split("train").array[..., 0].mean()
    assert red > colour[0] + 10  # a crop taller than 178 px takes in the red bands


def test_missing_or_empty_root_names_the_path_and_the_layouts(tmp_path):
    for root in (tmp_path / "nowhere", tmp_path):
        with pytest.raises(ConfigError) as error:
            datamodule(root, tmp_path)
        message = str(error.value)
        assert f"data=celeba: data.root={root}" in message
        assert "ROOT/celeba/img_align_celeba/*.jpg + ROOT/celeba/list_eval_partition.txt" in message
        kaggle = "ROOT/img_align_celeba/img_align_celeba/*.jpg + ROOT/list_eval_partition.csv"
        assert kaggle in message
        assert "ROOT/img_align_celeba/*.jpg" in message and "data.download=true" in message


def test_failed_download_explains_the_manual_download(tmp_path, monkeypatch):
    def offline(root):
        raise RuntimeError("no network")

    monkeypatch.setattr(celeba, "download_celeba", offline)
    dm = datamodule(tmp_path / "empty", tmp_path, download=True)  # no error until prepare_data
    with pytest.raises(ConfigError, match=r"(?s)download into data.root=.*failed \(RuntimeError: "
                       r"no network\).*mmlab.ie.cuhk.edu.hk.*jessicali9530/celeba-dataset.*"
                       r"ROOT/celeba/img_align_celeba"):
        dm.prepare_data()


def test_download_lands_in_the_torchvision_layout(tmp_path, monkeypatch):
    monkeypatch.setattr(celeba, "download_celeba", lambda root: write_celeba(tmp_path / "dl",
                                                                             "torchvision"))
    dm = datamodule(tmp_path / "dl", tmp_path, download=True)
    dm.prepare_data()
    assert len(dm.build_split("train")) == CELEBA_SPLITS["train"]


def test_bad_values_are_config_errors(tmp_path):
    root = write_celeba(tmp_path / "data", "kaggle")
    for kwargs, message in [({"val_split": "validation"}, "data.val_split='validation'"),
                            ({"crop": 0}, "data.crop=0"),
                            ({"resize_filter": "cubic"}, "data.resize_filter='cubic'"),
                            ({"max_bad_fraction": 2}, "data.max_bad_fraction=2")]:
        with pytest.raises(ConfigError, match=message):
            datamodule(root, tmp_path, **kwargs)


@pytest.mark.slow
def test_trains_a_few_steps_from_the_command_line_config(make_cfg, tmp_path):
    root = write_celeba(tmp_path / "data", "kaggle")
    cfg = make_cfg("data=celeba", f"data.root={root}", "data.cache_workers=0", "kimg=null",
                   "trainer.max_steps=4")
    assert cfg.data.cache_dir == str(tmp_path / "cache" / "data")
    train(cfg)
    assert max(read_metrics(tmp_path / "run")["train/kimg"]) == pytest.approx(0.032)
    assert len(list((tmp_path / "cache" / "data").glob("celeba_train_crop178_16px_*.u8"))) == 1


@pytest.mark.slow
def test_bad_root_fails_in_build_before_training(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="data=celeba: data.root=.*does not exist"):
        build(make_cfg("data=celeba", f"data.root={tmp_path}/missing"))
