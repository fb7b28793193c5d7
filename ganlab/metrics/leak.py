"""Augmentation leak check: do the fakes carry the augmentations D saw?

A leak (Karras et al. 2020) shows as generated images that are rotated, mirrored upside down or
colour-shifted versus the data, i.e. statistics of the fakes drifting from those of the
un-augmented reals in directions the augmentations move images. `leak_scores` measures such
statistics on pixels alone; it knows no model or dataset and works on uint8 batches, so the
quality benchmark can run it per row on the EMA generator's fakes vs the training reals.
Feature-based scores (the shapes network's rotation / colour predictions) can be added to the
same dict once that network exists.

Scores (each 0 when the two sets agree; see THRESHOLDS for the noise between real sets):
  channel_tv     total variation distance of the per-channel 32-bin histograms, mean of R, G, B
  hue_tv         TV distance of the saturation-weighted 24-bin hue histograms (hue rotation)
  saturation     |mean saturation of fakes - of reals| (saturation, luma flip), in [0, 1]
  orientation_tv TV distance of the gradient-magnitude-weighted 8-bin histograms of edge
                 orientation in [0, 180) degrees (rotations; blind on rotation-invariant data)
  upright        |fraction of images brighter in the top half, fakes - reals| (90 / 180-degree
                 rotations, vertical flips; blind where the data has no up)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# about 2-3x each score's noise between two independent real sets of 1000 shapes images (the
# noise: experiments/QUALITY.md, section 6): compare sets of >= 1000 images, and report the
# scores of a held-out real set next to the fakes' as the noise floor.
THRESHOLDS = {"channel_tv": 0.08, "hue_tv": 0.1, "saturation": 0.03, "orientation_tv": 0.05,
              "upright": 0.1}
LUMA = (0.299, 0.587, 0.114)


def _check(images: Tensor) -> Tensor:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 images [N, 3, H, W], got {images.dtype} "
                         f"{tuple(images.shape)}")
    return images.float() / 255


def _histogram(values: Tensor, bins: int, weights: Tensor | None = None) -> Tensor:
    """Normalised histogram [bins] of values in [0, 1) (1 falls into the last bin)."""
    index = (values.flatten() * bins).long().clamp_(0, bins - 1)
    w = None if weights is None else weights.flatten()
    counts = torch.bincount(index, weights=w, minlength=bins).double()
    return counts / counts.sum().clamp_min(1e-12)


def _tv(a: Tensor, b: Tensor) -> float:
    return float(0.5 * (a - b).abs().sum())


def hue_saturation(x: Tensor) -> tuple[Tensor, Tensor]:
    """Hue in [0, 1) and HSV saturation in [0, 1] of float RGB images [N, 3, H, W] in [0, 1]."""
    r, g, b = x.unbind(1)
    high, low = x.amax(1), x.amin(1)
    delta = high - low
    safe = delta.clamp_min(1e-8)
    hue = torch.where(high == r, ((g - b) / safe) % 6,
                      torch.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6
    return hue % 1.0, delta / high.clamp_min(1e-8)


def _luma(x: Tensor) -> Tensor:
    return sum(w * c for w, c in zip(LUMA, x.unbind(1)))


def colour_stats(x: Tensor) -> dict[str, Tensor]:
    """Per-channel histograms, saturation-weighted hue histogram, mean saturation."""
    hue, sat = hue_saturation(x)
    return {
        "channels": torch.stack([_histogram(x[:, c], 32) for c in range(3)]),
        "hue": _histogram(hue, 24, weights=sat),
        "saturation": sat.mean().double(),
    }


def geometry_stats(x: Tensor) -> dict[str, Tensor]:
    """Edge-orientation histogram (gradient-magnitude weighted) and fraction of images whose top
    half is brighter than their bottom half."""
    luma = _luma(x)
    gx = luma[:, 1:, 1:] - luma[:, 1:, :-1]
    gy = luma[:, 1:, 1:] - luma[:, :-1, 1:]
    angle = torch.atan2(gy, gx) % math.pi / math.pi  # orientation in [0, 1) of 180 degrees
    half = luma.shape[1] // 2
    top_brighter = luma[:, :half].mean((1, 2)) > luma[:, -half:].mean((1, 2))
    return {
        "orientation": _histogram(angle, 8, weights=torch.hypot(gx, gy)),
        "upright": top_brighter.double().mean(),
    }


def leak_scores(fakes: Tensor, reals: Tensor) -> dict[str, float]:
    """Scores of how far `fakes` drift from un-augmented `reals` where augmentations would push.

    fakes, reals: uint8 [N, 3, H, W] in [0, 255] (any N each, the same side is not required).
    Returns {score name: value >= 0} (see the module docstring), plus `leak` = 1.0 if any score
    exceeds its THRESHOLDS entry, else 0.0.
    """
    f, r = _check(fakes), _check(reals)
    cf, cr = colour_stats(f), colour_stats(r)
    gf, gr = geometry_stats(f), geometry_stats(r)
    scores = {
        "channel_tv": sum(_tv(a, b) for a, b in zip(cf["channels"], cr["channels"])) / 3,
        "hue_tv": _tv(cf["hue"], cr["hue"]),
        "saturation": abs(float(cf["saturation"] - cr["saturation"])),
        "orientation_tv": _tv(gf["orientation"], gr["orientation"]),
        "upright": abs(float(gf["upright"] - gr["upright"])),
    }
    scores["leak"] = float(any(scores[k] > t for k, t in THRESHOLDS.items()))
    return scores
