"""data=lsun_church: the LMDBs (WebP values), the exported folder, errors, a short training run."""

import sys

import lmdb
import numpy as np
import pytest
import torch
from PIL import Image

from ganlab.data.lsun import LSUNDataModule
from ganlab.training.fit import train
from ganlab.utils import ConfigError
from tests.conftest import read_metrics
from tests.data_makers import BLUE, banded, write_lmdb


def datamodule(root, tmp_path, **kwargs):
    kwargs = {"resolution": 16, "batch_size": 4, "cache_dir": str(tmp_path / "cache"),
              "cache_workers": 0, **kwargs}
    return LSUNDataModule(root=str(root), **kwargs)


@pytest.fixture
def lsun_root(tmp_path):
    root = tmp_path / "lsun"
    root.mkdir()
    write_lmdb(root / "church_outdoor_train_lmdb", 24, seed=0)
    write_lmdb(root / "church_outdoor_val_lmdb", 6, seed=1)
    return root


def test_lmdb_splits_shapes_and_shorter_side_centre_crop(lsun_root, tmp_path):
    dm = datamodule(lsun_root, tmp_path)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set)) == (24, 6)
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 3, 16, 16) and batch.dtype == torch.uint8
    # landscape WebPs, blue square of the shorter side in the middle, red left and right
    assert np.abs(dm.train_set.array.reshape(24, 3, -1).mean((0, 2)) - BLUE).max() < 10
    dm.set_resolution(8, alpha=0.5)
    reals = dm.prepare_reals(batch)
    assert reals.shape == (4, 3, 8, 8) and reals.min() >= -1 and reals.max() <= 1
    assert len(datamodule(lsun_root, tmp_path, val_split="train").build_split("val")) == 24
    assert len(list((tmp_path / "cache").glob("lsun_church_train_*.u8"))) == 1  # shared


def test_root_may_be_the_train_lmdb_itself_and_val_may_be_missing(lsun_root, tmp_path):
    dm = datamodule(lsun_root / "church_outdoor_train_lmdb", tmp_path)
    assert len(dm.build_split("val")) == 6  # the sibling val LMDB
    only_train = tmp_path / "only_train"
    only_train.mkdir()
    write_lmdb(only_train / "church_outdoor_train_lmdb", 40)
    dm = datamodule(only_train, tmp_path, val_fraction=0.2)
    train_keys = set(dm.split_source("train").keys)
    val_keys = set(dm.split_source("val").keys)
    assert len(train_keys) + len(val_keys) == 40 and not train_keys & val_keys
    assert 1 <= len(val_keys) <= 16


def test_exported_folder_gives_the_same_images(lsun_root, tmp_path):
    exported = tmp_path / "exported"
    for split, path in [("train", "church_outdoor_train_lmdb"), ("val", "church_outdoor_val_lmdb")]:
        env = lmdb.open(str(lsun_root / path), readonly=True, lock=False)
        with env.begin() as txn:
            for key, value in txn.cursor():
                name = key.decode()
                folder = exported / f"church_outdoor_{split}" / "/".join(name[:3])
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{name}.webp").write_bytes(value)
        env.close()
    from_folder = datamodule(exported, tmp_path)
    from_lmdb = datamodule(lsun_root, tmp_path)
    for split in ("train", "val"):
        assert np.array_equal(from_folder.build_split(split).array,
                              from_lmdb.build_split(split).array)


def test_corrupt_lmdb_values_are_skipped_or_stop_the_run(tmp_path):
    root = tmp_path / "lsun"
    root.mkdir()
    write_lmdb(root / "church_outdoor_train_lmdb", 30, bad=1)
    write_lmdb(root / "church_outdoor_val_lmdb", 4, seed=1)
    assert len(datamodule(root, tmp_path, max_bad_fraction=0.05).build_split("train")) == 29
    with pytest.raises(ConfigError, match=r"1 of 30 images cannot be read.*"
                       r"church_outdoor_train_lmdb\[00000029"):
        datamodule(root, tmp_path).build_split("train")  # default 1%


def test_missing_root_names_the_path_and_the_layouts(tmp_path):
    with pytest.raises(ConfigError) as error:
        datamodule(tmp_path / "nowhere", tmp_path)
    message = str(error.value)
    assert f"data=lsun_church: data.root={tmp_path / 'nowhere'} does not exist" in message
    assert "ROOT/church_outdoor_train_lmdb/ (data.mdb) + ROOT/church_outdoor_val_lmdb/" in message
    assert "ROOT/church_outdoor_train/**/*.webp" in message


def test_unopenable_lmdb_and_missing_package_are_config_errors(tmp_path, monkeypatch):
    broken = tmp_path / "broken"
    (broken / "church_outdoor_train_lmdb").mkdir(parents=True)
    (broken / "church_outdoor_train_lmdb" / "data.mdb").write_bytes(b"\0garbage" * 100)
    with pytest.raises(ConfigError, match=r"cannot open the LMDB .*church_outdoor_train_lmdb"):
        datamodule(broken, tmp_path)
    monkeypatch.setitem(sys.modules, "lmdb", None)  # `import lmdb` fails
    with pytest.raises(ConfigError, match=r"needs the `lmdb` package: pip install 'lmdb>=1.4'"):
        datamodule(broken, tmp_path)


@pytest.mark.slow
def test_trains_a_few_steps_from_the_command_line_config(make_cfg, lsun_root, tmp_path):
    cfg = make_cfg("data=lsun_church", f"data.root={lsun_root}", "data.cache_workers=0",
                   "data.batch_size=8", "kimg=null", "trainer.max_steps=4")
    train(cfg)
    assert max(read_metrics(tmp_path / "run")["train/kimg"]) == pytest.approx(0.016)


def test_small_webp_images_are_upscaled_not_fatal(tmp_path, caplog):
    root = tmp_path / "tiny"
    (root / "church_outdoor_train").mkdir(parents=True)
    for index in range(3):
        image = Image.fromarray(banded(12, 10, 0, index))
        image.save(root / "church_outdoor_train" / f"{index}.webp")
    dm = datamodule(root, tmp_path, val_fraction=0.3)
    assert dm.build_split("train").array.shape[1:] == (3, 16, 16)
    assert "smaller than 16 px and were upscaled" in caplog.text
