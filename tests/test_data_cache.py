"""The preprocessed cache (build, reuse, rebuild after damage), decoding, bad files, splits."""

import io
import json
import logging
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from ganlab.data.base import collate_images
from ganlab.data.cache import (
    DecodedImageDataset,
    MemmapImageDataset,
    cache_key,
    cached_images,
    hash_split,
)
from ganlab.data.images import FileSource, Preprocess, list_images
from ganlab.utils import ConfigError
from tests.data_makers import BLUE, banded, write_folder


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    counts = write_folder(root)
    return root, counts


def build(cache_dir, source, resolution=8, **kwargs):
    preprocess = Preprocess(resolution)
    key = cache_key("test", "train", preprocess, source)
    return cached_images(cache_dir, key, source, preprocess, **kwargs), key


def test_listing_is_recursive_sorted_and_by_extension(folder):
    root, counts = folder
    names = list_images(root)
    assert len(names) == counts["good"] + counts["bad"]
    assert names == sorted(names) and "group0/deep/1.JPEG" not in names  # index 1 is odd: deep
    assert "group1/deep/1.JPEG" in names and "readme.txt" not in names
    assert {n.rsplit(".", 1)[1].lower() for n in names} == {"jpg", "jpeg", "png", "webp", "bmp"}


def test_build_skips_and_counts_bad_files_with_one_warning(folder, tmp_path, caplog):
    root, counts = folder
    source = FileSource(root, list_images(root))
    with caplog.at_level(logging.WARNING, logger="ganlab"):
        dataset, key = build(tmp_path / "cache", source, max_bad_fraction=0.1)
    assert len(dataset) == counts["good"]  # every mode converted to RGB, bad ones skipped
    assert dataset.array.shape == (counts["good"], 3, 8, 8) and dataset.array.dtype == np.uint8
    warnings = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(warnings) == 1 and "skipped 3 of 39 images" in warnings[0]
    assert "empty.jpg" in warnings[0]
    meta = json.loads(next((tmp_path / "cache").glob("*.json")).read_text())
    assert meta["num_bad"] == 3
    assert {name for name, _ in meta["bad"]} == {
        "group0/empty.jpg", "group1/notes.jpg", "group2/truncated.png"
    }


def test_too_many_bad_files_stop_with_an_error_naming_them(folder, tmp_path):
    root, _ = folder
    source = FileSource(root, list_images(root))
    with pytest.raises(ConfigError, match=r"3 of 39 images cannot be read, more than "
                       r"data.max_bad_fraction=0.01.*empty.jpg"):
        build(tmp_path / "cache", source)  # default 1%
    assert not list((tmp_path / "cache").glob("*.json"))  # nothing half-built is kept
    assert not list((tmp_path / "cache").glob("*.tmp*"))


@pytest.mark.slow
def test_cache_is_reused_and_rebuilt_after_damage(tmp_path, caplog):
    root = tmp_path / "images"
    root.mkdir()
    for index in range(12):
        Image.fromarray(banded(20, 24, 2, seed=index)).save(root / f"{index:02d}.png")
    source = FileSource(root, list_images(root))
    cache = tmp_path / "cache"
    first, key = build(cache, source, workers=2)  # the parallel build
    reference = np.array(first.array)
    data_file, meta_file = next(cache.glob("*.u8")), next(cache.glob("*.json"))
    assert key["resolution"] == 8 and "_8px_" in data_file.name and "test_train_" in data_file.name

    stamp = data_file.stat().st_mtime_ns
    again, _ = build(cache, source)
    assert data_file.stat().st_mtime_ns == stamp and np.array_equal(again.array, reference)

    damages = {
        "truncated": lambda: data_file.write_bytes(data_file.read_bytes()[:-100]),
        "flipped byte": lambda: data_file.write_bytes(
            data_file.read_bytes()[:50] + bytes([data_file.read_bytes()[50] ^ 1])
            + data_file.read_bytes()[51:]),
        "interrupted (no marker)": lambda: meta_file.unlink(),
        "garbage marker": lambda: meta_file.write_text("{not json"),
    }
    for damage in damages.values():
        damage()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="ganlab"):
            rebuilt, _ = build(cache, source)
        assert "rebuilding" in caplog.text
        assert np.array_equal(rebuilt.array, reference)
    # a different resolution or crop is another cache, beside the first
    build(cache, source, resolution=4)
    assert len(list(cache.glob("*.u8"))) == 2


