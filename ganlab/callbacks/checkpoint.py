"""Checkpoints by images shown, written atomically, also on Ctrl-C / SIGTERM / SLURM's requeue
signal, and read back as data only.

`last.ckpt` is replaced only by a complete file (write to .tmp, fsync, rename, fsync the folder)
and only with finite weights, so a run never loses its last good checkpoint, even when killed
or when the disk fills up during a save (the run then stops with one line naming the file).
"""

from __future__ import annotations

import errno
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from ganlab import lightning_api
from ganlab.data.labels import images_of
from ganlab.logs import get_logger
from ganlab.utils import ConfigError, check_int, next_multiple

log = get_logger(__name__)


class OutputWriteError(ConfigError):
    """The run's outputs cannot be written (disk full, quota, read-only folder): the run stops
    with one line (exit code 2), its previous checkpoint intact."""


TMP_SUFFIX = ".tmp"  # a checkpoint being written: `last.ckpt.tmp`


def fsync_path(path: str | Path) -> None:
    """Flush a file's (or a folder's entries') data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's save to `path.tmp`, fsync of that file, an atomic rename onto `path`, fsync of
    the folder (so the rename itself survives a power cut). A crash at any moment (SIGKILL, power
    loss) leaves either the old or the new complete file at `path`, and at worst a stale `.tmp`
    that `KimgCheckpoint` removes at the next start.

    Lightning's own save (`_atomic_save`: fsspec's transaction, a temporary file moved into place)
    is atomic against a killed process but never fsyncs, so a power cut can leave a renamed file
    whose data never reached the disk; hence this plug-in."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        tmp = f"{path}{TMP_SUFFIX}"
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            fsync_path(tmp)
            os.replace(tmp, path)
            fsync_path(os.path.dirname(os.path.abspath(path)))
        except (OSError, RuntimeError) as error:  # torch.save reports a full disk as either
            Path(tmp).unlink(missing_ok=True)  # the partial file would only take space
            raise write_error(path, error) from None

    def load_checkpoint(
        self, path: str | Path, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Lightning's resume (`trainer.fit(ckpt_path=...)`) reads the file as data only
        (`torch.load(weights_only=True)`), whatever `weights_only` Lightning asks for: a file
        holding anything else is refused with a ConfigError naming it."""
        from ganlab.training.checkpoints import load_as_data

        return load_as_data(path, map_location=map_location or "cpu", mmap=False)  # read whole


def write_error(path: str | Path, error: BaseException) -> OutputWriteError:
    """One line for a failed checkpoint write: the file, the reason, what was kept."""
    code = getattr(error, "errno", None)
    reason = os.strerror(code) if code else str(error).splitlines()[0] if str(error) else ""
    if code is None and "file write failed" in str(error):  # torch's message for a full disk
        reason = "the write failed (disk full?)"
    hint = {errno.ENOSPC: "free space there or point hydra.run.dir at a larger disk",
            errno.EDQUOT: "free space within the quota or point hydra.run.dir elsewhere",
            errno.EROFS: "point hydra.run.dir at a writable folder",
            errno.EACCES: "point hydra.run.dir at a writable folder"}.get(code, "check the disk")
    kept = " (the previous file is kept)" if Path(path).is_file() else ""
    return OutputWriteError(f"cannot write checkpoint {path}: {reason}{kept}; {hint}")


def remove_stale_tmp(dirpath: Path) -> list[Path]:
    """Delete `*.ckpt.tmp` left in `dirpath` by a save that was killed; returns them."""
    stale = sorted(dirpath.glob(f"*.ckpt{TMP_SUFFIX}")) if dirpath.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        log.warning("removed %d incomplete checkpoint(s) of an interrupted save: %s",
                    len(stale), ", ".join(p.name for p in stale))
    return stale


