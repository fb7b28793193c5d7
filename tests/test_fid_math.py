"""The Frechet distance vs a float64 scipy reference, torchmetrics' FID states, the stats files."""

import numpy as np
import pytest
import scipy.linalg
import torch
from torchmetrics.image.fid import FrechetInceptionDistance

from ganlab.metrics.cache import FeatureStats, load_stats, save_stats, stats_key
from ganlab.metrics.fid import FeatureMetrics, FrechetDistance, _Precomputed, frechet_distance
from tests.fid_helpers import TinyFeatures


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """Float64 reference: means, np.cov, scipy.linalg.sqrtm of the covariance product."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def feature_sets(d: int, n1: int, n2: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(d, d, generator=g, dtype=torch.float64) * 0.2
    a = torch.randn(n1, d, generator=g, dtype=torch.float64) @ mixing
    b = torch.randn(n2, d, generator=g, dtype=torch.float64) * 1.3 + 0.2
    return a, b


@pytest.mark.parametrize(
    "d, n1, n2",
    [(32, 400, 300), (64, 20, 30), (128, 50, 300), (128, 300, 16), (96, 10, 10)],
    ids=["full-rank", "both-singular", "real-singular", "fake-singular", "tiny"],
)
@pytest.mark.parametrize("with_counts", [True, False])
def test_frechet_distance_matches_scipy_sqrtm(d, n1, n2, with_counts):
    a, b = feature_sets(d, n1, n2)
    reference = scipy_fid(a.numpy(), b.numpy())
    counts = (n1, n2) if with_counts else (None, None)
    value = frechet_distance(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T), *counts)
    assert value.dtype == torch.float64 and not value.is_complex()
    assert torch.isfinite(value)
    assert abs(float(value) - reference) / reference < 1e-6


def test_frechet_distance_is_symmetric_and_zero_on_itself():
    a, b = feature_sets(48, 30, 200, seed=1)
    args_ab = (a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T), 30, 200)
    args_ba = (b.mean(0), torch.cov(b.T), a.mean(0), torch.cov(a.T), 200, 30)
    assert float(frechet_distance(*args_ab)) == pytest.approx(float(frechet_distance(*args_ba)))
    same = frechet_distance(a.mean(0), torch.cov(a.T), a.mean(0), torch.cov(a.T), 30, 30)
    assert abs(float(same)) < 1e-9 * float(torch.cov(a.T).trace())


def test_frechet_distance_of_non_finite_statistics_is_nan_not_an_exception():
    mu, sigma = torch.zeros(4), torch.eye(4)
    value = frechet_distance(mu, sigma * float("nan"), mu, sigma)
    assert torch.isnan(value)


def test_fid_states_agree_with_torchmetrics_own_compute():
    a, b = feature_sets(24, 200, 150, seed=2)
    ours, stock = (
        FrechetDistance(feature=_Precomputed(24)),
        FrechetInceptionDistance(feature=_Precomputed(24)),
    )
    for metric in (ours, stock):
        metric.update(a.float(), real=True)
        metric.update(b.float(), real=False)
    assert float(ours.compute()) == pytest.approx(float(stock.compute()), rel=1e-5)


def test_feature_metrics_load_stats_round_trip_is_bit_identical(tmp_path):
    torch.manual_seed(0)
    reals = torch.randint(0, 256, (40, 3, 16, 16), dtype=torch.uint8)
    fakes = torch.randint(0, 200, (30, 3, 16, 16), dtype=torch.uint8)
    metrics = FeatureMetrics(TinyFeatures(), kid=True)
    metrics.update(reals, real=True)
    metrics.update(fakes, real=False)
    direct = metrics.compute(seed=3)
    key = stats_key(dataset="x", resolution=16, num_real=40)
    save_stats(tmp_path / "s.npz", metrics.stats(real=True), key)
    assert load_stats(tmp_path / "s.npz", {**key, "resolution": 8}) is None  # another key
    metrics.reset()
    metrics.load_stats(load_stats(tmp_path / "s.npz", key), real=True)
    metrics.update(fakes, real=False)
    assert metrics.compute(seed=3) == direct  # FID and KID, exactly


def test_mu_sigma_npz_from_other_tools_loads(tmp_path):
    a, _ = feature_sets(8, 50, 2)
    mu, sigma = a.mean(0), torch.cov(a.T)
    np.savez(tmp_path / "pytorch_fid.npz", mu=mu.numpy(), sigma=sigma.numpy())
    stats = load_stats(tmp_path / "pytorch_fid.npz")
    torch.testing.assert_close(stats.mu, mu)
    torch.testing.assert_close(stats.sigma, sigma)
    round_trip = FeatureStats.from_mu_sigma(mu, sigma, 50)
    torch.testing.assert_close(round_trip.features_sum, a.sum(0))
