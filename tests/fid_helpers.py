"""Shared by the FID tests: stand-in Inception weights and a cheap feature extractor.

The real weights cannot be downloaded here, so `inception_weights` (session-scoped) builds
torch-fidelity's InceptionV3 with random weights, calibrates its batch-norm statistics on a few
rendered shape images (so that features differ between images), and saves the state dict: a file
with exactly the keys and shapes of weights-inception-2015-12-05-6726825d.pth, loaded through
the real `metric.weights_path` code path. Inception on a CPU is slow (about a second per image
here): tests keep to a few dozen images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from ganlab.data.shapes import ShapesDataModule, render_shapes
from ganlab.metrics.inception import WEIGHTS_FILE, random_inception


def calibrated_inception_state(num_images: int = 6, seed: int = 0) -> dict[str, Tensor]:
    """State dict of a random InceptionV3 whose batch norms hold the statistics of a batch of
    shape images (one forward in training mode with cumulative averaging)."""
    torch.manual_seed(seed)
    net = random_inception()
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # running stats = the average over the calibration batch
    images = torch.from_numpy(render_shapes(num_images, 16, seed=seed))
    net.train()
    with torch.no_grad():
        net(images)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.1
    return net.state_dict()


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights file with the real file's name, keys and shapes (random, calibrated)."""
    path = tmp_path_factory.mktemp("inception") / WEIGHTS_FILE
    torch.save(calibrated_inception_state(), path)
    return path


class TinyFeatures(nn.Module):
    """A fast stand-in extractor: uint8 [N, 3, r, r] -> [N, 16] (4x4 colour averages, fixed
    random projection, tanh). For the cache / DDP / callback tests (metric.feature_extractor)."""

    num_features = 16

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        projection = torch.randn(48, 16, generator=torch.Generator().manual_seed(seed)) / 7
        self.register_buffer("projection", projection)

    def forward(self, images: Tensor) -> Tensor:
        x = nn.functional.adaptive_avg_pool2d(images.float() / 127.5 - 1, 4).flatten(1)
        return torch.tanh(x @ self.projection * 3)


def write_pngs(folder: Path, images: np.ndarray) -> Path:
    """uint8 [N, 3, H, W] -> folder/000.png ..."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"{index:03d}.png")
    return folder


class StubModule(nn.Module):
    """What the evaluator needs of a GANModule: EMA G images at the datamodule's resolution."""

    def __init__(self, datamodule: ShapesDataModule) -> None:
        super().__init__()
        self.datamodule = datamodule
        self.generator = self.generator_ema = nn.Linear(8, 3)
        self.generator.z_dim = 8

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def sample(self, z: torch.Tensor) -> torch.Tensor:
        r = self.datamodule.resolution
        colour = torch.tanh(self.generator_ema(z))[:, :, None, None]
        ramp = torch.linspace(-0.5, 0.5, r)[None, None, :, None]
        return (colour + ramp).clamp(-1, 1).expand(-1, 3, r, r)


def shapes(num_val: int = 48, resolution: int = 16) -> ShapesDataModule:
    datamodule = ShapesDataModule(
        resolution=resolution, num_images=1, num_val_images=num_val, eval_batch_size=16
    )
    datamodule.setup("fit")
    return datamodule
