"""The one seam between ganlab and Lightning's private API.

Lightning (`pytorch-lightning<3`, see pyproject.toml) exposes no public call for these; every
private attribute ganlab reads is read here and nowhere else, and tests/test_lightning_api.py pins
each one, so a Lightning upgrade that moves them fails one small test instead of a training run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl


def should_log(trainer: pl.Trainer) -> bool:
    """True on the steps where Lightning writes logged values (every `log_every_n_steps`
    batches, and the last one): the only steps where ganlab syncs with the host."""
    return bool(trainer._logger_connector.should_update_logs)


def logged_step(trainer: pl.Trainer) -> int:
    """The step index Lightning's loggers use for the current batch: batches that stepped so far
    (not `global_step`, which advances once per optimizer call: twice per GAN iteration)."""
    return int(trainer.fit_loop.epoch_loop._batches_that_stepped)


def log_out_of_band(trainer: pl.Trainer, metrics: Mapping[str, float], flush: bool = True) -> None:
    """Write `metrics` (plain floats) once to every logger at the current logged step, outside
    `LightningModule.log` (which repeats a value in later rows until the epoch ends, and keeps
    every name in a result collection that Lightning walks at every step), and make them
    visible in `trainer.callback_metrics` (what sweeps, `run.train` and the progress bar
    read). Rank 0 writes; every rank updates its callback_metrics. flush: have each logger save
    now (false: on the logger's own schedule, e.g. the CSV logger's every 100 rows, and at the
    end)."""
    import torch

    # float64: run.train returns these values exactly as computed (e.g. val/fid_best)
    values = {k: torch.tensor(float(v), dtype=torch.float64) for k, v in metrics.items()}
    trainer.callback_metrics.update(values)
    if not trainer.is_global_zero:
        return
    step = logged_step(trainer)
    row = {**metrics, "epoch": trainer.current_epoch}  # as Lightning's own rows (metrics.csv)
    for logger in trainer.loggers:
        logger.log_metrics(row, step=step)
        if flush:
            logger.save()


def attached_trainer(module: pl.LightningModule) -> pl.Trainer | None:
    """The trainer `module` is attached to, or None (`module.trainer` raises when detached)."""
    return module._trainer


def resume_starts_new_epoch(trainer: pl.Trainer) -> bool:
    """True if a checkpoint saved now makes Lightning begin a new epoch (a fresh loader iterator)
    when resumed: saved inside a training batch's hooks (completed = processed - 1) after the
    epoch's last batch by count (`_TrainingEpochLoop.reset`). Saved at the end of training, or
    mid-epoch, the resumed run continues the epoch with a fresh iterator instead."""
    progress = trainer.fit_loop.epoch_loop.batch_progress.current
    in_batch = progress.completed == progress.processed - 1
    return in_batch and progress.processed >= trainer.num_training_batches


def fast_logging() -> None:
    """Make `LightningModule.log` cheap when nothing has to move (idempotent).

    Every `self.log` call moves the stored `_ResultMetric` to the value's device through
    `apply_to_collection` over the metric's whole `__dict__` (a torchmetrics Metric: ~50
    attributes, dataclasses copied), at every logged name of every logging step. The patched `to`
    returns at once when every tensor of the metric (its states
    and their defaults) already lies on the target device, which is all the original would have
    changed; otherwise it runs the original."""
    import torch
    from pytorch_lightning.trainer.connectors.logger_connector.result import _ResultMetric

    if getattr(_ResultMetric.to, "_ganlab_fast", False):
        return
    original = _ResultMetric.to

    def to(self, *args, **kwargs):  # noqa: ANN001, ANN202 (Lightning's signature)
        if len(args) == 1 and not kwargs and isinstance(args[0], torch.device):
            device = args[0]
            tensors = [v for v in (*self.__dict__.values(), *self._defaults.values())
                       if isinstance(v, torch.Tensor)]
            if tensors and all(t.device == device for t in tensors):
                return self
        return original(self, *args, **kwargs)

    to._ganlab_fast = True
    _ResultMetric.to = to


# LightningModule hooks that Lightning calls at every training step and whose ModelHooks
# implementation does nothing and returns None (tests/test_lightning_api.py checks both)
PER_STEP_MODULE_HOOKS = (
    "on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward",
    "on_before_optimizer_step", "on_before_zero_grad",
)


def skip_no_op_hooks() -> None:
    """Skip the hook calls that cannot do anything (idempotent).

    Lightning calls every hook on every callback and on the module, each call inside a profiler
    context and with the module's `_current_fx_name` set and restored (an nn.Module setattr).
    With a default run's callbacks that is about 60 calls per GAN iteration, nearly all of them
    the base classes' no-ops (`on_before_backward`, `on_after_backward`,
    `on_before_optimizer_step`, twice per iteration each). Patched here:
    - `_call_callback_hooks` leaves out a callback whose hook is still `Callback`'s own method
      and runs the others as Lightning does: in list order, each in its profiler context, with
      `_current_fx_name` set to the hook. Calls that filter by `monitoring_callbacks`, and hooks
      `Callback` does not define, go to Lightning's original.
    - `_call_lightning_module_hook` returns None at once for the per-step hooks in
      `PER_STEP_MODULE_HOOKS` that the module leaves as ModelHooks' no-op (what the call would
      have returned); every other call goes to Lightning's original."""
    from pytorch_lightning.trainer import call

    if getattr(call._call_callback_hooks, "_ganlab_fast", False):
        return
    call._call_callback_hooks = _implemented_callback_hooks(call._call_callback_hooks)
    call._call_lightning_module_hook = _implemented_module_hooks(call._call_lightning_module_hook)


