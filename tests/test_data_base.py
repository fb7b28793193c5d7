"""ImageDataModule behaviour every dataset shares: resolution switching, the real-image fade,
flips, value ranges, per-stage batch sizes, batched reads."""

import numpy as np
import pytest
import torch

from ganlab.data.base import (
    ArrayImageDataset,
    ImageDataModule,
    ResizableBatchSampler,
    fade_reals,
    random_hflip,
    resize,
    to_float,
    to_uint8,
)


class ArrayDataModule(ImageDataModule):
    def __init__(self, array: np.ndarray, **kwargs) -> None:
        super().__init__(resolution=array.shape[-1], **kwargs)
        self.array = array

    def build_split(self, split: str) -> ArrayImageDataset:
        return ArrayImageDataset(self.array)


def random_images(num: int = 8, size: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (num, 3, size, size), generator=generator, dtype=torch.uint8)


def test_value_ranges_of_the_conversions():
    images = torch.tensor([0, 1, 127, 128, 254, 255], dtype=torch.uint8).view(1, 1, 2, 3)
    x = to_float(images)
    assert x.dtype == torch.float32 and x.min() == -1.0 and x.max() == 1.0
    assert torch.equal(to_uint8(x), images)  # round trip is exact
    clipped = to_uint8(torch.tensor([-3.0, 3.0]))
    assert torch.equal(clipped, torch.tensor([0, 255], dtype=torch.uint8))


def test_resize_filters_downsample_as_documented():
    x = to_float(random_images(2, 8))
    area = resize(x, 4, "area")
    assert torch.allclose(area[:, :, 0, 0], x[:, :, :2, :2].mean((-1, -2)))  # 2x2 block mean
    nearest = resize(x, 4, "nearest")
    assert torch.equal(nearest, x[:, :, ::2, ::2])  # every second pixel
    bilinear = resize(x, 4, "bilinear")
    assert bilinear.shape == (2, 3, 4, 4) and bilinear.min() >= -1 and bilinear.max() <= 1
    assert resize(x, 8) is x


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_fade_blends_the_reals_with_their_coarse_version(alpha):
    x = to_float(random_images(4, 8))
    coarse = x.unfold(2, 2, 2).unfold(3, 2, 2).mean((-1, -2))  # 2x2 box down
    coarse_up = coarse.repeat_interleave(2, -2).repeat_interleave(2, -1)  # nearest up
    expected = alpha * x + (1 - alpha) * coarse_up
    torch.testing.assert_close(fade_reals(x, alpha), expected)
    if alpha == 0.0:  # fully coarse: constant on every 2x2 block
        faded = fade_reals(x, alpha)
        assert torch.equal(faded[..., 0::2, 0::2], faded[..., 1::2, 1::2])
    if alpha == 1.0:
        assert torch.equal(fade_reals(x, alpha), x)


def test_flips_mirror_a_random_half_and_nothing_else():
    x = to_float(random_images(256, 4))
    flipped = random_hflip(x)
    same = (flipped == x).flatten(1).all(1)
    mirrored = (flipped == x.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all())  # each image is itself or its mirror image
    assert 90 < int((mirrored & ~same).sum()) < 166  # about half, binomial(256, 0.5) +- 4.6 sd


def test_set_resolution_switches_what_training_and_eval_batches_are():
    images = random_images(8, 16)
    dm = ArrayDataModule(images.numpy(), batch_size=4, hflip=False)
    for resolution, alpha in [(16, 1.0), (8, 1.0), (4, 0.5), (16, 0.0)]:
        dm.set_resolution(resolution, alpha)
        reals = dm.prepare_reals(images)
        assert reals.shape == (8, 3, resolution, resolution) and reals.dtype == torch.float32
        assert reals.min() >= -1 and reals.max() <= 1
        evals = dm.prepare_eval(images)
        assert evals.shape == (8, 3, resolution, resolution) and evals.dtype == torch.uint8
    dm.set_resolution(8, 1.0)
    torch.testing.assert_close(dm.prepare_reals(images), resize(to_float(images), 8, "area"))
    dm.set_resolution(16, 0.5)
    torch.testing.assert_close(dm.prepare_reals(images), fade_reals(to_float(images), 0.5))
    with pytest.raises(Exception, match="stage resolution=32"):
        dm.set_resolution(32)
    with pytest.raises(ValueError, match="alpha=1.5"):
        dm.set_resolution(8, 1.5)


def test_hflip_setting_applies_to_training_batches_only():
    images = random_images(64, 8)
    dm = ArrayDataModule(images.numpy(), batch_size=4, hflip=True)
    assert not torch.equal(dm.prepare_reals(images), to_float(images))
    assert torch.equal(dm.prepare_eval(images), images)
    assert torch.equal(ArrayDataModule(images.numpy(), hflip=False).prepare_reals(images),
                       to_float(images))


def test_batch_size_changes_apply_to_the_next_batches():
    dm = ArrayDataModule(random_images(40, 4).numpy(), batch_size=4)
    dm.setup("fit")
    iterator = iter(dm.train_dataloader())
    assert next(iterator).shape[0] == 4
    dm.set_batch_size(8)
    assert next(iterator).shape[0] == 8
    assert dm.val_dataloader().batch_sampler.batch_size == dm.eval_batch_size


def test_sampler_shards_and_reshuffles_deterministically():
    shards = [list(ResizableBatchSampler(20, 5, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    seen = sorted(i for shard in shards for batch in shard for i in batch)
    assert seen == list(range(20))
    sampler = ResizableBatchSampler(20, 5, seed=3)
    first, second = list(sampler), list(sampler)
    assert first != second and first == list(ResizableBatchSampler(20, 5, seed=3))


def test_batched_reads_return_the_requested_images():
    array = random_images(10, 4).numpy()
    dataset = ArrayImageDataset(array)
    batch = dataset.__getitems__([7, 2, 5])
    assert {bytes(img.numpy().tobytes()) for img in batch} == {
        array[i].tobytes() for i in (7, 2, 5)
    }
    assert torch.equal(dataset[3], torch.from_numpy(array[3]))
    with pytest.raises(ValueError, match="expected uint8"):
        ArrayImageDataset(array.astype(np.float32))
