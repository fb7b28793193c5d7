"""metric=shapes: the FID evaluator with the shapes feature net, logging val/fd_shapes, its
best.ckpt, and the config errors (other data, unknown extractor names)."""

import math
import re
from pathlib import Path

import pytest
import torch

from ganlab.data.shapes import render_shapes
from ganlab.training.fit import build, train
from ganlab.utils import ConfigError
from tests.conftest import read_metrics
from tests.fid_helpers import write_pngs


@pytest.mark.slow
def test_training_with_metric_shapes_logs_fd_shapes_and_keeps_the_best(make_cfg):
    cfg = make_cfg("metric=shapes", "metric.every_kimg=0.256", "metric.batch_size=32")
    best = train(cfg)
    run = Path(cfg.paths.output_dir)
    columns = read_metrics(run)
    assert "val/fid" not in columns
    values = columns["val/fd_shapes"]
    assert len(values) == 2 and all(math.isfinite(v) and v > 0 for v in values)
    assert best == pytest.approx(min(values), rel=1e-6)
    for name in ("precision", "recall", "density", "coverage"):  # prdc: on for metric=shapes
        assert len(columns[f"val/{name}"]) == 2 and all(v >= 0 for v in columns[f"val/{name}"])
    saved = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    assert saved["ganlab"]["nimg"] == 256 * (1 + values.index(min(values)))
    assert len(list((Path(cfg.paths.cache_dir) / "fd_shapes").glob("shapes_*.npz"))) == 1


@pytest.mark.slow
def test_metric_shapes_refuses_other_data_before_training(make_cfg, tmp_path):
    root = write_pngs(tmp_path / "images", render_shapes(8, 16, seed=0))
    cfg = make_cfg("metric=shapes", "data=folder", f"data.root={root}", "data.resolution=16")
    with pytest.raises(ConfigError, match="use metric=fid for this data, or data=shapes"):
        build(cfg)


@pytest.mark.slow
def test_an_unknown_extractor_name_is_a_config_error(make_cfg):
    with pytest.raises(ConfigError, match=re.escape("metric.feature_extractor='inceptoin'")):
        build(make_cfg("metric=shapes", "metric.feature_extractor=inceptoin"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["", "val/fid", 3])
def test_a_bad_metric_name_is_a_config_error(make_cfg, name):
    with pytest.raises(ConfigError, match="metric.name="):
        build(make_cfg("metric=shapes", f"metric.name={name!r}" if name != 3 else "metric.name=3"))
