"""With the InceptionV3 architecture (random calibrated weights through metric.weights_path):
`python -m ganlab.fid` agrees with torch-fidelity, and a run logs val/fid, KID and IS."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch_fidelity
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from ganlab.cli import fid as fid_cli
from ganlab.data.shapes import render_shapes
from ganlab.metrics.evaluator import FIDEvaluator
from ganlab.metrics.fid import _Precomputed
from ganlab.training.fit import build
from tests.conftest import read_metrics
from tests.fid_helpers import inception_weights, write_pngs  # noqa: F401 (fixture)


def cli_fid(capsys, *args: str) -> float:
    assert fid_cli.main([str(a) for a in args]) == 0
    return float(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.slow
def test_fid_command_matches_torch_fidelity(tmp_path, capsys, inception_weights):  # noqa: F811
    shapes = render_shapes(6, 16, seed=1)
    noisy = np.clip(
        render_shapes(6, 16, seed=2) * 0.5
        + np.random.default_rng(0).integers(0, 128, (6, 3, 16, 16)),
        0,
        255,
    ).astype(np.uint8)
    a, b = write_pngs(tmp_path / "a", shapes), write_pngs(tmp_path / "b", noisy)
    ours = cli_fid(capsys, a, b, "--weights", inception_weights, "--batch-size", 6)
    theirs = torch_fidelity.calculate_metrics(
        input1=str(a),
        input2=str(b),
        fid=True,
        feature_extractor_weights_path=str(inception_weights),
        cuda=False,
        cache=False,
        save_cpu_ram=True,  # no loader workers: 2 cores
        verbose=False,
        batch_size=6,
    )["frechet_inception_distance"]
    assert ours > 1.0  # the stand-in weights separate the two sets
    assert abs(ours - theirs) / theirs < 1e-3


@pytest.mark.slow
def test_run_with_weights_path_logs_val_fid_kid_and_is(make_cfg, inception_weights):  # noqa: F811
    cfg = make_cfg(
        "metric=fid",
        f"metric.weights_path={inception_weights}",
        "metric.num_real=6",
        "metric.batch_size=6",
        "metric.kid=true",
        "metric.inception_score=true",
        "kimg=0.128",
    )
    datamodule, model, trainer = build(cfg)
    (evaluator,) = [c for c in trainer.callbacks if isinstance(c, FIDEvaluator)]
    networks = [
        m for m in evaluator.metrics.modules() if isinstance(m, FeatureExtractorInceptionV3)
    ]
    assert len(networks) == 1  # FID, KID and IS share one Inception
    assert isinstance(evaluator.metrics.kid.inception, _Precomputed)
    assert isinstance(evaluator.metrics.isc.inception, _Precomputed)
    trainer.fit(model, datamodule=datamodule)

    run = Path(cfg.paths.output_dir)
    columns = read_metrics(run)
    for name in ("val/fid", "val/kid_mean", "val/kid_std", "val/is_mean", "val/is_std"):
        assert len(columns[name]) == 1 and math.isfinite(columns[name][0]), name
    # IS = exp(KL) >= 1, up to float32 rounding
    assert columns["val/fid"][0] > 0 and columns["val/is_mean"][0] >= 1.0 - 1e-5
    assert columns["val/num_real"] == [6.0] and columns["val/num_fake"] == [6.0]
    assert (run / "checkpoints" / "best.ckpt").is_file()
    best = float(trainer.callback_metrics["val/fid_best"])
    assert best == pytest.approx(columns["val/fid"][0], rel=1e-6)

    (entry,) = list((Path(cfg.paths.cache_dir) / "fid").glob("shapes_val_16px_n6_*.npz"))
    assert "features" in np.load(entry)  # KID needs the real features cached