def test_memmap_dataset_pickles_by_path_and_reads_in_a_worker(tmp_path):
    array = np.random.default_rng(0).integers(0, 255, (32, 3, 4, 4), dtype=np.uint8)
    path = tmp_path / "x.u8"
    array.tofile(path)
    dataset = MemmapImageDataset(path, array.shape)
    assert len(pickle.dumps(dataset)) < 1000  # not the images
    copy = pickle.loads(pickle.dumps(dataset))
    assert isinstance(copy.array, np.memmap) and np.array_equal(copy.array, array)
    sampler = torch.utils.data.BatchSampler(range(32), 8, drop_last=False)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=1,
                                         collate_fn=collate_images)
    assert torch.equal(torch.cat(list(loader)), torch.from_numpy(array))


def test_preprocess_crops_the_centre_and_converts_modes():
    def encode(image, fmt):
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
        return buffer.getvalue()

    portrait = Image.fromarray(banded(30, 50, 0))  # blue 30x30 centre, red top and bottom
    out, upscaled = Preprocess(8, crop=30)(encode(portrait, "PNG"))
    assert out.shape == (3, 8, 8) and out.dtype == np.uint8 and not upscaled
    assert np.abs(out.reshape(3, -1).mean(1) - BLUE).max() < 8  # no red from the bands
    out, _ = Preprocess(8, crop=None)(encode(portrait, "PNG"))  # shorter side: the same square
    assert np.abs(out.reshape(3, -1).mean(1) - BLUE).max() < 8
    for mode in ("L", "LA", "P", "RGBA", "CMYK", "I;16"):
        image = portrait.convert("RGBA" if mode == "LA" else mode)
        if mode == "LA":
            image = image.convert("LA")
        fmt = "JPEG" if mode == "CMYK" else "PNG"
        out, _ = Preprocess(8, crop=None)(encode(image, fmt))
        assert out.shape == (3, 8, 8), mode
        if mode in ("L", "LA", "I;16"):
            assert np.array_equal(out[0], out[1]) and np.array_equal(out[1], out[2]), mode


def test_small_images_are_upscaled_with_a_warning(tmp_path, caplog):
    root = tmp_path / "small"
    root.mkdir()
    Image.fromarray(banded(40, 40, 0)).save(root / "big.png")
    Image.fromarray(banded(10, 12, 0)).save(root / "small.png")
    source = FileSource(root, list_images(root))
    with caplog.at_level(logging.WARNING, logger="ganlab"):
        dataset, _ = build(tmp_path / "cache", source, resolution=16)
    assert len(dataset) == 2
    assert "1 images were smaller than 16 px and were upscaled, e.g. small.png" in caplog.text


def test_decode_path_skips_bad_items_instead_of_crashing(folder):
    root, _ = folder
    names = ["group0/empty.jpg"] + [n for n in list_images(root) if n.endswith(".bmp")]
    dataset = DecodedImageDataset(FileSource(root, names), Preprocess(8))
    first = dataset[0]  # unreadable: the next readable image instead
    assert torch.equal(first, dataset[1]) and dataset.num_bad == 1


def test_hash_split_is_deterministic_seeded_and_stable_under_additions():
    names = [f"img{i:04d}.png" for i in range(2000)]
    split = hash_split(names, {"val": 0.1, "train": 0.9}, seed=0)
    assert sorted(split["val"] + split["train"]) == list(range(2000))
    assert 150 < len(split["val"]) < 250
    assert split == hash_split(names, {"val": 0.1, "train": 0.9}, seed=0)
    assert split != hash_split(names, {"val": 0.1, "train": 0.9}, seed=1)
    more = hash_split(names + ["new.png"], {"val": 0.1, "train": 0.9}, seed=0)
    assert more["val"][: len(split["val"])] == split["val"]
    tiny = hash_split(["a.png", "b.png"], {"val": 0.01, "train": 0.99}, seed=0)
    assert len(tiny["val"]) == 1 and len(tiny["train"]) == 1


def test_exif_orientation_is_applied():
    array = np.zeros((40, 40, 3), np.uint8)
    array[:, 20:] = 255  # left black, right white as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", exif=exif)
    out, _ = Preprocess(8)(buffer.getvalue())
    assert out[:, 0].mean() < 30 and out[:, -1].mean() > 225  # displayed: top black, bottom white


@pytest.mark.slow
def test_decode_workers_restore_default_signal_handlers(folder, tmp_path):
    # Lightning leaves a SIGTERM handler that does not exit; forked decode workers inherit it,
    # and Pool.terminate() (SIGTERM) hung on such a worker. Workers reset the handlers first.
    import signal

    from ganlab.data.images import init_worker

    root, counts = folder
    previous = signal.signal(signal.SIGTERM, lambda *args: None), signal.getsignal(signal.SIGINT)
    try:
        init_worker(FileSource(root, list_images(root)), Preprocess(8))
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        dataset, _ = build(tmp_path / "cache", FileSource(root, list_images(root)), workers=2,
                           max_bad_fraction=0.1)
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    assert len(dataset) == counts["good"]