def _implemented_callback_hooks(original):  # noqa: ANN001, ANN202 (Lightning's signature)
    def call_implemented(trainer, hook_name, *args, monitoring_callbacks=None, **kwargs):  # noqa: ANN001, ANN202
        base = getattr(pl.Callback, hook_name, None)
        if base is None or monitoring_callbacks is not None:
            return original(trainer, hook_name, *args, monitoring_callbacks=monitoring_callbacks,
                            **kwargs)
        hooks = [(callback, getattr(callback, hook_name)) for callback in trainer.callbacks]
        hooks = [(cb, fn) for cb, fn in hooks if getattr(fn, "__func__", None) is not base]
        if not hooks:
            return None
        module = trainer.lightning_module
        previous = module._current_fx_name if module else None
        if module:
            module._current_fx_name = hook_name
        for callback, fn in hooks:
            with trainer.profiler.profile(f"[Callback]{callback.state_key}.{hook_name}"):
                fn(trainer, module, *args, **kwargs)
        if module:
            module._current_fx_name = previous
        return None

    call_implemented._ganlab_fast = True
    call_implemented.__wrapped__ = original
    return call_implemented


def _implemented_module_hooks(original):  # noqa: ANN001, ANN202 (Lightning's signature)
    from pytorch_lightning.core.hooks import ModelHooks

    no_ops = {name: getattr(ModelHooks, name) for name in PER_STEP_MODULE_HOOKS}

    def call_implemented(trainer, hook_name, *args, pl_module=None, **kwargs):  # noqa: ANN001, ANN202
        no_op = no_ops.get(hook_name)
        if no_op is not None:
            module = pl_module or trainer.lightning_module
            if getattr(getattr(module, hook_name, None), "__func__", None) is no_op:
                return None
        return original(trainer, hook_name, *args, pl_module=pl_module, **kwargs)

    call_implemented._ganlab_fast = True
    call_implemented.__wrapped__ = original
    return call_implemented


def no_nvml_checks_without_cuda() -> None:
    """Stop a CPU-only machine from loading NVML at every optimizer step.

    Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 when imported, so that checking for CUDA does
    not initialise it before a fork. `Optimizer.step` asks `torch.accelerator` at every call;
    under that variable, with CUDA not initialised (always, on a machine without a GPU), the
    answer dlopens libnvidia-ml each time (an order of magnitude slower than the cached answer),
    two calls per GAN iteration. Where torch sees no
    CUDA device there is nothing a fork could inherit, so the variable is removed and the check
    becomes torch's cached device count. On a GPU machine it stays."""
    import os

    import torch

    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1" and not torch.cuda.is_available():
        del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]


