"""FID during training with a cheap stand-in extractor: the real-statistics cache, val/fid in
metrics.csv, best.ckpt, config errors."""

import math
import re
from pathlib import Path

import pytest
import torch

from ganlab.data.shapes import ShapesDataModule
from ganlab.metrics.evaluator import FIDEvaluator
from ganlab.metrics.fid import FeatureMetrics, add_source
from ganlab.training.fit import build, train
from ganlab.utils import ConfigError
from tests.conftest import read_metrics
from tests.fid_helpers import StubModule, TinyFeatures, shapes, write_pngs

TINY_FID = ["metric=fid", "metric.feature_extractor={_target_:tests.fid_helpers.TinyFeatures}"]


def evaluator(cache_dir: Path, **kwargs) -> FIDEvaluator:
    options = {"num_real": 40, "num_fake": 24, "batch_size": 16, "cache_dir": str(cache_dir)}
    return FIDEvaluator(feature_extractor=TinyFeatures(), **(options | kwargs))


def forbid_reading(datamodule: ShapesDataModule) -> None:
    def fail(*args):
        raise AssertionError("a real image was read although its statistics are cached")

    datamodule.val_set.__getitem__ = fail
    datamodule.val_set.__getitems__ = fail


@pytest.mark.parametrize("kid", [False, True])
def test_cache_hit_reads_no_real_image_and_gives_the_identical_value(tmp_path, kid):
    datamodule = shapes()
    module = StubModule(datamodule)
    first = evaluator(tmp_path, kid=kid).evaluate(module, datamodule, nimg=1000)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    forbid_reading(datamodule)
    again = evaluator(tmp_path, kid=kid)  # a new run: empty memory, the disk cache
    second = again.evaluate(module, datamodule, nimg=1000)
    third = again.evaluate(module, datamodule, nimg=1000)  # memory
    for key in ("fid", "kid_mean", "kid_std") if kid else ("fid",):
        assert second[key] == first[key] == third[key]
    assert first["fid"] > 0 and math.isfinite(first["fid"])
    assert (first["num_real"], first["num_fake"]) == (40, 24)


def test_new_cache_entry_per_resolution_count_and_extractor(tmp_path):
    datamodule = shapes()
    module = StubModule(datamodule)
    evaluator(tmp_path).evaluate(module, datamodule)
    datamodule.set_resolution(8)  # a PGGAN stage
    at_8 = evaluator(tmp_path).evaluate(module, datamodule)
    evaluator(tmp_path, num_real=32).evaluate(module, datamodule)
    FIDEvaluator(
        feature_extractor=TinyFeatures(seed=1), num_real=32, cache_dir=str(tmp_path)
    ).evaluate(module, datamodule)
    names = sorted(p.name for p in tmp_path.glob("*.npz"))
    assert len(names) == 4, names
    assert any("_8px_n40_" in n for n in names) and any("_16px_n40_" in n for n in names)
    assert at_8["resolution"] == 8
    forbid_reading(datamodule)
    assert evaluator(tmp_path).evaluate(module, datamodule)["fid"] == at_8["fid"]


def test_num_real_is_capped_at_the_split_and_num_fake_follows(tmp_path):
    datamodule = shapes(num_val=20)
    values = evaluator(tmp_path, num_real=1000, num_fake=None).evaluate(
        StubModule(datamodule), datamodule
    )
    assert (values["num_real"], values["num_fake"]) == (20, 20)


@pytest.mark.slow
def test_training_logs_val_fid_and_keeps_the_best_checkpoint(make_cfg, tmp_path):
    cfg = make_cfg(*TINY_FID, "metric.every_kimg=0.128", "metric.batch_size=32")
    best = train(cfg)
    run = Path(cfg.paths.output_dir)
    columns = read_metrics(run)
    fids = columns["val/fid"]
    assert len(fids) == 4 and all(math.isfinite(f) for f in fids)
    assert columns["val/kimg"] == [0.128, 0.256, 0.384, 0.512]
    assert set(columns["val/num_real"]) == {64.0} and set(columns["val/num_fake"]) == {64.0}
    assert best == pytest.approx(min(fids), rel=1e-6)  # optimized_metric: val/fid_best
    bests = [min(fids[: i + 1]) for i in range(len(fids))]
    assert columns["val/fid_best"] == pytest.approx(bests, rel=1e-6)  # the lowest so far
    saved = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    state = next(v for k, v in saved["callbacks"].items() if "FIDEvaluator" in k)
    assert state["best_fid"] == pytest.approx(min(fids), rel=1e-6)
    assert saved["ganlab"]["nimg"] == state["best_nimg"] == 128 * (1 + fids.index(min(fids)))
    assert len(list((Path(cfg.paths.cache_dir) / "fid").glob("*.npz"))) == 1


@pytest.mark.slow
def test_fakes_come_from_the_ema_generator_in_batches(make_cfg, tmp_path):
    _, model, _ = build(make_cfg(*TINY_FID))
    model.generator_ema.train()
    batches = list(
        FIDEvaluator(feature_extractor=TinyFeatures(), batch_size=8).fake_batches(
            model, num=20, seed=0, resolution=16
        )
    )
    assert [b.shape[0] for b in batches] == [8, 8, 4]  # never all at once
    assert all(b.dtype == torch.uint8 for b in batches)
    assert model.generator_ema.training  # eval mode only while generating


@pytest.mark.slow
@pytest.mark.parametrize(
    "override, message",
    [
        ("metric.num_real=1", "metric.num_real=1 must be an integer >= 2"),
        ("metric.num_fake=0", "metric.num_fake=0 must be an integer >= 2"),
        ("metric.every_kimg=0", "metric.every_kimg=0"),
        ("metric.inception_score=true", "metric.inception_score=true needs the Inception logits"),
    ],
)
def test_bad_metric_config_is_a_config_error(make_cfg, override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        build(make_cfg(*TINY_FID, override))


def test_a_cache_entry_is_a_statistics_file_for_the_fid_command(tmp_path):
    datamodule = shapes()
    evaluator(tmp_path / "cache").evaluate(StubModule(datamodule), datamodule)
    (entry,) = list((tmp_path / "cache").glob("shapes_val_16px_n40_*.npz"))
    folder = write_pngs(tmp_path / "reals", datamodule.val_set.array[:40])
    metrics = FeatureMetrics(TinyFeatures())
    assert add_source(metrics, folder, True, batch_size=16, num=None) == 40
    assert add_source(metrics, entry, False, batch_size=16, num=None) == 40
    stats = metrics.stats(real=True)
    assert abs(metrics.compute()["fid"]) < 1e-9 * float(stats.sigma.trace())  # same images


@pytest.mark.slow
def test_resume_restores_the_best_fid(make_cfg):
    cfg = make_cfg(*TINY_FID, "metric.every_kimg=0.064", "kimg=0.128")
    best = train(cfg)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    datamodule, model, trainer = build(make_cfg(*TINY_FID, "kimg=0.128", name="resumed"))
    trainer.fit(model, datamodule=datamodule, ckpt_path=str(last))  # nothing left to train
    (evaluator,) = [c for c in trainer.callbacks if isinstance(c, FIDEvaluator)]
    assert evaluator.best_fid == best == float(trainer.callback_metrics["val/fid_best"])
    assert evaluator.last_nimg == 128  # not evaluated again at the resume point
