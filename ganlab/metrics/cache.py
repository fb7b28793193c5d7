"""Real-image feature statistics and their on-disk cache.

An entry is one `.npz` per key (dataset, split, resolution, crop and the rest of the data config,
number of images, feature extractor) holding the float64 running sums torchmetrics keeps
(`features_sum`, `features_cov_sum`, `num`), so a cache hit restores bit-identical statistics,
plus `mu` and `sigma` (the pytorch-fid / torch-fidelity layout, so `python -m ganlab.fid` reads
either), the key as JSON, and for KID the real features themselves.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

CACHE_FORMAT = 1


@dataclass
class FeatureStats:
    """Feature statistics of a set of images, as running sums in float64.

    num: number of images; features_sum: [d]; features_cov_sum: [d, d] (sum of outer products);
    features: the features themselves [num, d] float32 (only when KID needs them), else None.
    """

    num: int
    features_sum: Tensor
    features_cov_sum: Tensor
    features: Tensor | None = None

    @property
    def mu(self) -> Tensor:
        """Mean feature [d], float64."""
        return self.features_sum / self.num

    @property
    def sigma(self) -> Tensor:
        """Unbiased covariance [d, d], float64 (as torchmetrics and numpy.cov compute it)."""
        mu = self.mu[None]
        return (self.features_cov_sum - self.num * mu.T @ mu) / (self.num - 1)

    @classmethod
    def from_mu_sigma(cls, mu: Tensor, sigma: Tensor, num: int) -> FeatureStats:
        """Sums that reproduce `mu` and `sigma` (for .npz files holding only those)."""
        mu, sigma = mu.double(), sigma.double()
        cov_sum = sigma * (num - 1) + num * mu[:, None] @ mu[None]
        return cls(num, mu * num, cov_sum)


def stats_key(**fields: Any) -> dict[str, Any]:
    """A cache key: the given fields (JSON-serialisable) plus the format version."""
    return {"format": CACHE_FORMAT, **fields}


def entry_path(cache_dir: str | Path, key: dict[str, Any]) -> Path:
    """cache_dir/{dataset}_{split}_{resolution}px_n{num_real}_{hash}.npz"""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    dataset = str(key.get("dataset_name", "data")).replace("/", "_")
    name = f"{dataset}_{key.get('split')}_{key.get('resolution')}px_n{key.get('num_real')}"
    return Path(cache_dir) / f"{name}_{digest}.npz"


def save_stats(path: Path, stats: FeatureStats, key: dict[str, Any]) -> None:
    """Write an entry atomically (tmp file + rename): concurrent jobs never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "num": np.asarray(stats.num, dtype=np.int64),
        "features_sum": stats.features_sum.cpu().double().numpy(),
        "features_cov_sum": stats.features_cov_sum.cpu().double().numpy(),
        "mu": stats.mu.cpu().numpy(),
        "sigma": stats.sigma.cpu().numpy(),
        "key": np.asarray(json.dumps(key, sort_keys=True)),
    }
    if stats.features is not None:
        arrays["features"] = stats.features.cpu().float().numpy()
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_stats(path: str | Path, key: dict[str, Any] | None = None) -> FeatureStats | None:
    """Read an entry (None if absent or written for another key). Files with only `mu` and
    `sigma` (pytorch-fid, torch-fidelity) load too; their `num` defaults to 2 if absent."""
    path = Path(path)
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:  # statistics are data: never unpickled
        if key is not None and ("key" not in data or json.loads(str(data["key"])) != key):
            return None
        features = torch.from_numpy(data["features"]) if "features" in data else None
        if "features_sum" in data:
            return FeatureStats(
                int(data["num"]),
                torch.from_numpy(data["features_sum"]),
                torch.from_numpy(data["features_cov_sum"]),
                features,
            )
        num = int(data["num"]) if "num" in data else 2
        mu, sigma = torch.from_numpy(data["mu"]), torch.from_numpy(data["sigma"])
        return FeatureStats.from_mu_sigma(mu, sigma, num)
