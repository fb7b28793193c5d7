"""Exact resume: N straight iterations equal K + resume + (N - K), tensor for tensor.

Every tensor of the module's state dict (G, D, EMA-G) and of both optimizers' states must be
bit-identical (torch.equal) on the CPU, resuming from a last.ckpt written on a kimg interval,
from a SIGTERM save, from the end of a shorter run, mid-epoch and at an epoch's end, mid-fade,
after a per-stage batch-size change, with n_critic 2 and with flips.
"""

from __future__ import annotations

import logging
import shutil
import signal
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from ganlab.callbacks.checkpoint import KimgCheckpoint
from ganlab.data.base import ResizableBatchSampler
from ganlab.training.fit import build

# 64 images, 16 a batch: an epoch is 4 iterations, so the runs cross several epochs
SMALL = ["kimg=null", "data.num_images=64", "callbacks.samples=null"]
DCGAN = ["model=dcgan", "data.hflip=true", "model.n_critic=2", *SMALL]
SAGAN = ["model=sagan", "data.hflip=true", *SMALL]
# 8 px for 4 iterations of 16, then 16 px fading in over 8 iterations of 8 (a smaller batch)
PGGAN = ["model=pggan", "model.start_resolution=8", "model.schedule.stabilize_kimg=0.064",
         "model.schedule.fade_kimg=0.064", "model.schedule.batch_size_dict={8: 16, 16: 8}", *SMALL]


class StopAt(pl.Callback):
    """Stops after `iterations` batches; at `sigterm` calls KimgCheckpoint's signal handler."""

    def __init__(self, iterations: int, sigterm: int | None = None) -> None:
        self.iterations, self.sigterm = iterations, sigterm

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        if pl_module.iteration == self.sigterm:
            (checkpoint,) = [c for c in trainer.callbacks if isinstance(c, KimgCheckpoint)]
            checkpoint._request_stop(signal.SIGTERM, None)
        if pl_module.iteration >= self.iterations:
            trainer.should_stop = True


def fit(make_cfg, name: str, overrides: list[str], iterations: int, ckpt_path: Path | None = None,
        sigterm: int | None = None):
    """Train to `iterations`; returns the module and {iteration: copy of each checkpoint saved
    then} (the first save of an iteration: the interval / signal save, not the end-of-fit one)."""
    cfg = make_cfg(*overrides, name=name)
    pl.seed_everything(0)
    datamodule, model, trainer = build(cfg)
    trainer.callbacks.insert(0, StopAt(iterations, sigterm))
    saves: dict[int, Path] = {}
    save = trainer.save_checkpoint

    def save_and_copy(path, *args, **kwargs) -> None:
        save(path, *args, **kwargs)
        if model.iteration not in saves:
            saves[model.iteration] = Path(shutil.copy(path, f"{path}.{model.iteration}"))

    trainer.save_checkpoint = save_and_copy
    trainer.fit(model, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None)
    return model, saves


def assert_same_state(resumed, straight) -> None:
    """Every weight, buffer and optimizer-state tensor bit-identical; the same counters."""
    assert (resumed.iteration, resumed.nimg) == (straight.iteration, straight.nimg)
    ours, theirs = resumed.state_dict(), straight.state_dict()
    assert ours.keys() == theirs.keys()
    different = [key for key in ours if not torch.equal(ours[key], theirs[key])]
    assert not different, f"{len(different)} of {len(ours)} tensors differ, e.g. {different[:3]}"
    for which, opt_a, opt_b in zip(("G", "D"), resumed.optimizers(), straight.optimizers()):
        state_a, state_b = opt_a.optimizer.state_dict(), opt_b.optimizer.state_dict()
        assert state_a["param_groups"] == state_b["param_groups"], which
        assert state_a["state"].keys() == state_b["state"].keys(), which
        for index, entries in state_a["state"].items():
            for key, value in entries.items():
                assert torch.equal(value, state_b["state"][index][key]), (which, index, key)


