"""The experiment presets and the Optuna search: they compose, instantiate and run."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate

from ganlab.models.base import GANModule
from ganlab.training.fit import build
from ganlab.utils import ConfigError
from tests.conftest import CONF_DIR, TINY, compose_config, read_metrics

ROOT = CONF_DIR.parent
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
TINY_FEATURES = "metric.feature_extractor={_target_:tests.fid_helpers.TinyFeatures}"


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_preset_instantiates_and_fails_only_at_the_data(name, tmp_path, monkeypatch):
    monkeypatch.setenv("GANLAB_DATA", str(tmp_path / "no_data"))  # data.root: not there
    cfg = compose_config([f"experiment={name}", "trainer.accelerator=cpu", TINY_FEATURES],
                         tmp_path / "run")
    assert cfg.task_name.startswith(name.split("_")[0]) and cfg.kimg >= 1000
    assert cfg.data.resolution == (32 if "32" in name or "sweep" in name or "ablation" in name
                                   else 64)
    model = instantiate(cfg.model)  # the preset's real networks
    assert isinstance(model, GANModule)
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c]
    evaluator = instantiate(cfg.metric)
    assert evaluator.enabled
    loggers = [instantiate(c) for c in cfg.logger.values() if c]
    instantiate(cfg.trainer, callbacks=[*callbacks, evaluator], logger=loggers)
    # the one thing missing: the dataset (small_data_*: data.root is the user's folder)
    with pytest.raises(ConfigError, match=r"data\.root(=\S*no_data\S* does not exist| is not set)"):
        build(cfg)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    assert multirun == (name.endswith("sweep") or name.endswith("ablation"))
    # the preset's groups can still be swapped without leftovers of its own settings
    cfg = compose_config([f"experiment={name}", "metric=none", "logger=csv"], tmp_path / "run")
    assert cfg.metric is None and list(cfg.logger) == ["csv"]


@pytest.mark.slow
def test_thesis_settings_reach_the_model(tmp_path):
    cfg = compose_config(["experiment=sagan_lr_sweep", "model.lr_g=2e-4"], tmp_path / "r")
    assert cfg.model.lr_d == 2e-4  # D follows G in the lr sweep
    assert list(cfg.loss.label_smoothing) == [0.8, 1.0]  # one-sided label smoothing
    assert HydraConfig.get().sweeper.params["model.lr_g"] == "8e-5,9e-5,1e-4,2e-4"
    cfg = compose_config(["experiment=sagan_sn_ablation", "model.generator.spectral_norm=false"],
                         tmp_path / "r")
    assert cfg.model.discriminator.spectral_norm is False


@pytest.mark.slow
def test_optuna_search_runs_trials_and_writes_the_study_summary(tmp_path):
    sweep = tmp_path / "sweep"
    command = [sys.executable, "-m", "ganlab.run", "-m", "hparams_search=optuna_fid", *TINY,
               "metric=fid",
               "hydra.sweeper.n_trials=2", "kimg=0.032", TINY_FEATURES,
               f"hydra.sweep.dir={sweep}", f"paths.cache_dir={tmp_path / 'cache'}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(summary["best_params"]) == {"model.lr_g", "model.lr_d", "model.betas.0",
                                           "model.betas.1", "model.n_critic"}
    fids = [read_metrics(sweep / str(job))["val/fid"][-1] for job in (0, 1)]
    assert summary["best_value"] == pytest.approx(min(fids))  # minimised the runs' FID
