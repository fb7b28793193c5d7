"""The shapes feature space measures something: real vs real is the floor, the Frechet distance
grows with blur and noise, a collapsed set is far and loses recall; and its weights are checked."""

import shutil

import numpy as np
import pytest
import torch
from torchvision.transforms.functional import gaussian_blur

from ganlab.data.shapes import render_shapes
from ganlab.metrics.cache import FeatureStats
from ganlab.metrics.fid import frechet_distance
from ganlab.metrics.prdc import prdc
from ganlab.metrics.shapes_features import (
    NUM_FEATURES,
    RETRAIN,
    WEIGHTS_PATH,
    WEIGHTS_SHA256,
    ShapesFeatures,
    load_net,
)
from ganlab.utils import ConfigError

NUM = 500


@pytest.fixture(scope="module")
def extractor() -> ShapesFeatures:
    return ShapesFeatures()


@pytest.fixture(scope="module")
def split():
    """500 images of the train split and 500 of the val split (ShapesDataModule's seeds 0, 1)."""
    return torch.from_numpy(render_shapes(NUM, 32, seed=0)), torch.from_numpy(
        render_shapes(NUM, 32, seed=1)
    )


@pytest.fixture(scope="module")
def train_features(extractor, split) -> torch.Tensor:
    return extractor(split[0])


def fd(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance of two feature sets [N, d] (ganlab.metrics.fid's math)."""
    stats = [FeatureStats(len(f), f.double().sum(0), f.double().T @ f.double()) for f in (a, b)]
    return float(frechet_distance(stats[0].mu, stats[0].sigma, stats[1].mu, stats[1].sigma))


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    size = 2 * int(np.ceil(3 * sigma)) + 1
    return gaussian_blur(images.float(), [size, size], [sigma, sigma]).round().to(torch.uint8)


def noisy(images: torch.Tensor, std: float) -> torch.Tensor:
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(0)) * std * 255
    return (images.float() + noise).round().clamp(0, 255).to(torch.uint8)


@pytest.mark.slow
def test_features_are_128_dims_at_any_side(extractor, split):
    for side in (8, 16, 32, 64):
        images = torch.from_numpy(render_shapes(4, side, seed=5))
        features = extractor(images)
        assert features.shape == (4, NUM_FEATURES) and features.dtype == torch.float32
    assert NUM_FEATURES >= 64


@pytest.mark.slow
def test_fd_grows_with_blur_and_noise_above_the_real_floor(extractor, split, train_features):
    val = split[1]
    floor = fd(train_features, extractor(val))
    blurred = [fd(train_features, extractor(blur(val, s))) for s in (0.5, 1.0, 2.0)]
    noised = [fd(train_features, extractor(noisy(val, s))) for s in (0.02, 0.05, 0.1)]
    print(f"FD floor {floor:.3f}; blur 0.5/1/2 px {blurred}; noise 0.02/0.05/0.1 {noised}")
    assert floor < blurred[0] < blurred[1] < blurred[2]
    assert floor < noised[0] < noised[1] < noised[2]
    assert blurred[2] > 5 * floor and noised[2] > 5 * floor


@pytest.mark.slow
def test_a_64px_render_resized_to_32px_sits_at_the_floor(extractor, split, train_features):
    """Area resizing is the renderer's box filter: 64 px shapes scored at 32 px look real."""
    floor = fd(train_features, extractor(split[1]))
    resized = fd(train_features, extractor(torch.from_numpy(render_shapes(NUM, 64, seed=1))))
    assert resized < 2 * floor
    assert resized < fd(train_features, extractor(blur(split[1], 0.5)))


@pytest.mark.slow
def test_mode_collapse_is_far_and_loses_recall(extractor, split, train_features):
    images, labels = render_shapes(4000, 32, seed=7, return_labels=True)
    discs = (labels["kind"][:, 0] == 0) & (labels["num_shapes"] == 1)
    assert discs.sum() >= NUM
    only_discs = torch.from_numpy(images[discs][:NUM])
    repeated = split[1][:1].repeat(NUM, 1, 1, 1)
    val = extractor(split[1])
    scores = {
        name: (fd(train_features, f), prdc(train_features, f))
        for name, f in [
            ("val", val),
            ("discs", extractor(only_discs)),
            ("one", extractor(repeated)),
        ]
    }
    floor, real = scores["val"]
    assert real["recall"] > 0.5 and real["precision"] > 0.5
    for name in ("discs", "one"):
        distance, values = scores[name]
        assert distance > 10 * floor, name
        assert values["recall"] < 0.5 * real["recall"], name
    assert scores["one"][1]["recall"] < 0.05


def test_a_corrupted_weights_file_is_a_config_error_naming_both_hashes(tmp_path):
    copy = tmp_path / "shapes32.pt"
    shutil.copy(WEIGHTS_PATH, copy)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(ConfigError) as error:
        load_net(copy)
    message = str(error.value)
    assert str(copy) in message and WEIGHTS_SHA256 in message and RETRAIN in message
    import hashlib

    assert hashlib.sha256(bytes(data)).hexdigest() in message
    with pytest.raises(ConfigError, match="missing"):
        load_net(tmp_path / "absent.pt")


def test_the_shipped_weights_match_their_hash():
    load_net()  # raises if the committed file and WEIGHTS_SHA256 disagree


@pytest.mark.slow
def test_training_is_deterministic():
    from ganlab.metrics.shapes_features import train_net

    first, second = train_net(256, epochs=1), train_net(256, epochs=1)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
