"""Experiment tooling: multirun failures, W&B offline, images through loggers, -m + DDP, SLURM."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import wandb
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from pytorch_lightning.plugins.environments import SLURMEnvironment

from ganlab import loggers, multirun
from ganlab.training.fit import build, train
from ganlab.utils import ConfigError
from tests.conftest import CONF_DIR, TINY, compose_config, read_metrics

ROOT = CONF_DIR.parent


# ----------------------------------------------------------------------------- multirun
@pytest.mark.slow
def test_multirun_continues_past_a_failed_job_and_reports_it(tmp_path):
    sweep = tmp_path / "sweep"
    command = [sys.executable, "-m", "ganlab.run", "-m", *TINY, "kimg=0.064",
               "model.lr_g=1e-4,-1,2e-4", f"hydra.sweep.dir={sweep}",
               f"paths.cache_dir={tmp_path / 'cache'}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]  # the sweep ran to the end, then reported
    for job, lr in ((0, 1e-4), (2, 2e-4)):  # the jobs around the failed one trained
        assert read_metrics(sweep / str(job))["train/lr_g"][-1] == pytest.approx(lr)
        assert (sweep / str(job) / "checkpoints" / "last.ckpt").is_file()
    assert not list((sweep / "1").rglob("metrics.csv"))
    assert "1 job(s) of the sweep failed" in output
    assert "job 1 [" in output and "model.lr_g=-1" in output
    assert f"log: {sweep / '1' / 'run.log'}" in output
    assert "model.lr_g=-1 must be a positive number" in (sweep / "1" / "run.log").read_text()


def multirun_cfg(tmp_path: Path, *overrides: str):
    return compose_config([*TINY, "hydra.mode=MULTIRUN", f"hydra.sweep.dir={tmp_path / 'sw42'}",
                           "hydra.job.num=3", *overrides], tmp_path / "sw42" / "3")


@pytest.mark.slow
def test_multirun_with_ddp_is_refused_with_what_to_do_instead(tmp_path):
    cfg = multirun_cfg(tmp_path, "trainer=ddp_cpu", "trainer.devices=2")
    _, _, trainer = build(cfg)
    with pytest.raises(multirun.MultirunDDPError, match=r"hydra/launcher=slurm.*without -m"):
        multirun.check_launch(trainer)
    with pytest.raises(SystemExit) as exit_info:  # stops the whole sweep, status 2
        multirun.run_job(train, cfg)
    assert exit_info.value.code == 2
    multirun.check_launch(build(multirun_cfg(tmp_path))[2])  # one device per job: fine


def test_a_single_run_is_not_a_multirun(make_cfg):
    make_cfg()
    assert not multirun.is_multirun()


# ----------------------------------------------------------------------------- W&B mode
def test_wandb_mode_resolution_never_needs_a_prompt(tmp_path):
    home = {"HOME": str(tmp_path)}
    assert loggers.resolve_wandb_mode("auto", home)[0] == "offline"
    assert loggers.resolve_wandb_mode("auto", {**home, "WANDB_API_KEY": "k" * 40})[0] == "online"
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40)
    assert loggers.resolve_wandb_mode("auto", home) == ("online", "W&B credentials found")
    assert loggers.resolve_wandb_mode("auto", {**home, "WANDB_MODE": "dryrun"})[0] == "offline"
    assert loggers.resolve_wandb_mode("disabled", home)[0] == "disabled"
    assert loggers.resolve_wandb_mode("offline", {**home, "WANDB_API_KEY": "k"})[0] == "offline"
    with pytest.raises(ConfigError, match="no credentials.*wandb login.*mode=offline"):
        loggers.resolve_wandb_mode("online", {"HOME": str(tmp_path / "nobody")})
    with pytest.raises(ConfigError, match="logger.wandb.mode='cloud': choose one of auto"):
        loggers.resolve_wandb_mode("cloud", home)


def test_wandb_group_and_name_follow_the_sweep(tmp_path):
    multirun_cfg(tmp_path, "model.lr_g=1e-4")
    logger = loggers.WandbLogger(save_dir=str(tmp_path), mode="disabled")
    assert logger._wandb_init["group"] == "sw42"
    name = logger._wandb_init["name"]
    assert name.startswith("3:") and "model.lr_g=1e-4" in name  # job number and overrides


def read_wandb_records(run_dir: Path) -> list:
    """The records of the run's offline .wandb file (W&B's leveldb-style log of protobufs)."""
    from wandb.proto import wandb_internal_pb2

    (path,) = list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    data, records, chunk, pos, block = path.read_bytes(), [], b"", 7, 32768
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = chunk + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # FULL or LAST fragment
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


@pytest.mark.slow
def test_wandb_offline_run_has_config_scalars_and_sample_grids(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HOME", str(tmp_path))  # no .netrc: nothing to log in with
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setattr("sys.stdin", None)  # a prompt would fail, not wait
    cfg = make_cfg("logger=many", "kimg=0.128", "callbacks.samples.every_kimg=0.064",
                   "logger.wandb.log_model=true")
    train(cfg)
    run = Path(cfg.paths.output_dir)
    wandb.teardown()  # wait for W&B's service process to write out the run file

    records = read_wandb_records(run)
    config = {item.key: json.loads(item.value_json)
              for r in records if r.HasField("config") for item in r.config.update}
    assert config["model"]["lr_g"] == 1e-3 and config["data"]["resolution"] == 16  # run config
    history = [{".".join(item.nested_key) or item.key: item.value_json for item in r.history.item}
               for r in records if r.HasField("history")]
    for key in ["train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "train/lr_g",
                "train/kimg", "train/img_per_s"]:
        assert any(key in row for row in history), key
    grids = [row for row in history if any(k.startswith("samples/fakes") for k in row)]
    assert len(grids) == 2 and all("train/kimg" in row for row in grids)  # on the kimg axis
    assert len(list(run.glob("wandb/offline-run-*/files/media/images/samples/fakes_*.png"))) == 2
    assert len(list(run.glob("wandb/offline-run-*/files/media/images/samples/reals_*.png"))) == 1
    tags = [tag for r in records if r.HasField("run") for tag in r.run.tags]
    assert "debug" in tags  # the top-level tags plus the task name (debug=tiny)
    metrics = {m.glob_name or m.name: m for r in records if r.HasField("metric")
               for m in [r.metric]}
    assert metrics["train/*"].step_metric == "train/kimg"
    assert metrics["val/fid"].summary.min
    assert any(r.HasField("exit") for r in records)  # finished: the next job starts its own run
    artifacts = [r.artifact for r in records if r.HasField("artifact")]
    assert [a.type for a in artifacts] == ["model"]  # log_model: last.ckpt as an artifact
    assert "last.ckpt" in str(artifacts[0].manifest)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0}).Reload()
    assert len(events.Images("samples/fakes")) == 2  # the same grids through TensorBoard
    assert "train/d_loss" in events.Tags()["scalars"]
    columns = read_metrics(run)  # and the CSV
    assert columns["train/kimg"][-1] == pytest.approx(0.128)
    assert len(columns["train/img_per_s"]) >= 6 and min(columns["train/img_per_s"]) > 0


@pytest.mark.slow
def test_log_image_checks_its_input(make_cfg):
    _, _, trainer = build(make_cfg())
    assert loggers.log_image(trainer, "x", torch.rand(3, 8, 8)) == []  # CSV only: no images
    with pytest.raises(ValueError, match=r"expected an image \[3, H, W\]"):
        loggers.log_image(trainer, "x", torch.rand(2, 3, 8, 8))


# ----------------------------------------------------------------------------- SLURM
@pytest.mark.slow
def test_slurm_launcher_preset_makes_one_task_per_gpu_and_requeue_signal(tmp_path):
    from omegaconf import OmegaConf
    from submitit.slurm.slurm import _make_sbatch_string

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", return_hydra_config=True, overrides=[
            "hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2",
            "hydra.launcher.partition=gpu", f"hydra.sweep.dir={tmp_path}"])
    p = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert p["_target_"].endswith("SlurmLauncher")
    assert (p["gpus_per_node"], p["tasks_per_node"], p["nodes"]) == (4, 4, 2)
    script = _make_sbatch_string(  # what submitit writes from these settings
        command="python -m ganlab.run", folder=str(tmp_path), job_name="run",
        partition=p["partition"], time=p["timeout_min"], nodes=p["nodes"],
        gpus_per_node=p["gpus_per_node"], ntasks_per_node=p["tasks_per_node"],
        cpus_per_task=p["cpus_per_task"], mem=f"{p['mem_gb']}GB",
        signal_delay_s=p["signal_delay_s"], additional_parameters=p["additional_parameters"])
    for line in ["--partition=gpu", "--gpus-per-node=4", "--ntasks-per-node=4", "--nodes=2",
                 "--signal=USR1@120", "--time=1440"]:
        assert f"#SBATCH {line}\n" in script, line
    assert "USR2" not in script  # Lightning requeues on USR1; submitit's USR2 is replaced


@pytest.mark.slow
def test_slurm_requeue_resumes_from_lightnings_hpc_checkpoint(make_cfg, tmp_path, monkeypatch):
    first = make_cfg("kimg=0.064", name="first")
    train(first)  # 4 iterations
    requeued = tmp_path / "requeued"
    requeued.mkdir()
    shutil.copy(Path(first.paths.output_dir) / "checkpoints" / "last.ckpt",
                requeued / "hpc_ckpt_1.ckpt")  # what the SIGUSR1 handler saves before requeue
    for key, value in {"SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_JOB_ID": "7",
                       "SLURM_JOB_NAME": "ganlab", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
                       "SLURM_NODEID": "0", "SLURM_NODELIST": "node1"}.items():
        monkeypatch.setenv(key, value)
    cfg = make_cfg("kimg=0.128", name="requeued")
    datamodule, model, trainer = build(cfg)
    environment = trainer._accelerator_connector.cluster_environment
    assert isinstance(environment, SLURMEnvironment) and environment.auto_requeue
    trainer.fit(model, datamodule=datamodule)  # ckpt_path=None: Lightning picks hpc_ckpt_1
    assert model.nimg == 128 and model.iteration == 8
    assert min(read_metrics(requeued)["train/kimg"]) > 0.064  # continued, did not restart
