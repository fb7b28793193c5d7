"""Logging helpers: W&B without login prompts, and images through whatever loggers a run has.

- `resolve_wandb_mode`: online only when credentials exist (WANDB_API_KEY or a .netrc entry from
  `wandb login`), otherwise offline with one line on how to `wandb sync` later; never a prompt.
- `WandbLogger`: Lightning's W&B logger with ganlab's layout: `train/*`, `val/*` and `samples/*`
  stepped by `train/kimg`, `val/fid` summarised by its minimum, the jobs of one Hydra multirun in
  one W&B group, the run finished at the end of each job, optional checkpoint artifact.
- `log_image(trainer, key, image)`: one image (e.g. a sample grid) to every logger of the run
  that can show images (W&B, TensorBoard); CSV runs keep the PNGs under RUN_DIR/samples/.
"""

from __future__ import annotations

import csv
import netrc
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from pytorch_lightning.loggers import CSVLogger as LightningCSVLogger
from pytorch_lightning.loggers import TensorBoardLogger as LightningTensorBoardLogger
from pytorch_lightning.loggers import WandbLogger as LightningWandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from torch import Tensor

from ganlab.logs import get_logger
from ganlab.utils import ConfigError

log = get_logger(__name__)

WANDB_MODES = ("auto", "online", "offline", "disabled")
WANDB_ENV_MODES = {"online": "online", "run": "online", "offline": "offline", "dryrun": "offline",
                   "disabled": "disabled"}
DEFAULT_WANDB_HOST = "https://api.wandb.ai"
WANDB_ID_FILE = "wandb/ganlab_run_id"  # in the run folder: the W&B run a resume continues
LOGGER_STATE_KEY = "ganlab_loggers"  # in checkpoints: {"wandb_id": ...}


# ----------------------------------------------------------------------------- W&B mode
def wandb_credentials_found(environ: Mapping[str, str] | None = None) -> bool:
    """True if W&B can log in without asking: WANDB_API_KEY / WANDB_IDENTITY_TOKEN_FILE is set, or
    the .netrc file (`wandb login` writes it; $NETRC moves it) has an entry for the W&B host."""
    environ = os.environ if environ is None else environ
    if environ.get("WANDB_API_KEY") or environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlsplit(environ.get("WANDB_BASE_URL") or DEFAULT_WANDB_HOST).netloc
    path = environ.get("NETRC") or str(Path(environ.get("HOME", Path.home())) / ".netrc")
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])


