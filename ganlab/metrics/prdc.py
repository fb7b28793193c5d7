"""Precision / recall (Kynkaanniemi et al. 2019, k = 3) and density / coverage (Naeem et al. 2020,
k = 5) of two feature sets, for any features (Inception's or the shapes net's).

With r_k(x) the distance from x to its k-th nearest neighbour in its own set (itself excluded):
    precision = fraction of fakes inside some real's k-NN ball (k = 3)
    recall    = fraction of reals inside some fake's k-NN ball (k = 3)
    density   = mean over fakes of (number of real k-NN balls holding it) / k   (k = 5)
    coverage  = fraction of reals whose k-NN ball (k = 5) holds at least one fake
Distances are Euclidean (torch.cdist), computed on the features' device `chunk` rows at a time:
memory is O(chunk * N), never N x N; only radii and counts are kept.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

PR_K, DC_K = 3, 5  # neighbourhoods of precision/recall and of density/coverage (the papers')


def knn_radii(features: Tensor, k: int, chunk: int = 1024) -> Tensor:
    """[N] distance of each row of `features` [N, d] to its k-th nearest other row (N > k)."""
    if len(features) <= k:
        raise ValueError(f"k-NN radii with k={k} need more than {k} samples, got {len(features)}")
    rows = features.split(chunk)
    radii = [torch.cdist(part, features).kthvalue(k + 1, dim=1).values for part in rows]
    return torch.cat(radii)


@torch.no_grad()
def prdc(
    real: Tensor, fake: Tensor, pr_k: int = PR_K, dc_k: int = DC_K, chunk: int = 1024
) -> dict[str, float]:
    """{'precision', 'recall', 'density', 'coverage'} of `fake` [M, d] against `real` [N, d]
    (same device; float32 is what torch-fidelity uses), `chunk` rows of distances at a time."""
    real, fake = real.float(), fake.float()
    real_pr, real_dc = knn_radii(real, pr_k, chunk), knn_radii(real, dc_k, chunk)
    fake_pr = knn_radii(fake, pr_k, chunk)
    precise = density = torch.zeros((), dtype=torch.float64, device=real.device)
    for rows in fake.split(chunk):  # each fake against every real ball
        dist = torch.cdist(rows, real)  # [chunk, N]
        precise = precise + (dist <= real_pr).any(1).sum()
        density = density + (dist <= real_dc).sum()
    recalled = covered = torch.zeros((), dtype=torch.float64, device=real.device)
    for start, rows in zip(range(0, len(real), chunk), real.split(chunk)):  # each real vs fakes
        dist = torch.cdist(rows, fake)  # [chunk, M]
        recalled = recalled + (dist <= fake_pr).any(1).sum()
        covered = covered + (dist.min(1).values <= real_dc[start : start + len(rows)]).sum()
    values = torch.stack([precise / len(fake), recalled / len(real)])
    values = torch.cat([values, torch.stack([density / (dc_k * len(fake)), covered / len(real)])])
    return dict(zip(("precision", "recall", "density", "coverage"), values.tolist()))


class PRDC(Metric):
    """The torchmetrics wrapper: keeps the real and fake features (concatenated over DDP ranks
    at compute time) and returns `prdc(real, fake)`.

    Args:
        chunk: rows of the distance matrices computed at once.
    """

    full_state_update = False

    def __init__(self, chunk: int = 1024, **kwargs) -> None:
        super().__init__(**kwargs)
        self.chunk = chunk
        self.add_state("real_features", [], dist_reduce_fx="cat")
        self.add_state("fake_features", [], dist_reduce_fx="cat")

    def update(self, features: Tensor, real: bool) -> None:
        """Add features [B, d] to the real or the fake side."""
        getattr(self, "real_features" if real else "fake_features").append(features)

    def compute(self) -> dict[str, float]:
        real, fake = dim_zero_cat(self.real_features), dim_zero_cat(self.fake_features)
        return prdc(real, fake, chunk=self.chunk)
