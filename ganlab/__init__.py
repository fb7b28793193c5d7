"""ganlab: GAN experiments on images with PyTorch Lightning and Hydra (DCGAN, SAGAN, PGGAN, FID).

Layout: `cli/` the user-facing tools; `training/` one run fitted from its config, the losses,
resume and checkpoints; `models/` the GAN LightningModule and one thin subclass per variant;
`nets/` generators and discriminators; `data/` datamodules; `augment/`, `metrics/`, `callbacks/`;
beside them the plumbing (lightning_api, loggers, logs, multirun, extras, utils).
"""

from __future__ import annotations

from pathlib import Path


def config_dir() -> Path:
    """The folder of the Hydra configs (train.yaml, eval.yaml and the groups): ganlab/conf/ in an
    installed wheel, else the repository's conf/ beside the package (a checkout or editable
    install)."""
    package = Path(__file__).resolve().parent
    packaged = package / "conf"
    return packaged if (packaged / "train.yaml").is_file() else package.parent / "conf"
