"""Precision / recall / density / coverage: torch-fidelity's precision and recall, the papers'
definitions on the full distance matrix, chunking, and the FeatureMetrics / evaluator wiring."""

import numpy as np
import pytest
import torch
from torch_fidelity.metric_prc import calculate_precision_recall_full

from ganlab.metrics.fid import FeatureMetrics
from ganlab.metrics.prdc import knn_radii, prdc
from tests.fid_helpers import StubModule, TinyFeatures, shapes


def features(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(400, 24, generator=g)
    fake = torch.randn(300, 24, generator=g) * 1.3 + 0.2  # wider and shifted: all four < 1
    return real, fake


def reference(real: np.ndarray, fake: np.ndarray, pr_k: int = 3, dc_k: int = 5) -> dict:
    """The definitions on full N x N matrices (float64), as in Naeem et al.'s prdc package."""

    def dist(a, b):
        return np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))

    rr, ff, fr = dist(real, real), dist(fake, fake), dist(fake, real)
    radius = lambda d, k: np.sort(d, axis=1)[:, k]  # noqa: E731 - index 0 is the point itself
    return {
        "precision": (fr <= radius(rr, pr_k)[None]).any(1).mean(),
        "recall": (radius(ff, pr_k)[None] >= fr.T).any(1).mean(),
        "density": (fr <= radius(rr, dc_k)[None]).sum() / (dc_k * len(fake)),
        "coverage": (fr.min(0) <= radius(rr, dc_k)).mean(),
    }


def test_precision_and_recall_agree_with_torch_fidelity():
    real, fake = features()
    ours = prdc(real, fake)
    precision, recall = calculate_precision_recall_full(fake, real, neighborhood=3)
    assert ours["precision"] == pytest.approx(precision, abs=1e-6)
    assert ours["recall"] == pytest.approx(recall, abs=1e-6)
    assert 0.05 < ours["precision"] < 0.99 and 0.05 < ours["recall"] < 0.999  # not 0 or 1


def test_density_and_coverage_follow_the_definitions():
    real, fake = features(1)
    ours, expected = prdc(real, fake), reference(real.double().numpy(), fake.double().numpy())
    for name, value in expected.items():
        assert ours[name] == pytest.approx(value, abs=1e-6), name
    same = prdc(real, real.clone())
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0


@pytest.mark.parametrize("chunk", [1, 7, 128])
def test_chunked_equals_unchunked(chunk):
    real, fake = features(2)
    assert prdc(real, fake, chunk=chunk) == prdc(real, fake, chunk=100_000)
    # cdist rounds differently for small chunks (no matmul path): the same radii to ~1e-6
    torch.testing.assert_close(knn_radii(real, 3, chunk=chunk), knn_radii(real, 3, chunk=100_000))


def test_collapse_keeps_precision_and_loses_recall_and_coverage():
    real, _ = features(3)
    fresh = prdc(real, torch.randn(300, 24))  # the same distribution
    collapsed = prdc(real, real[:20].repeat(15, 1) + 1e-3 * torch.randn(300, 24))  # 20 of 400
    assert collapsed["precision"] > 0.9
    assert collapsed["recall"] < 0.2 * fresh["recall"]
    assert collapsed["coverage"] < 0.5 * fresh["coverage"]


def test_feature_metrics_log_prdc_and_cache_real_features(tmp_path):
    from ganlab.metrics.evaluator import FIDEvaluator

    datamodule = shapes()
    module = StubModule(datamodule)
    options = {"num_real": 40, "num_fake": 24, "batch_size": 16, "cache_dir": str(tmp_path)}
    first = FIDEvaluator(feature_extractor=TinyFeatures(), prdc=True, **options)
    values = first.evaluate(module, datamodule)
    assert {"precision", "recall", "density", "coverage"} <= set(values)
    assert all(0 <= values[k] <= 1 for k in ("precision", "recall", "coverage"))
    (entry,) = list(tmp_path.glob("*.npz"))
    assert np.load(entry)["features"].shape == (40, TinyFeatures.num_features)
    again = FIDEvaluator(feature_extractor=TinyFeatures(), prdc=True, **options)
    assert again.evaluate(module, datamodule) | {"seconds": 0} == values | {"seconds": 0}
    plain = FeatureMetrics(TinyFeatures())
    assert plain.prdc is None and "precision" not in FIDEvaluator(
        feature_extractor=TinyFeatures(), **options
    ).evaluate(module, datamodule)
