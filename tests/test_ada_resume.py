"""Exact resume with ADA: N straight iterations equal K + resume + (N - K), with p moving, the
sign sums of an unfinished interval pending at the checkpoint, and the lazy R1 phase taken
through the augmentation. ADA's state is its extra state (not buffers), saved and restored."""

from __future__ import annotations

import pytest
import torch

from tests.test_exact_resume import SMALL, fit

# p starts at 0.5 and moves by 48 / 100 images = 0.48 (clipped to [0, 1]) every 3 D steps
ADA = ["model=dcgan", "model/augment=ada", "model.augment.initial_p=0.5",
       "model.augment.speed_kimg=0.1", "model.augment.interval=3", "loss.r1_gamma=1.0",
       "loss.r1_interval=2", "callbacks.checkpoint.every_kimg=0.016", *SMALL]


def assert_same(ours: object, theirs: object, key: str) -> None:
    if isinstance(ours, dict):
        assert isinstance(theirs, dict) and ours.keys() == theirs.keys(), key
        for name in ours:
            assert_same(ours[name], theirs[name], f"{key}.{name}")
    elif isinstance(ours, torch.Tensor):
        assert torch.equal(ours, theirs), key
    else:
        assert ours == theirs, key


@pytest.mark.slow
@pytest.mark.parametrize("resume_at", [4, 6])  # 1 D step pending in the sums; none pending
def test_resume_with_ada_equals_the_straight_run(make_cfg, resume_at):
    straight, saves = fit(make_cfg, "straight", ADA, iterations=10)
    resumed, _ = fit(make_cfg, f"from{resume_at}", ADA, iterations=10,
                     ckpt_path=saves[resume_at])
    assert (resumed.iteration, resumed.nimg) == (straight.iteration, straight.nimg)
    ours, theirs = resumed.state_dict(), straight.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:  # every weight and buffer, and ADA's extra state (p, r_t, sums, steps)
        assert_same(ours[key], theirs[key], key)
    assert float(straight.augment.p) != 0.5  # p moved
    saved = torch.load(saves[resume_at], map_location="cpu", weights_only=True)
    pending = saved["state_dict"]["augment._extra_state"]["steps"]
    assert pending == resume_at % 3
