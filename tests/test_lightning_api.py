"""Pins the private Lightning attributes behind ganlab.lightning_api (fails on an upgrade that
moves them), and checks that no other module touches a private attribute of the trainer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import pytorch_lightning as pl

from ganlab import lightning_api

PACKAGE = Path(__file__).resolve().parents[1] / "ganlab"


def test_private_attributes_exist_on_a_trainer() -> None:
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    assert isinstance(lightning_api.should_log(trainer), bool)
    assert lightning_api.logged_step(trainer) == 0


def test_no_other_module_reads_private_trainer_attributes() -> None:
    private = re.compile(r"trainer\._|\.fit_loop\.\w+\._|_logger_connector")
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{number}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "lightning_api.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if private.search(line)
    ]
    assert not offenders, f"private Lightning API outside ganlab/lightning_api.py: {offenders}"


@pytest.mark.slow
def test_attached_trainer_and_resume_starts_new_epoch_read_lightning_state(make_cfg):
    from ganlab.lightning_api import attached_trainer, resume_starts_new_epoch
    from ganlab.training.fit import build

    cfg = make_cfg("kimg=null", "trainer.max_steps=8", "data.num_images=64")  # 4 batches an epoch
    datamodule, model, trainer = build(cfg)
    assert attached_trainer(model) is None
    seen = []

    class Probe(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            seen.append((attached_trainer(pl_module) is trainer, resume_starts_new_epoch(trainer)))

    trainer.callbacks.append(Probe())
    trainer.fit(model, datamodule=datamodule)
    assert seen == [(True, False)] * 3 + [(True, True)]  # the 4th batch ends the epoch
    assert not resume_starts_new_epoch(trainer)  # after training: not inside a batch


def test_fast_logging_skips_the_copy_only_when_nothing_moves(monkeypatch) -> None:
    """The patched `_ResultMetric.to` returns early when every tensor is on the device, and
    logged values still accumulate as before (the last value logged on step is kept)."""
    import torch
    from pytorch_lightning.trainer.connectors.logger_connector.result import (
        _ResultCollection,
        _ResultMetric,
    )

    monkeypatch.setattr(_ResultMetric, "to", _ResultMetric.to)  # undone after the test
    lightning_api.fast_logging()
    lightning_api.fast_logging()  # idempotent
    assert _ResultMetric.to._ganlab_fast
    results = _ResultCollection(training=True)
    results.batch = None
    for value in (1.0, 3.0):
        results.log("training_step", "x", torch.tensor(value), on_step=True, on_epoch=False,
                    batch_size=4)
    metric = results["training_step.x"]
    assert float(metric.value) == 3.0
    calls = []
    monkeypatch.setattr("pytorch_lightning.trainer.connectors.logger_connector.result."
                        "apply_to_collection", lambda *a, **k: calls.append(1) or a[0])
    assert metric.to(torch.device("cpu")) is metric and not calls  # nothing to move: no copy
    metric.to("cpu")  # any other call form: Lightning's own path
    assert calls


@pytest.mark.slow
def test_callback_hooks_reach_only_the_callbacks_that_implement_them(make_cfg, monkeypatch) -> None:
    """After fit, per-step hooks went to the callbacks that define them (in list order, in the
    profiler's contexts) and never to a callback that leaves them as Callback's no-op."""
    from pytorch_lightning.trainer import call

    from ganlab.training.fit import build

    calls: list[str] = []

    class OnBackward(pl.Callback):
        def on_before_backward(self, trainer, pl_module, loss):
            calls.append("OnBackward.on_before_backward")

        def on_train_batch_end(self, trainer, pl_module, *args):
            calls.append("OnBackward.on_train_batch_end")

    class OnBatchEnd(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            calls.append("OnBatchEnd.on_train_batch_end")

    class Profiled(pl.profilers.PassThroughProfiler):
        def start(self, action_name: str) -> None:
            if action_name.startswith("[Callback]"):
                calls.append(action_name)

    cfg = make_cfg("kimg=null", "trainer.max_steps=4", "data.num_images=64")
    datamodule, model, trainer = build(cfg)
    trainer.callbacks.extend([OnBatchEnd(), OnBackward()])
    trainer.profiler = Profiled()
    # Lightning's own functions (an earlier fit in this process may have patched them), with a
    # counter under the patch that fit installs: it sees the module hook calls that pass it
    for name in ("_call_callback_hooks", "_call_lightning_module_hook"):
        function = getattr(call, name)
        monkeypatch.setattr(call, name, getattr(function, "__wrapped__", function))
    module_hooks: list[str] = []
    lightning_module_hook = call._call_lightning_module_hook

    def counting(trainer, hook_name, *args, **kwargs):
        module_hooks.append(hook_name)
        return lightning_module_hook(trainer, hook_name, *args, **kwargs)

    monkeypatch.setattr(call, "_call_lightning_module_hook", counting)
    trainer.fit(model, datamodule=datamodule)
    assert call._call_callback_hooks._ganlab_fast
    assert "training_step" not in module_hooks  # a strategy hook, not skipped
    assert "on_before_batch_transfer" in module_hooks  # returns the batch: never skipped
    assert not set(module_hooks) & set(lightning_api.PER_STEP_MODULE_HOOKS)
    profiled = [name.rsplit(".", 2)[-2:] for name in calls if name.startswith("[Callback]")]
    backward_hooks = ("on_before_backward", "on_after_backward")
    backward = [cls for cls, hook in profiled if hook in backward_hooks]
    # max_steps=4 optimizer steps: 2 GAN iterations of a D and a G phase; no other callback
    assert backward == ["OnBackward"] * 2 * 2
    assert calls.count("OnBackward.on_before_backward") == 4
    assert "[Callback]" in calls[calls.index("OnBackward.on_before_backward") - 1]  # profiled
    ends = [name for name in calls if name.endswith("on_train_batch_end") and "[" not in name]
    assert ends == ["OnBatchEnd.on_train_batch_end", "OnBackward.on_train_batch_end"] * 2


def test_skipped_module_hooks_are_model_hooks_no_ops() -> None:
    """Each hook the patch may skip is, in Lightning's ModelHooks, a body of nothing but a
    docstring / pass (so skipping returns what the call would have: None), and LightningModule
    does not override it."""
    import ast
    import inspect
    import textwrap

    from pytorch_lightning.core.hooks import ModelHooks

    for name in lightning_api.PER_STEP_MODULE_HOOKS:
        assert getattr(pl.LightningModule, name) is getattr(ModelHooks, name), name
        (function,) = ast.parse(textwrap.dedent(inspect.getsource(getattr(ModelHooks, name)))).body
        body = [node for node in function.body
                if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
        assert all(isinstance(node, ast.Pass) for node in body), f"ModelHooks.{name} does work"


def test_nvml_check_dropped_only_without_cuda(monkeypatch) -> None:
    """Lightning's PYTORCH_NVML_BASED_CUDA_CHECK=1 goes where torch sees no CUDA device (then
    `torch.accelerator` no longer loads NVML per optimizer step) and stays where it sees one."""
    import os

    import torch

    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    lightning_api.no_nvml_checks_without_cuda()
    assert ("PYTORCH_NVML_BASED_CUDA_CHECK" in os.environ) == torch.cuda.is_available()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    lightning_api.no_nvml_checks_without_cuda()
    assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1"


def test_hook_signatures_cached_with_lightnings_answers(monkeypatch) -> None:
    """The cached `is_param_in_hook_signature` gives Lightning's answer for functions, bound
    methods and varargs, and inspects each function once."""
    import inspect

    from pytorch_lightning.loops import training_epoch_loop
    from pytorch_lightning.utilities import signature_utils

    function = training_epoch_loop.is_param_in_hook_signature
    monkeypatch.setattr(training_epoch_loop, "is_param_in_hook_signature",
                        getattr(function, "__wrapped__", function))
    lightning_api.cache_hook_signatures()
    cached = training_epoch_loop.is_param_in_hook_signature
    assert cached._ganlab_fast

    class Module:
        def step(self, batch, batch_idx): ...
        def one(self, batch): ...
        def many(self, *args): ...

    module, original = Module(), signature_utils.is_param_in_hook_signature
    for hook in (module.step, module.one, module.many, Module.step):
        for param, explicit, min_args in (("batch_idx", False, 2), ("dataloader_iter", True, None)):
            assert cached(hook, param, explicit, min_args) == original(hook, param, explicit,
                                                                       min_args)
    inspected = []
    monkeypatch.setattr(inspect, "getfullargspec", lambda f: inspected.append(f))
    assert cached(Module().step, "batch_idx", False, 2) and not inspected  # a new bound method
