import numpy as np

from ganlab.data.shapes import ShapesDataModule, render_shapes


def test_render_is_deterministic_per_seed_and_varied():
    a, b, c = render_shapes(16, 16, seed=1), render_shapes(16, 16, seed=1), render_shapes(16, 16, 2)
    assert a.shape == (16, 3, 16, 16) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert len({img.tobytes() for img in a}) == 16  # no repeated image
    assert a.std() > 20  # shapes on backgrounds, not flat colour


def test_datamodule_serves_float_reals_at_the_current_resolution():
    dm = ShapesDataModule(num_images=32, num_val_images=8, resolution=16, batch_size=8)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (8, 3, 16, 16) and batch.dtype.is_floating_point is False
    reals = dm.prepare_reals(batch)
    assert reals.shape == (8, 3, 16, 16) and reals.min() >= -1 and reals.max() <= 1
    dm.set_resolution(8)
    assert dm.prepare_reals(batch).shape == (8, 3, 8, 8)
    assert dm.prepare_eval(batch).shape == (8, 3, 8, 8)


def test_a_prefetched_batch_is_trimmed_after_a_batch_size_cut():
    dm = ShapesDataModule(num_images=32, num_val_images=8, resolution=16, batch_size=8)
    dm.setup("fit")
    loader = iter(dm.train_dataloader())
    prefetched = next(loader)
    dm.set_batch_size(4)
    assert dm.on_after_batch_transfer(prefetched, 0).shape[0] == 4
    assert next(loader).shape[0] == 4  # the sampler draws the new size from the next batch on
