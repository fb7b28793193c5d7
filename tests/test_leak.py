"""The augmentation leak check scores rotated / colour-shifted sets, not a second real set."""

from functools import lru_cache

import pytest
import torch

from ganlab.data.shapes import render_shapes
from ganlab.metrics.leak import THRESHOLDS, leak_scores


@lru_cache(maxsize=4)
def shapes(seed: int, upright: bool = False) -> torch.Tensor:
    """1000 shapes images, uint8 [N, 3, 16, 16]; upright: lit from above (a data set with an up)."""
    images = torch.from_numpy(render_shapes(1000, 16, seed)).float()
    if upright:
        images = images + torch.linspace(50, -50, 16)[None, None, :, None]
    return images.clamp(0, 255).to(torch.uint8)


@pytest.mark.slow
def test_a_second_real_set_does_not_leak():
    for upright in (False, True):
        scores = leak_scores(shapes(1, upright), shapes(0, upright))
        assert scores["leak"] == 0.0, scores
        assert all(scores[k] < t / 2 for k, t in THRESHOLDS.items() if k != "hue_tv"), scores


@pytest.mark.parametrize(("shift", "score"), [
    (lambda x: x[:, [1, 2, 0]], "hue_tv"),  # hue rotated by 120 degrees
    (lambda x: 255 - x, "channel_tv"),  # luma (and colour) flip
    (lambda x: x.rot90(1, (2, 3)), "orientation_tv"),  # rotated 90 degrees
    (lambda x: x.flip(2), "upright"),  # upside down
])
def test_rotated_or_colour_shifted_fakes_leak(shift, score):
    scores = leak_scores(shift(shapes(1, upright=True)), shapes(0, upright=True))
    assert scores["leak"] == 1.0 and scores[score] > THRESHOLDS[score], scores


def test_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        leak_scores(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
