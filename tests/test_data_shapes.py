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


def test_renders_are_bit_identical_to_before_the_labels_existed():
    """Hashes taken before render_shapes exposed labels: same seed, same RNG draws, same bytes."""
    import hashlib

    for (num, res, seed, chunk), digest in {
        (40, 16, 0, 16): "f9d4f9f642d754cbf0c8b05dc9f8a06b9b599cce5c95d1babeeac1fdea5117f5",
        (10, 32, 7, 256): "fafa191facd0fdedae9b34be58ef89b5182eeb0bf57653cd17307b6b87b461e7",
    }.items():
        images = render_shapes(num, res, seed, chunk=chunk)
        assert hashlib.sha256(images.tobytes()).hexdigest() == digest
        labelled, _ = render_shapes(num, res, seed, chunk=chunk, return_labels=True)
        assert np.array_equal(labelled, images)


def test_labels_describe_what_was_drawn():
    from ganlab.data.shapes import ABSENT, LABELS, SHAPE_KINDS, SYMMETRY

    images, labels = render_shapes(200, 16, seed=3, return_labels=True)
    assert set(labels) == set(LABELS)
    for name, (shape, _) in LABELS.items():
        assert labels[name].shape == (200, *shape), name
    two = labels["num_shapes"] == 2
    assert set(labels["num_shapes"]) == {1, 2} and 0.15 < two.mean() < 0.45
    assert (labels["kind"][:, 1] == ABSENT).tolist() == (~two).tolist()
    assert (labels["palette"][:, 1] == -1).tolist() == (~two).tolist()
    assert np.isnan(labels["centre"][~two, 1]).all() and not np.isnan(labels["centre"][:, 0]).any()
    assert np.abs(labels["centre"][:, 0]).max() <= 0.5
    symmetric = np.array([SYMMETRY[k] > 0 for k in labels["kind"][:, 0]])
    assert np.isnan(labels["rotation"][~symmetric, 0]).all()
    assert np.allclose(np.square(labels["rotation"][symmetric, 0]).sum(-1), 1, atol=1e-5)
    # the background's dark colour is (close to) the corner pixel of an image with no shape there
    corner = images[:, :, 0, 0].astype(float) / 255
    lo = np.minimum(labels["background"][:, 0], labels["background"][:, 1]) - 0.02
    hi = np.maximum(labels["background"][:, 0], labels["background"][:, 1]) + 0.02
    inside = ((corner >= lo) & (corner <= hi)).all(1)
    assert inside.mean() > 0.8  # corners covered by a shape are the exception
    assert set(labels["kind"][:, 0]) == set(range(len(SHAPE_KINDS)))