@pytest.mark.slow
@pytest.mark.parametrize(("overrides", "resume_at"), [
    pytest.param(DCGAN, [4, 5], id="dcgan"),  # an epoch's end; mid-epoch, between G steps
    pytest.param(SAGAN, [3], id="sagan"),
    pytest.param(PGGAN, [3, 7], id="pggan"),  # before the batch-size cut; mid-fade after it
])
def test_resume_from_interval_checkpoints_equals_the_straight_run(make_cfg, overrides,
                                                                  resume_at):
    # a last.ckpt every 16 images: every iteration of 16 images (PGGAN: every other of 8)
    overrides = [*overrides, "callbacks.checkpoint.every_kimg=0.016"]
    straight, saves = fit(make_cfg, "straight", overrides, iterations=12)
    for k in resume_at:
        resumed, _ = fit(make_cfg, f"from{k}", overrides, iterations=12, ckpt_path=saves[k])
        assert_same_state(resumed, straight)


@pytest.mark.slow
def test_resume_after_sigterm_and_after_a_shorter_run_equals_the_straight_run(make_cfg):
    straight, _ = fit(make_cfg, "straight", DCGAN, iterations=11)
    _, saves = fit(make_cfg, "signal", DCGAN, iterations=11, sigterm=6)  # stops after 6
    assert max(saves) == 6
    resumed, _ = fit(make_cfg, "after_signal", DCGAN, iterations=11, ckpt_path=saves[6])
    assert_same_state(resumed, straight)
    _, saves = fit(make_cfg, "short", DCGAN, iterations=7)  # last.ckpt at the end of training
    resumed, _ = fit(make_cfg, "after_short", DCGAN, iterations=11, ckpt_path=saves[7])
    assert_same_state(resumed, straight)


@pytest.mark.slow
def test_checkpoint_holds_rng_and_data_position(make_cfg):
    _, saves = fit(make_cfg, "run", DCGAN, iterations=5)
    checkpoint = torch.load(saves[5], map_location="cpu", weights_only=False)
    (rank0,) = checkpoint["ganlab"]["rng"]  # one entry per rank
    assert {"torch", "cuda", "numpy", "python"} <= rank0.keys()
    (sampler,) = checkpoint["ShapesDataModule"]["samplers"]
    assert sampler["pass"] == 1 and sampler["offset"] == 16  # 5 batches of 16: pass 1, 1 batch in


def test_sampler_continues_where_training_was_not_where_it_had_fetched_to():
    sampler = ResizableBatchSampler(40, 8, seed=1)
    iterator = iter(sampler)
    trained = [next(iterator), next(iterator)]
    ahead = next(iterator)  # fetched ahead at 8, not yet trained on
    sampler.batch_size = 4  # a stage change: the next batches are drawn at 4
    for _ in trained:
        sampler.consumed()
    state = sampler.state_dict()
    assert state == {"pass": 0, "offset": 16, "ahead": [8], "ended": False, "world_size": 1}
    rest = [ahead, *iterator]  # what the uninterrupted iterator hands out: 8, then 4 and 4
    resumed = ResizableBatchSampler(40, 8, seed=1)
    resumed.load_state_dict(state)
    resumed.batch_size = 4
    assert list(resumed) == rest
    assert list(resumed) == list(ResizableBatchSampler(40, 4, seed=2))  # then pass 1


def strip_resume_state(path: Path, tmp_path: Path, world_size: int | None = None) -> Path:
    """A copy of a checkpoint as an older ganlab wrote it (no RNG, no data position), or with its
    per-rank states claiming another world size."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if world_size is None:
        del checkpoint["ganlab"]["rng"], checkpoint["ShapesDataModule"]
    else:
        checkpoint["ganlab"]["rng"] *= world_size
        checkpoint["ShapesDataModule"]["samplers"] *= world_size
    out = tmp_path / f"edited{world_size}.ckpt"
    torch.save(checkpoint, out)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("world_size", [None, 2])
def test_old_or_other_world_checkpoints_resume_and_say_they_are_not_exact(make_cfg, tmp_path,
                                                                          caplog, world_size):
    _, saves = fit(make_cfg, "run", DCGAN, iterations=5)
    edited = strip_resume_state(saves[5], tmp_path, world_size)
    with caplog.at_level(logging.WARNING):
        resumed, _ = fit(make_cfg, "resumed", DCGAN, iterations=8, ckpt_path=edited)
    assert resumed.iteration == 8
    expected = "not exact" if world_size is None else "RNG streams restart per rank"
    messages = [r.getMessage() for r in caplog.records if expected in r.getMessage()]
    assert len(messages) == 1, [r.getMessage() for r in caplog.records]