def resolve_wandb_mode(
    mode: str = "auto", environ: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """The W&B mode to run in, and why: (online | offline | disabled, reason).

    `mode` (logger.wandb.mode) other than auto forces it; auto follows $WANDB_MODE if set, else
    online when credentials are found, else offline. Online without credentials is a ConfigError
    (W&B would otherwise stop and prompt for a login).
    """
    environ = os.environ if environ is None else environ
    if mode not in WANDB_MODES:
        raise ConfigError(f"logger.wandb.mode={mode!r}: choose one of {', '.join(WANDB_MODES)}")
    if mode != "auto":
        resolved, reason = mode, f"logger.wandb.mode={mode}"
    elif environ.get("WANDB_MODE"):
        env_mode = environ["WANDB_MODE"]
        if env_mode not in WANDB_ENV_MODES:
            raise ConfigError(f"WANDB_MODE={env_mode!r}: use online, offline or disabled")
        resolved, reason = WANDB_ENV_MODES[env_mode], f"WANDB_MODE={env_mode}"
    elif wandb_credentials_found(environ):
        return "online", "W&B credentials found"
    else:
        resolved, reason = "offline", "no W&B credentials (not logged in, WANDB_API_KEY unset)"
    if resolved == "online" and not wandb_credentials_found(environ):
        raise ConfigError(
            f"W&B mode online ({reason}) but no credentials were found: run `wandb login` or set "
            "WANDB_API_KEY, or log locally with logger.wandb.mode=offline"
        )
    return resolved, reason


def multirun_job() -> tuple[str, str] | None:
    """(sweep folder name, job label) inside a Hydra multirun job, else None."""
    from hydra.core.hydra_config import HydraConfig

    from ganlab.multirun import is_multirun

    if not is_multirun():
        return None
    hydra_cfg = HydraConfig.get()
    label = str(OmegaConf.select(hydra_cfg, "job.num", default="?"))  # unset when composed
    overrides = OmegaConf.select(hydra_cfg, "job.override_dirname", default="")
    if overrides:
        label += f":{overrides}"
    return Path(hydra_cfg.sweep.dir).name, label[:120]


# ----------------------------------------------------------------------------- W&B logger
class WandbLogger(LightningWandbLogger):
    """Lightning's WandbLogger with ganlab's defaults (see the module docstring).

    Args:
        save_dir: folder of `wandb/` (the run folder).
        project, entity, tags, notes: W&B's own.
        name: run name (null: the job number and overrides in a multirun, else the folder's name).
        group: W&B group (null: the sweep folder's name in a multirun, else none).
        mode: auto | online | offline | disabled (see `resolve_wandb_mode`).
        log_model: upload `checkpoint_dir/*.ckpt` (last, best) as a model artifact at the end.
        checkpoint_dir: where the run's checkpoints are.
        **kwargs: passed on to `wandb.init`.
    """

    def __init__(
        self,
        save_dir: str,
        project: str = "ganlab",
        entity: str | None = None,
        name: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
        notes: str | None = None,
        mode: str = "auto",
        log_model: bool = False,
        checkpoint_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        mode, reason = resolve_wandb_mode(mode)
        id_file = Path(save_dir) / WANDB_ID_FILE
        if kwargs.get("id") is None:  # continue the run folder's W&B run, else a new one
            kwargs["id"] = read_wandb_id(id_file) or new_wandb_id()
        if kwargs.get("resume_from"):  # a resume: W&B's rewind to the checkpoint's step
            kwargs["resume"] = None  # (exclusive with resume=)
        else:
            kwargs.setdefault("resume", "allow")  # the same id: continue that run's history
        job = multirun_job()
        group = group or (job[0] if job else None)
        name = name or (job[1] if job else Path(save_dir).name)
        tags = list(tags) if tags else None
        super().__init__(
            save_dir=save_dir, project=project, entity=entity, name=name, group=group, tags=tags,
            notes=notes, mode=mode, log_model=False, **kwargs,
        )
        self.mode, self.upload_checkpoints = mode, bool(log_model)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self._finished = False
        self._announce(reason)
        self._write_id(id_file)

    @rank_zero_only
    def _write_id(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(self._id))

    def _announce(self, reason: str) -> None:
        if self.mode == "offline":
            log.info(
                "W&B offline (%s); upload later with `wandb sync %s/wandb/offline-run-*`",
                reason, self.save_dir,
            )
        else:
            log.info("W&B %s (%s)", self.mode, reason)

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        new = self._experiment is None
        run = super().experiment
        if new and getattr(run, "define_metric", None):
            run.define_metric("train/kimg")
            for prefix in ("train", "val", "samples"):
                run.define_metric(f"{prefix}/*", step_metric="train/kimg", step_sync=True)
            run.define_metric("val/fid", step_metric="train/kimg", summary="min")
        return run

    def finalize(self, status: str) -> None:
        """End of fit: upload checkpoints if asked, then finish the W&B run (so the next job of a
        multirun starts its own). "finished" (SLURM requeue signal) keeps the run open."""
        super().finalize(status)
        if status == "finished" or self._experiment is None or self._finished:
            return
        if status == "success" and self.upload_checkpoints:
            self._log_checkpoints()
        self._experiment.finish(exit_code=0 if status == "success" else 1)
        self._finished = True

    def _log_checkpoints(self) -> None:
        import wandb

        files = sorted(self.checkpoint_dir.glob("*.ckpt")) if self.checkpoint_dir else []
        if not files:
            return
        artifact = wandb.Artifact(f"model-{self._experiment.id}", type="model")
        for path in files:
            artifact.add_file(str(path), name=path.name)
        self._experiment.log_artifact(artifact, aliases=["latest"])


def read_wandb_id(path: Path) -> str | None:
    """The W&B run id kept in a run folder (None if there is none)."""
    return path.read_text().strip() or None if path.is_file() else None


def new_wandb_id() -> str:
    """A fresh W&B run id (8 lowercase hex characters, as W&B makes them)."""
    return secrets.token_hex(4)


class LoggerState(pl.Callback):
    """Keeps the W&B run id and its step count in every checkpoint
    (`checkpoint["ganlab_loggers"]`: `wandb_id`, `wandb_step`), so a resume from it continues
    the same W&B run rewound to that step (see `training.fit.continue_run`)."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        runs = [lg for lg in trainer.loggers if isinstance(lg, LightningWandbLogger)]
        step = None
        if runs and runs[0]._experiment is not None:
            step = int(getattr(runs[0]._experiment, "step", 0))  # the next history _step
        checkpoint[LOGGER_STATE_KEY] = {"wandb_id": runs[0].version if runs else None,
                                        "wandb_step": step}


def wandb_rewind_point(run_id: str, step: int | None) -> str | None:
    """W&B's `resume_from` moment (`RUN?_step=N`: the history from step N on is replaced), or
    None when the installed W&B has no rewind or the step is unknown."""
    if step is None:
        return None
    try:
        from wandb.sdk.wandb_settings import Settings
    except ImportError:
        return None
    if "resume_from" not in Settings.model_fields:
        return None
    return f"{run_id}?_step={step}"


# ----------------------------------------------------------------------------- CSV
class AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, but an existing metrics.csv is continued, never deleted: rows
    are appended (the header widened if new columns appear)."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                header = file.readline().strip()
            self.metrics_keys = sorted(k for k in header.split(",") if k)


class CSVLogger(LightningCSVLogger):
    """Lightning's CSVLogger writing RUN_DIR/csv/metrics.csv; a resumed run appends its rows to
    the file of the run it continues (Lightning's would delete it), after `rewind` moved the
    rows past the checkpoint into a side file."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    @rank_zero_only
    def rewind(self, nimg: int, step: int | None) -> Path | None:
        """Before a resume from a checkpoint at `nimg` images: see `rewind_csv`."""
        return rewind_csv(Path(self.log_dir) / ExperimentWriter.NAME_METRICS_FILE, nimg, step)


def rewind_csv(path: Path, nimg: int, step: int | None) -> Path | None:
    """Move the rows of metrics.csv logged past a checkpoint at `nimg` images (train/kimg, else
    val/kimg, above nimg / 1000; a row with neither: its step above `step`, the checkpoint's
    logged step) into `metrics.rewound-<nimg>.csv` beside it (appended to if it exists), so the
    resumed run's rows follow the checkpoint's. Returns the side file, None if nothing moved."""
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames or [], list(reader)

    def past(row: dict[str, str]) -> bool:
        for key in ("train/kimg", "val/kimg"):
            if row.get(key) not in (None, ""):
                return float(row[key]) * 1000 > nimg + 0.5  # kimg written as a rounded float
        return step is not None and row.get("step") not in (None, "") and int(row["step"]) > step

    dropped = [row for row in rows if past(row)]
    if not dropped:
        return None
    side = path.with_name(f"{path.stem}.rewound-{nimg}{path.suffix}")
    new = not side.is_file()
    with open(side, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        if new:
            writer.writeheader()
        writer.writerows(dropped)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(row for row in rows if not past(row))
    os.replace(tmp, path)
    log.info("resume at %.3f kimg: %d row(s) of %s logged after the checkpoint moved to %s",
             nimg / 1000, len(dropped), path.name, side.name)
    return side


# ----------------------------------------------------------------------------- TensorBoard
class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's TensorBoardLogger; `rewind(step)` before a resume makes its new event file
    start with a purge of the steps from `step` on (SummaryWriter's purge_step), so TensorBoard
    shows the resumed run's values there, not both runs'."""

    def rewind(self, step: int) -> None:
        if self._experiment is not None:
            raise RuntimeError("TensorBoardLogger.rewind must come before its first write")
        self._kwargs["purge_step"] = step


def rewind_loggers(trainer: pl.Trainer, checkpoint: Mapping[str, Any]) -> None:
    """Before a resume from `checkpoint`: the CSV rows and TensorBoard steps logged after it are
    set aside / purged, so every logger shows each kimg once (W&B rewinds through its
    `resume_from`, set up by `training.fit.continue_run`)."""
    from ganlab import lightning_api
    from ganlab.training.checkpoints import CHECKPOINT_KEY

    nimg = int(checkpoint[CHECKPOINT_KEY]["nimg"])
    step = lightning_api.checkpoint_logged_step(checkpoint)
    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger):
            logger.rewind(nimg, step)
        elif isinstance(logger, TensorBoardLogger) and step is not None:
            logger.rewind(step + 1)  # the resumed run's first logged step


# ----------------------------------------------------------------------------- images
def to_uint8_hwc(image: Tensor) -> Tensor:
    """[3, H, W] float in [0, 1] -> uint8 [H, W, 3] in [0, 255]."""
    return image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0)


def log_image(trainer: pl.Trainer, key: str, image: Tensor) -> list[str]:
    """Send one image [3, H, W] in [0, 1] (e.g. a sample grid) to the run's image-capable loggers.

    W&B: `key` in the history (stepped by train/kimg); TensorBoard: `add_image(key, step)`;
    loggers without images (CSV) are skipped. Call on rank 0 (loggers ignore other ranks anyway).
    Returns the names of the loggers that took the image.
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an image [3, H, W], got {tuple(image.shape)}")
    step, took = trainer.global_step, []
    kimg = getattr(trainer.lightning_module, "nimg", 0) / 1000
    for logger in trainer.loggers:
        if isinstance(logger, LightningWandbLogger):
            import wandb

            # the row carries its own train/kimg (not left to W&B's step_sync), so every image is
            # on the kimg axis however the history rows of scalars and images interleave
            row = {key: [wandb.Image(to_uint8_hwc(image).cpu().numpy())], "train/kimg": kimg}
            logger.log_metrics(row, step)
        elif isinstance(logger, LightningTensorBoardLogger):
            logger.experiment.add_image(key, image.detach().float().clamp(0, 1).cpu(), step)
        else:
            continue
        took.append(type(logger).__name__)
    return took


def log_run_config(trainer: pl.Trainer, config: Mapping[str, Any] | None) -> None:
    """Record the resolved run config as every logger's hyperparameters (W&B: the run config)."""
    if not config:
        return
    for logger in trainer.loggers:
        logger.log_hyperparams(dict(config))