class KimgCheckpoint(pl.Callback):
    """Saves `dirpath/last.ckpt` every `every_kimg`, at the end of training and when the run is
    interrupted (SIGINT / SIGTERM: finish the current step, save, stop; a second Ctrl-C aborts).
    Under SLURM with Lightning's auto-requeue, the requeue signal (SIGUSR1 by default, sent
    `signal_delay_s` before the time limit) is also taken after the current iteration: then
    Lightning's hpc_ckpt_N.ckpt is saved and the job requeued, and training goes on until SLURM
    stops it (Lightning alone saves inside its signal handler, in the middle of a step).

    Under DDP a signal may reach one rank only (SIGTERM to rank 0, a scheduler killing one
    task): every `stop_sync_every` iterations all ranks agree on it with one 1-element
    all_reduce (MAX), so they all stop after the same iteration and write one checkpoint. One
    process: the signal is acted on after the current iteration.

    Args:
        dirpath: checkpoint folder.
        every_kimg: interval of last.ckpt, in thousands of real images.
        snapshot_kimg: if set, also keep `kimg{K:06d}.ckpt` every that many kimg.
        stop_sync_every: DDP only: iterations between the cross-rank checks for a stop signal.
    """

    def __init__(
        self,
        dirpath: str,
        every_kimg: float = 10.0,
        snapshot_kimg: float | None = None,
        stop_sync_every: int = 10,
    ) -> None:
        check_int(stop_sync_every, "callbacks.checkpoint.stop_sync_every", 1)
        self.stop_sync_every = stop_sync_every
        self.dirpath = Path(dirpath)
        self.every_nimg = int(every_kimg * 1000)
        self.snapshot_nimg = int(snapshot_kimg * 1000) if snapshot_kimg else None
        self.next_nimg = self.next_snapshot = 0
        self.stop_signal: int | None = None
        self.requeue_signal: int | None = None  # SLURM auto-requeue (Lightning's SIGUSR1)
        self._previous_handlers: dict[int, Any] = {}

    @property
    def last_path(self) -> Path:
        return self.dirpath / "last.ckpt"

    # ------------------------------------------------------------------ signals
    def _request_stop(self, signum: int, frame: Any) -> None:
        self.stop_signal = signum
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C aborts

    def _request_requeue(self, signum: int, frame: Any) -> None:
        self.requeue_signal = signum

    def _install_handlers(self, trainer: pl.Trainer) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[signum] = signal.signal(signum, self._request_stop)
        requeue = lightning_api.slurm_requeue_signal(trainer)
        if requeue is not None:  # Lightning would save hpc_ckpt inside its handler, mid-step
            self._previous_handlers[requeue] = signal.signal(requeue, self._request_requeue)

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    # ------------------------------------------------------------------ hooks
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            remove_stale_tmp(self.dirpath)
        self.next_nimg = next_multiple(pl_module.nimg, self.every_nimg)
        if self.snapshot_nimg:
            self.next_snapshot = next_multiple(pl_module.nimg, self.snapshot_nimg)
        self._install_handlers(trainer)

    def signals_received(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> tuple[int | None, int | None]:
        """(signal to stop on, SLURM requeue signal), the same on every rank (checked every
        `stop_sync_every` iterations under DDP: one all_reduce of two numbers), else None."""
        if trainer.world_size == 1:
            return self.stop_signal, self.requeue_signal
        if pl_module.iteration % self.stop_sync_every:
            return None, None
        flags = [self.stop_signal or 0, self.requeue_signal or 0]
        flag = torch.tensor(flags, device=pl_module.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        stop, requeue = (int(v) for v in flag.tolist())  # this callback's only host sync
        return stop or None, requeue or None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        signum, requeue = self.signals_received(trainer, pl_module)
        if requeue is not None:  # SLURM's time-limit warning: hpc_ckpt now, between iterations
            log.warning("rank %d: %s received: saving Lightning's hpc checkpoint after iteration "
                        "%d and requeueing the job", trainer.global_rank,
                        signal.Signals(requeue).name, pl_module.iteration)
            self.requeue_signal = None
            lightning_api.slurm_save_and_requeue(trainer, requeue)
        if signum is not None:  # on_train_end saves last.ckpt (once, all ranks together)
            log.warning("rank %d: %s received: saving %s and stopping after iteration %d",
                        trainer.global_rank, signal.Signals(signum).name, self.last_path,
                        pl_module.iteration)
            trainer.should_stop = True
            return
        if pl_module.nimg >= self.next_nimg:
            self.save(trainer, pl_module, self.last_path)
            self.next_nimg = next_multiple(pl_module.nimg, self.every_nimg)
        if self.snapshot_nimg and pl_module.nimg >= self.next_snapshot:
            self.save(trainer, pl_module, self.dirpath / f"kimg{pl_module.nimg // 1000:06d}.ckpt")
            self.next_snapshot = next_multiple(pl_module.nimg, self.snapshot_nimg)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.save(trainer, pl_module, self.last_path)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, KeyboardInterrupt):
            self.save(trainer, pl_module, self.last_path)
        self._restore_handlers()  # Lightning runs no teardown hook after an exception

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._restore_handlers()

    def save(self, trainer: pl.Trainer, pl_module: pl.LightningModule, path: Path) -> bool:
        """Save on all ranks (a collective) unless a weight is non-finite; True if saved."""
        if not pl_module.weights_are_finite():
            log.error("not saving %s: weights are not finite; the previous file is kept", path)
            return False
        trainer.save_checkpoint(path)
        return True


class StopAtKimg(pl.Callback):
    """Stops training once `kimg` thousand real images have been shown (None: no limit)."""

    def __init__(self, kimg: float | None) -> None:
        self.max_nimg = None if kimg is None else int(kimg * 1000)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # Decided before the step, so the last step is logged (Lightning logs when stopping).
        next_nimg = pl_module.nimg + images_of(batch).shape[0] * trainer.world_size
        if self.max_nimg is not None and next_nimg >= self.max_nimg:
            trainer.should_stop = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.max_nimg is not None and pl_module.nimg >= self.max_nimg:
            log.warning(
                "already at %.1f kimg >= kimg=%s: nothing to train",
                pl_module.nimg / 1000,
                self.max_nimg / 1000,
            )
            trainer.should_stop = True