def cache_hook_signatures() -> None:
    """Inspect each hook's signature once, not at every step (idempotent).

    Lightning asks `is_param_in_hook_signature` whether `training_step` takes `batch_idx` at every
    training step and whether the caller of `self.log` takes a dataloader index at every logged
    name, each time through `inspect.getfullargspec` (1,320 calls in 600 profiled steps). A
    function's signature does not change, so the answer is cached per function (a bound method
    by its function: getfullargspec reports `self` for both)."""
    import functools

    from pytorch_lightning.core import module as core_module
    from pytorch_lightning.loops import training_epoch_loop
    from pytorch_lightning.utilities import signature_utils

    if getattr(training_epoch_loop.is_param_in_hook_signature, "_ganlab_fast", False):
        return
    original = signature_utils.is_param_in_hook_signature
    cached = functools.lru_cache(maxsize=1024)(original)

    def is_param_in_hook_signature(hook_fx, param, explicit=False, min_args=None):  # noqa: ANN001, ANN202
        try:
            return cached(getattr(hook_fx, "__func__", hook_fx), param, explicit, min_args)
        except TypeError:  # an unhashable callable: inspected every time, as before
            return original(hook_fx, param, explicit, min_args)

    is_param_in_hook_signature._ganlab_fast = True
    is_param_in_hook_signature.__wrapped__ = original
    for consumer in (training_epoch_loop, core_module):
        consumer.is_param_in_hook_signature = is_param_in_hook_signature


def install_fast_paths() -> None:
    """Every per-step saving above (idempotent, behaviour unchanged): GANModule calls it when a
    fit starts. What they save is measured in experiments/BENCHMARKS.md."""
    fast_logging()
    skip_no_op_hooks()
    cache_hook_signatures()
    no_nvml_checks_without_cuda()


# ----------------------------------------------------------------------------- resume and SLURM
def checkpoint_logged_step(checkpoint: Mapping[str, Any]) -> int | None:
    """The logged step (`logged_step`) of the last batch before `checkpoint` was saved: a resume
    from it logs its first row at this step + 1 (Lightning's `_batches_that_stepped`, saved by
    the fit loop before the batch's own increment). None if the checkpoint lacks the loop state."""
    try:
        loop = checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]
        return int(loop["_batches_that_stepped"])
    except (KeyError, TypeError):
        return None


def slurm_requeue_signal(trainer: pl.Trainer) -> int | None:
    """The signal Lightning's SLURM auto-requeue listens to (SIGUSR1 by default) when the run is
    a SLURM job with auto-requeue on; else None."""
    from lightning_fabric.plugins.environments import SLURMEnvironment

    environment = trainer._accelerator_connector.cluster_environment
    if isinstance(environment, SLURMEnvironment) and environment.auto_requeue:
        return environment.requeue_signal
    return None


def slurm_save_and_requeue(trainer: pl.Trainer, signum: int) -> None:
    """What Lightning's SLURM handler does on the requeue signal, called by ganlab between two
    iterations instead of inside the handler: loggers finalized as "finished", the hpc
    checkpoint saved (all ranks), `scontrol requeue` of the job from rank 0."""
    trainer._signal_connector._slurm_sigusr_handler_fn(signum, None)


def hpc_resume_path(trainer: pl.Trainer) -> str | None:
    """The hpc_ckpt_N.ckpt a requeued SLURM job resumes from by itself when no ckpt_path is given
    (Lightning's choice: the highest N in the run folder), else None."""
    from lightning_fabric.plugins.environments import SLURMEnvironment

    if not SLURMEnvironment.detect():
        return None
    return trainer._checkpoint_connector._hpc_resume_path
