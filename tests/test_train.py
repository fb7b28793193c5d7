"""End to end through the composed Hydra config: outputs, resume, signals, NaN guard."""

import os
import signal
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from ganlab.models.base import NonFiniteLossError
from ganlab.training.fit import build, train
from tests.conftest import read_metrics
from tests.test_exact_resume import assert_same_state


@pytest.mark.slow
def test_tiny_run_writes_checkpoint_samples_and_metrics(make_cfg, tmp_path):
    train(make_cfg())
    run = tmp_path / "run"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert len(list((run / "samples").glob("fakes_*.png"))) >= 2
    columns = read_metrics(run)
    for column in ["train/d_loss", "train/g_loss", "train/d_real", "train/d_fake",
                   "train/lr_g", "train/lr_d", "train/kimg"]:
        assert column in columns, column
    assert max(columns["train/kimg"]) == pytest.approx(0.512)


def fit_steps(make_cfg, name: str, max_steps: int, ckpt_path: str | None = None):
    cfg = make_cfg("kimg=null", f"trainer.max_steps={max_steps}", name=name)
    pl.seed_everything(cfg.seed)  # as ganlab.run.train does: every run starts from the seed
    datamodule, model, trainer = build(cfg)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    return model, trainer, Path(cfg.paths.output_dir)


@pytest.mark.slow
def test_resume_restores_everything_and_continues_like_one_run(make_cfg):
    pl.seed_everything(0)
    model, _, run = fit_steps(make_cfg, "first", max_steps=8)  # 4 iterations
    last = run / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=False)
    # resuming at the saved step count trains nothing: the restored state is what was saved
    resumed, _, _ = fit_steps(make_cfg, "first", max_steps=8, ckpt_path=str(last))
    for key, value in saved["state_dict"].items():  # G, D and EMA weights
        torch.testing.assert_close(resumed.state_dict()[key], value)
    for saved_state, optimizer in zip(saved["optimizer_states"], resumed.optimizers()):
        live = optimizer.optimizer.state_dict()["state"]
        for key, state in saved_state["state"].items():
            torch.testing.assert_close(state["exp_avg"], live[key]["exp_avg"])
            torch.testing.assert_close(state["exp_avg_sq"], live[key]["exp_avg_sq"])
    assert resumed.nimg == model.nimg == 4 * 16

    continued, continued_trainer, _ = fit_steps(make_cfg, "first", max_steps=16,
                                                ckpt_path=str(last))
    straight, straight_trainer, _ = fit_steps(make_cfg, "straight", max_steps=16)
    assert continued.nimg == straight.nimg == 8 * 16
    assert continued.iteration == straight.iteration == 8
    assert continued_trainer.global_step == straight_trainer.global_step == 16
    for opt_a, opt_b in zip(continued.optimizers(), straight.optimizers()):
        steps_a = [int(s["step"]) for s in opt_a.optimizer.state.values()]
        steps_b = [int(s["step"]) for s in opt_b.optimizer.state.values()]
        assert steps_a == steps_b and steps_a[0] == 8
    assert_same_state(continued, straight)  # and every weight and Adam moment, bit for bit


@pytest.mark.slow
def test_optimizer_states_round_trip_through_last_ckpt(make_cfg):
    model, _, run = fit_steps(make_cfg, "opt", max_steps=4)
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    for saved_state, optimizer in zip(saved["optimizer_states"], model.optimizers()):
        live = optimizer.optimizer.state_dict()
        for key, state in saved_state["state"].items():
            torch.testing.assert_close(state["exp_avg"], live["state"][key]["exp_avg"])
            torch.testing.assert_close(state["exp_avg_sq"], live["state"][key]["exp_avg_sq"])


class SendSignal(pl.Callback):
    def __init__(self, at_iteration: int, signum: int):
        self.at_iteration, self.signum = at_iteration, signum

    def on_train_batch_end(self, trainer, pl_module, *args):
        if pl_module.iteration == self.at_iteration:
            os.kill(os.getpid(), self.signum)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_checkpoint_and_stops(make_cfg, signum):
    cfg = make_cfg("kimg=10")
    datamodule, model, trainer = build(cfg)
    trainer.callbacks.insert(0, SendSignal(3, signum))
    before = signal.getsignal(signal.SIGINT)  # what earlier code in this process left there
    trainer.fit(model, datamodule=datamodule)
    assert model.iteration == 3
    saved = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt",
                       map_location="cpu", weights_only=False)
    assert saved["ganlab"]["nimg"] == 3 * 16
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_last_finite_checkpoint(make_cfg):
    cfg = make_cfg("kimg=10", "callbacks.checkpoint.every_kimg=0.064")  # save every 4 iterations
    datamodule, model, trainer = build(cfg)
    real_d_loss = model.loss.d_loss

    def poisoned(real_logits, fake_logits):
        loss = real_d_loss(real_logits, fake_logits)
        return loss * float("nan") if model.iteration >= 6 else loss  # from the 7th iteration

    model.loss.d_loss = poisoned
    with pytest.raises(NonFiniteLossError, match=r"iteration 7 .*d_loss"):
        trainer.fit(model, datamodule=datamodule)
    saved = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt",
                       map_location="cpu", weights_only=False)
    assert saved["ganlab"]["nimg"] == 4 * 16
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values())


@pytest.mark.slow
@pytest.mark.parametrize("length", [("kimg=0.048",), ("kimg=null", "trainer.max_steps=6")])
def test_short_runs_log_their_last_step(make_cfg, tmp_path, length):
    train(make_cfg(*length, "trainer.log_every_n_steps=50"))
    columns = read_metrics(tmp_path / "run")
    assert columns["train/kimg"] == [pytest.approx(0.048)]  # 3 iterations of 16 images
