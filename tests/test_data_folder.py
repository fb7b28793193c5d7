"""data=folder: any tree of mixed-format images with a few corrupt files; splits; errors; a run."""

import logging

import pytest
import torch
from PIL import Image

from ganlab.data.folder import ImageFolderDataModule
from ganlab.training.fit import build, train
from ganlab.utils import ConfigError
from tests.conftest import read_metrics
from tests.data_makers import write_folder


def datamodule(root, tmp_path, **kwargs):
    kwargs = {"resolution": 16, "batch_size": 4, "cache_dir": str(tmp_path / "cache"),
              "cache_workers": 0, "max_bad_fraction": 0.1, "val_fraction": 0.2, **kwargs}
    return ImageFolderDataModule(root=str(root), **kwargs)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    return root, write_folder(root)


def test_mixed_formats_load_with_corrupt_files_skipped(folder, tmp_path, caplog):
    root, counts = folder
    dm = datamodule(root, tmp_path)
    with caplog.at_level(logging.WARNING, logger="ganlab"):
        dm.setup("fit")
    names = dm.split_names()
    assert len(names["train"]) + len(names["val"]) == counts["good"] + counts["bad"]
    assert not set(names["train"]) & set(names["val"])
    assert len(dm.train_set) + len(dm.val_set) == counts["good"]
    assert "cannot be read" in caplog.text
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 3, 16, 16) and batch.dtype == torch.uint8
    assert len(dm.val_set.array) == len(dm.val_set)


def test_split_is_a_deterministic_seeded_hash_of_the_path(folder, tmp_path):
    root, _ = folder
    names = datamodule(root, tmp_path).split_names()
    assert names == datamodule(root, tmp_path, seed=3).split_names()
    assert names != datamodule(root, tmp_path, split_seed=3).split_names()


def test_train_and_val_subfolders_are_used_as_given(tmp_path):
    for split, count in (("train", 6), ("val", 2)):
        (tmp_path / "data" / split).mkdir(parents=True)
        for index in range(count):
            Image.new("RGB", (20, 20), (index * 30, 0, 0)).save(
                tmp_path / "data" / split / f"{index}.png")
    names = datamodule(tmp_path / "data", tmp_path).split_names()
    assert [len(names["train"]), len(names["val"])] == [6, 2]
    assert names["val"] == ["val/0.png", "val/1.png"]


def test_missing_empty_and_unset_roots_are_config_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(ConfigError, match=r"data=folder: data.root=.*nowhere does not exist.*"
                       r"\.jpg, \.jpeg, \.png, \.webp, \.bmp"):
        datamodule(tmp_path / "nowhere", tmp_path)
    with pytest.raises(ConfigError, match=r"data.root=.*empty holds no images"):
        datamodule(tmp_path / "empty", tmp_path)
    with pytest.raises(ConfigError, match=r"data.root is not set: data=folder needs data.root="):
        ImageFolderDataModule(root=None)


def test_uncached_decode_path_serves_the_same_shapes(folder, tmp_path):
    root, _ = folder
    dm = datamodule(root, tmp_path, cache=False, num_images=8)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 3, 16, 16) and batch.dtype == torch.uint8
    assert not list((tmp_path / "cache").glob("*"))


@pytest.mark.slow
def test_trains_a_few_steps_from_the_command_line_config(make_cfg, folder, tmp_path):
    root, _ = folder
    cfg = make_cfg("data=folder", f"data.root={root}", "data.cache_workers=0",
                   "data.max_bad_fraction=0.1", "data.batch_size=8", "kimg=null",
                   "trainer.max_steps=4")
    train(cfg)
    assert max(read_metrics(tmp_path / "run")["train/kimg"]) == pytest.approx(0.016)


@pytest.mark.slow
def test_too_many_bad_files_fail_before_training(make_cfg, folder):
    root, _ = folder
    datamodule_, model, trainer = build(make_cfg("data=folder", f"data.root={root}",
                                                 "data.cache_workers=0"))
    with pytest.raises(ConfigError, match=r"images cannot be read, more than "
                       r"data.max_bad_fraction=0.01"):
        trainer.fit(model, datamodule=datamodule_)
    assert model.nimg == 0


def test_replacing_an_image_rebuilds_the_cache_and_the_fid_statistics(tmp_path):
    """Images replaced under the same names (size / mtime change) are not served from the old
    cache, and the FID real statistics are computed again (a new key)."""
    from ganlab.metrics.evaluator import FIDEvaluator
    from tests.data_makers import banded
    from tests.fid_helpers import StubModule, TinyFeatures

    root = tmp_path / "images"
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        for index in range(6):
            Image.fromarray(banded(20, 20, 2, seed=index)).save(root / split / f"{index}.png")

    def evaluate():
        dm = datamodule(root, tmp_path)
        dm.setup("fit")
        fid = FIDEvaluator(feature_extractor=TinyFeatures(), num_real=6, num_fake=6,
                           batch_size=6, cache_dir=str(tmp_path / "fid"))
        fid.evaluate(StubModule(dm), dm)
        return dm.val_set.array.copy(), sorted((tmp_path / "fid").glob("*.npz"))

    before, entries = evaluate()
    assert len(entries) == 1
    replaced = root / "val" / "3.png"
    Image.fromarray(255 - banded(20, 20, 5, seed=99)).save(replaced)  # same name, other image
    after, entries = evaluate()
    assert not (after == before).all(axis=(1, 2, 3))[3]  # the new image, not the cached one
    assert (after[:3] == before[:3]).all() and (after[4:] == before[4:]).all()
    assert len(entries) == 2  # a new FID statistics entry, not the stale one


def test_lmdb_fingerprint_follows_its_data_file(tmp_path):
    from ganlab.data.images import LmdbSource
    from tests.data_makers import write_lmdb

    path = tmp_path / "db_lmdb"
    keys = write_lmdb(path, 4)
    before = LmdbSource(path, keys).fingerprint()  # (not scanned: that keeps the LMDB open)
    assert LmdbSource(path, keys).fingerprint() == before  # stable when nothing changed
    import lmdb

    env = lmdb.open(str(path), map_size=64 << 20)
    with env.begin(write=True) as txn:  # the same keys, one other image
        txn.put(keys[0], txn.get(keys[1]))
    env.close()
    assert LmdbSource(path, keys).fingerprint() != before
