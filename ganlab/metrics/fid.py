"""FID (and KID, IS, precision / recall / density / coverage) from one feature extractor: the
Frechet distance, the torchmetrics states, and scoring two image folders.

`FeatureMetrics` holds ONE extractor (torch-fidelity's InceptionV3 by default, see inception.py)
and feeds its features to torchmetrics' `FrechetInceptionDistance` (float64 running sums, summed
over DDP ranks at compute time), and optionally `KernelInceptionDistance`, `InceptionScore` and
`PRDC` (prdc.py); the metrics receive precomputed features, so there is one network in memory
and one forward pass per batch. The distance itself is `frechet_distance` (exact in float64, also
for singular covariances).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance
from torchvision.transforms.functional import pil_to_tensor

from ganlab.metrics.cache import FeatureStats, load_stats
from ganlab.metrics.inception import InceptionFeatures, find_weights
from ganlab.metrics.prdc import PRDC
from ganlab.utils import ConfigError

EPS64 = torch.finfo(torch.float64).eps
IMAGE_EXTENSIONS = ("png", "jpg", "jpeg")  # what torch-fidelity reads from a folder
NUM_LOGITS = 1008  # InceptionV3 (TF graph) classes, the features of IS


# ----------------------------------------------------------------------------- the distance
def _noise_floor(values: Tensor) -> Tensor:
    """Eigenvalues below the rounding noise of their matrix set to 0 (and negatives with them)."""
    tolerance = values.max().clamp_min(0) * values.numel() * EPS64
    return torch.where(values > tolerance, values, torch.zeros_like(values))


def _psd_factor(sigma: Tensor, rank: int | None = None) -> Tensor:
    """F [d, k] with F @ F.T == sigma (symmetric PSD, float64), the cheapest exact way.

    Cholesky when sigma is positive definite. When it has at most `rank` < d nonzero
    eigenvalues (a covariance of rank + 1 samples), a randomized range finder gives an exact
    basis of its range and only a [k, k] matrix is diagonalised. Otherwise a full eigh.
    """
    d = sigma.shape[0]
    basis = None
    if rank is not None and rank + 8 < d:
        seeded = torch.Generator().manual_seed(0)
        probe = torch.randn(d, rank + 8, generator=seeded, dtype=sigma.dtype)
        basis, _ = torch.linalg.qr(sigma @ probe)  # [d, k] spanning range(sigma)
    else:
        lower, info = torch.linalg.cholesky_ex(sigma)
        if int(info) == 0:
            return lower
    small = sigma if basis is None else basis.T @ sigma @ basis
    values, vectors = torch.linalg.eigh((small + small.T) / 2)
    factor = vectors * _noise_floor(values).sqrt()
    return factor if basis is None else basis @ factor


def frechet_distance(
    mu1: Tensor,
    sigma1: Tensor,
    mu2: Tensor,
    sigma2: Tensor,
    num1: int | None = None,
    num2: int | None = None,
) -> Tensor:
    """Frechet distance ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)) of two Gaussians.

    mu: [d]; sigma: [d, d] symmetric PSD; num1 / num2 (optional): sample counts behind each
    covariance (rank <= num - 1), which makes the singular case (num <= d) fast. Computed in
    float64 on the CPU as tr((F.T S2 F)^(1/2)) with S1 = F F.T, a symmetric eigenproblem: the
    result is real, non-negative up to rounding, and NaN only if an input is not finite.
    Returns a float64 scalar tensor.
    """
    mu1, sigma1, mu2, sigma2 = (
        t.detach().to("cpu", torch.float64) for t in (mu1, sigma1, mu2, sigma2)
    )
    if not all(bool(torch.isfinite(t).all()) for t in (mu1, sigma1, mu2, sigma2)):
        return torch.tensor(float("nan"), dtype=torch.float64)
    if num1 is not None and num2 is not None and num2 < num1:  # factor the lower-rank side
        mu1, sigma1, num1, mu2, sigma2, num2 = mu2, sigma2, num2, mu1, sigma1, num1
    factor = _psd_factor(sigma1, None if num1 is None else num1 - 1)
    middle = factor.T @ sigma2 @ factor
    trace_sqrt = _noise_floor(torch.linalg.eigvalsh((middle + middle.T) / 2)).sqrt().sum()
    diff = mu1 - mu2
    return diff @ diff + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt


def _fid_stats(metric: FrechetInceptionDistance, side: str) -> FeatureStats:
    """One side ('real' | 'fake') of torchmetrics' FID states as FeatureStats."""
    return FeatureStats(
        int(getattr(metric, f"{side}_features_num_samples")),
        getattr(metric, f"{side}_features_sum").double(),
        getattr(metric, f"{side}_features_cov_sum").double(),
    )


