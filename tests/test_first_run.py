"""A newcomer's first run: kimg progress bar, quiet Lightning, outputs announced, tags, extras,
debug presets, reals.png and image grids to the loggers."""

import logging
from pathlib import Path

import pytest
import torch
from PIL import Image

from ganlab.callbacks.samples import save_grid
from ganlab.extras import run_tags
from ganlab.training.fit import train
from tests.conftest import TINY, compose_config, read_metrics

NO_BAR = [o for o in TINY if not o.startswith("callbacks.progress")]


@pytest.mark.slow
def test_progress_bar_counts_kimg_of_the_target(tmp_path, capsys):
    cfg = compose_config([*NO_BAR, "kimg=0.064", "callbacks.progress.refresh_s=0"], tmp_path / "r")
    train(cfg)
    err = capsys.readouterr().err
    assert "0.06/0.064 kimg" in err and "100%" in err
    assert "Epoch" not in err


@pytest.mark.slow
def test_first_lines_say_where_outputs_go_and_noise_is_silenced(make_cfg, tmp_path, caplog, capsys):
    with caplog.at_level(logging.INFO):
        train(make_cfg("kimg=0.064", "callbacks.checkpoint.every_kimg=0.016"))
    messages = [r.getMessage() for r in caplog.records]
    run = tmp_path / "run"
    assert messages[0].startswith("outputs of this run:")
    assert f"checkpoints {run}/checkpoints" in messages[0]
    assert f"samples     {run}/samples" in messages[0]
    captured = capsys.readouterr()
    everything = "\n".join(messages) + captured.out + captured.err
    assert "weights_only" not in everything and "litlogger" not in everything
    assert "validation_step" not in everything


@pytest.mark.slow
def test_tags_reach_the_run_dir_and_loggers(make_cfg, tmp_path):
    cfg = make_cfg("kimg=0.016", "tags=[baseline,lr2e-4]", "logger=[csv,tensorboard]")
    train(cfg)
    run = tmp_path / "run"
    assert (run / "tags.log").read_text().split() == ["baseline", "lr2e-4", "debug"]
    hparams = (run / "csv" / "hparams.yaml").read_text()
    assert "- baseline" in hparams and "- lr2e-4" in hparams
    assert (run / "config_tree.log").read_text().count("baseline") >= 1
    wandb = compose_config([*TINY, "tags=[a]", "logger=wandb"], tmp_path / "w")
    assert list(wandb.logger.wandb.tags) == ["a"]  # the wandb logger reads ${tags}


@pytest.mark.slow
def test_missing_tags_warn_only_when_asked(make_cfg, caplog):
    assert run_tags(make_cfg()) == ["debug"]
    with caplog.at_level(logging.WARNING):
        train(make_cfg("kimg=0.016", name="default"))
    assert "has no tags" not in caplog.text  # tags are optional by default
    with caplog.at_level(logging.WARNING):
        train(make_cfg("kimg=0.016", "extras.enforce_tags=true", name="loud"))
    assert "this run has no tags" in caplog.text


@pytest.mark.slow
@pytest.mark.parametrize(
    ("preset", "extra"),
    [("fdr", []), ("overfit", ["kimg=0.032", "data.resolution=16", "model.generator.width=8",
                               "model.discriminator.width=8"]),
     ("profiler", ["kimg=0.032", "data.resolution=16", "data.num_images=64",
                   "model.generator.width=8", "model.discriminator.width=8"])],
)
def test_debug_presets_compose_and_run_a_tiny_step(tmp_path, preset, extra):
    overrides = [f"debug={preset}", "trainer.accelerator=cpu", "callbacks.progress=null",
                 "logger=csv", "metric=none", "extras=none", *extra]
    if preset == "fdr":
        overrides += ["data.resolution=16", "data.num_images=64", "model.generator.width=8",
                      "model.discriminator.width=8"]
    cfg = compose_config(overrides, tmp_path / "run")
    assert cfg.task_name == "debug"
    train(cfg)
    if preset == "overfit":
        assert cfg.data.num_images == 96 and max(read_metrics(tmp_path / "run")["train/kimg"]) > 0
    if preset == "profiler":
        assert (tmp_path / "run" / "fit-profile.txt").read_text().count("run_training_batch") >= 1


@pytest.mark.slow
def test_reals_grid_is_written_at_the_stage_resolution(make_cfg, tmp_path):
    train(make_cfg("kimg=0.016"))
    reals = Image.open(tmp_path / "run" / "samples" / "reals.png")
    assert reals.size == (8 * 17 + 1, 8 * 17 + 1)  # 64 images of 16 px, 1 px padding


@pytest.mark.slow
def test_save_grid_logs_to_tensorboard(make_cfg, tmp_path):
    from ganlab.training.fit import build

    _, _, trainer = build(make_cfg("logger=tensorboard"))
    images = torch.rand(4, 3, 8, 8) * 2 - 1
    path = save_grid(trainer, images, tmp_path / "g" / "sheet.png", "samples/sheet", nrow=2)
    assert Image.open(path).size == (2 * 9 + 1, 2 * 9 + 1)
    trainer.loggers[0].experiment.flush()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(Path(trainer.loggers[0].log_dir))).Reload()
    assert "samples/sheet" in events.Tags()["images"]


def tensorboard_image_tags(run_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (log_dir,) = {p.parent for p in run_dir.rglob("events.out.tfevents.*")}
    return set(EventAccumulator(str(log_dir)).Reload().Tags()["images"])


@pytest.mark.slow
def test_pggan_stage_grids_and_reals_per_side_reach_the_loggers(make_cfg):
    from ganlab.training.fit import train

    cfg = make_cfg("model=pggan", "model.generator.z_dim=16", "model.schedule.batch_size_dict=null",
                   "model.start_resolution=8", "model.schedule.stabilize_kimg=0.05",
                   "model.schedule.fade_kimg=0.05", "kimg=0.16", "logger=tensorboard")
    train(cfg)
    samples = Path(cfg.paths.output_dir) / "samples"
    assert {p.name for p in samples.glob("reals_*px.png")} == {"reals_8px.png", "reals_16px.png"}
    assert list(samples.glob("stage00_8px_*.png")) and list(samples.glob("stage01_16px_*.png"))
    tags = tensorboard_image_tags(Path(cfg.paths.output_dir))
    assert {"samples/stage", "samples/reals", "samples/fakes"} <= tags


@pytest.mark.slow
def test_sagan_attention_maps_reach_the_loggers(make_cfg):
    from ganlab.training.fit import train

    cfg = make_cfg("model=sagan", "model.generator.attention=[8]",
                   "model.discriminator.attention=[8]", "logger=tensorboard")
    train(cfg)
    assert list((Path(cfg.paths.output_dir) / "samples").glob("attention_*.png"))
    assert "samples/attention" in tensorboard_image_tags(Path(cfg.paths.output_dir))


@pytest.mark.parametrize(("overrides", "metric", "optimized"), [
    ([], "fd_shapes", "val/fd_shapes_best"),  # the first run logs its quality offline
    (["metric=fid"], None, "val/fid_best"),  # the command line still wins
    (["metric=none"], None, None),
    (["data=celeba"], None, "val/fid_best"),  # other data: FID, the papers' metric
])
def test_shapes_data_picks_its_offline_metric_by_default(tmp_path, overrides, metric, optimized):
    cfg = compose_config(overrides, tmp_path / "run")
    assert cfg.optimized_metric == optimized
    if optimized is not None:
        assert cfg.metric.get("name") == metric