class FrechetDistance(FrechetInceptionDistance):
    """torchmetrics' FID (same states, same DDP reduction) with `frechet_distance` as compute."""

    def compute(self) -> Tensor:
        real, fake = _fid_stats(self, "real"), _fid_stats(self, "fake")
        if real.num < 2 or fake.num < 2:
            raise RuntimeError(
                f"FID needs >= 2 images per side, got {real.num} real and {fake.num} fake"
            )
        return frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma, real.num, fake.num)


# ----------------------------------------------------------------------------- metrics
class _Precomputed(nn.Module):
    """The `feature=` module handed to torchmetrics: the features were computed already."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


def _pack_lists(metric: nn.Module, width: int) -> None:
    """One tensor per list state (an empty [0, width] one if none), so that DDP gathers line up
    whatever the number of batches each rank saw."""
    for name, default in metric._defaults.items():
        if isinstance(default, list):
            value = getattr(metric, name)
            empty = torch.zeros(0, width, device=metric.device)
            setattr(metric, name, [torch.cat(value) if value else empty])


class FeatureMetrics(nn.Module):
    """FID, and optionally KID, IS and precision / recall / density / coverage, computed from
    ONE feature extractor.

    Args:
        extractor: `InceptionFeatures` (pool features and logits), or any module mapping uint8
            images [N, 3, H, W] to features [N, d] (then no IS).
        kid: also KID (keeps the features, not only their sums).
        inception_score: also the Inception Score of the fakes (needs InceptionFeatures).
        kid_subsets, kid_subset_size: KID's subsets and images per subset (capped at the counts).
        is_splits: IS splits.
        prdc: also precision, recall (k = 3), density and coverage (k = 5); keeps the features.
        prdc_chunk: rows of the distance matrices computed at once (memory: chunk x images).
    """

    def __init__(
        self,
        extractor: nn.Module,
        kid: bool = False,
        inception_score: bool = False,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        is_splits: int = 10,
        prdc: bool = False,
        prdc_chunk: int = 1024,
    ) -> None:
        super().__init__()
        self.extractor = extractor.eval().requires_grad_(False)
        self.has_logits = isinstance(extractor, InceptionFeatures)
        if inception_score and not self.has_logits:
            raise ConfigError(
                "metric.inception_score=true needs the Inception logits; it cannot be used with a "
                "custom metric.feature_extractor"
            )
        self.num_features = self._feature_width(extractor)
        self.kid_subset_size = kid_subset_size
        self.fid = FrechetDistance(feature=_Precomputed(self.num_features))
        self.kid = self.isc = None
        self.prdc = PRDC(chunk=prdc_chunk) if prdc else None
        with warnings.catch_warnings():  # "will save all extracted features": that is the point
            warnings.simplefilter("ignore", UserWarning)
            if kid:
                self.kid = KernelInceptionDistance(
                    feature=_Precomputed(self.num_features),
                    subsets=kid_subsets,
                    subset_size=kid_subset_size,
                )
            if inception_score:
                self.isc = InceptionScore(feature=_Precomputed(NUM_LOGITS), splits=is_splits)

    @staticmethod
    def _feature_width(extractor: nn.Module) -> int:
        width = getattr(extractor, "num_features", None)
        if isinstance(width, int):
            return width
        with torch.no_grad():
            return int(extractor(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape[-1])

    @property
    def device(self) -> torch.device:
        return self.fid.device

    def train(self, mode: bool = True) -> FeatureMetrics:
        return super().train(False)

    def reset(self) -> None:
        """Forget every state (real and fake)."""
        for metric in (self.fid, self.kid, self.isc, self.prdc):
            if metric is not None:
                metric.reset()

    @torch.no_grad()
    def update(self, images: Tensor, real: bool) -> None:
        """Add uint8 images [N, 3, H, W] (on this module's device) to the real or fake side."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"expected uint8 images [N, 3, H, W], got {images.dtype} {tuple(images.shape)}"
            )
        with torch.autocast(images.device.type, enabled=False):
            output = self.extractor(images)
        features, logits = output if self.has_logits else (output, None)
        features = features.float()
        self.fid.update(features, real=real)
        if self.kid is not None:
            self.kid.update(features, real=real)
        if self.isc is not None and not real:
            self.isc.update(logits.float())
        if self.prdc is not None:
            self.prdc.update(features, real=real)

    def stats(self, real: bool = True) -> FeatureStats:
        """The real (or fake) side's statistics summed over all DDP ranks (a collective)."""
        side = "real" if real else "fake"
        with self.fid.sync_context():
            local = _fid_stats(self.fid, side)
            stats = FeatureStats(
                local.num, local.features_sum.clone(), local.features_cov_sum.clone()
            )
        holder = self.kid if self.kid is not None else self.prdc
        if holder is not None:
            _pack_lists(holder, self.num_features)
            with holder.sync_context():  # a list of batches; one tensor once synced over ranks
                features = getattr(holder, f"{side}_features")
                features = features if isinstance(features, Tensor) else torch.cat(features)
                stats.features = features.cpu()
        return stats

    def load_stats(self, stats: FeatureStats, real: bool = True) -> None:
        """Set one side from `stats`. Under DDP only one rank loads them (the others add
        nothing), so that the sum over ranks at compute time equals `stats`."""
        if (self.kid is not None or self.prdc is not None) and stats.features is None:
            raise ValueError("these statistics hold no features; KID / precision-recall need them")
        side, device = ("real" if real else "fake"), self.device
        fid = self.fid
        setattr(fid, f"{side}_features_sum", stats.features_sum.to(device, torch.float64))
        setattr(fid, f"{side}_features_cov_sum", stats.features_cov_sum.to(device, torch.float64))
        setattr(fid, f"{side}_features_num_samples", torch.tensor(stats.num, device=device))
        for metric in (self.kid, self.prdc):
            if metric is not None:
                features = stats.features.to(device, torch.float32)
                getattr(metric, f"{side}_features").append(features)

    def compute(self, seed: int = 0) -> dict[str, float]:
        """{'fid'} (+ 'kid_mean', 'kid_std', 'is_mean', 'is_std', 'precision', 'recall',
        'density', 'coverage'); a collective under DDP.
        KID's and IS's random subsets come from `seed`, not from the global RNG."""
        values = {"fid": float(self.fid.compute())}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if self.kid is not None:
                values |= self._compute_kid()
            if self.isc is not None:
                _pack_lists(self.isc, NUM_LOGITS)
                is_mean, is_std = self.isc.compute()
                values |= {"is_mean": float(is_mean), "is_std": float(is_std)}
        if self.prdc is not None:
            _pack_lists(self.prdc, self.num_features)
            values |= self.prdc.compute()
        return values

    def _compute_kid(self) -> dict[str, float]:
        _pack_lists(self.kid, self.num_features)
        counts = torch.tensor(
            [len(self.kid.real_features[0]), len(self.kid.fake_features[0])], device=self.device
        )
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
        self.kid.subset_size = int(min(self.kid_subset_size, *counts.tolist()))
        kid_mean, kid_std = self.kid.compute()
        return {"kid_mean": float(kid_mean), "kid_std": float(kid_std)}


# ----------------------------------------------------------------------------- folders
def image_files(folder: str | Path, num: int | None = None) -> list[str]:
    """The images torch-fidelity would read from `folder` (png/jpg/jpeg, not recursive, sorted
    by real path); the first `num` if given."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{str(folder)!r} is not a folder of images (nor a .npz of statistics)")
    files = sorted(
        os.path.realpath(entry.path)
        for entry in os.scandir(folder)
        if entry.is_file() and entry.name.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise ConfigError(f"{str(folder)!r} holds no {'/'.join(IMAGE_EXTENSIONS)} images")
    return files[:num] if num else files


def folder_batches(files: list[str], batch_size: int) -> Iterator[Tensor]:
    """uint8 batches [B, 3, H, W] read as torch-fidelity reads them (PIL, converted to RGB)."""
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        images = [pil_to_tensor(Image.open(f).convert("RGB")) for f in chunk]
        sizes = {tuple(image.shape) for image in images}
        if len(sizes) > 1:
            raise ConfigError(f"images of different sizes {sorted(sizes)} among {chunk[0]} ...")
        yield torch.stack(images)


def add_source(
    metrics: FeatureMetrics, source: str | Path, real: bool, batch_size: int, num: int | None
) -> int:
    """Feed a folder of images or a .npz of statistics to one side; returns the image count."""
    if str(source).endswith(".npz"):
        stats = load_stats(source)
        if stats is None:
            raise ConfigError(f"{str(source)!r} does not exist")
        width = stats.features_sum.shape[0]
        if width != metrics.num_features:
            raise ConfigError(
                f"{source} holds {width}-d statistics; this extractor gives {metrics.num_features}"
            )
        metrics.load_stats(stats, real=real)
        return stats.num
    files = image_files(source, num)
    for batch in folder_batches(files, batch_size):
        metrics.update(batch.to(metrics.device), real=real)
    return len(files)


def score_folders(
    input1: str | Path,
    input2: str | Path,
    weights_path: str | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    num: int | None = None,
) -> float:
    """FID between two image folders (or a folder and a .npz of statistics), as torch-fidelity's
    `calculate_metrics(input1, input2, fid=True)` computes it. Never downloads: without
    `weights_path` the weights must be in the torch hub cache. Raises WeightsUnavailableError or
    ConfigError with the fix."""
    extractor = InceptionFeatures.from_file(find_weights(weights_path))
    metrics = FeatureMetrics(extractor).to(device)
    add_source(metrics, input1, True, batch_size, num)
    add_source(metrics, input2, False, batch_size, num)
    return metrics.compute()["fid"]
