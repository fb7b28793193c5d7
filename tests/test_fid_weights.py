"""Inception weights offline: never a network call unless metric.download=true, one clear warning
(or a ConfigError with metric.required=true), the hub cache, a bounded opt-in download."""

import io
import logging
import socket
import urllib.request
from pathlib import Path

import pytest
import torch
import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

from ganlab.cli import fid as fid_cli
from ganlab.data.shapes import render_shapes
from ganlab.metrics.evaluator import FIDEvaluator
from ganlab.metrics.inception import WEIGHTS_FILE, WEIGHTS_URL, file_digest
from ganlab.training.fit import build, train
from ganlab.utils import ConfigError
from tests.conftest import compose_config, read_metrics
from tests.fid_helpers import inception_weights, write_pngs  # noqa: F401 (fixture)


@pytest.fixture
def offline(monkeypatch, tmp_path) -> Path:
    """An empty torch hub cache, and every way out to the network raising."""

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:1]}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(tf_inception, "load_state_dict_from_url", no_network)
    torch_home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    return torch_home / "hub" / "checkpoints"


@pytest.mark.slow
def test_fid_is_the_default_metric(tmp_path):
    """FID for any data but the embedded shapes (which score with their shapes metric)."""
    cfg = compose_config(["debug=tiny", "data=celeba"], tmp_path / "run")
    assert cfg.metric._target_ == "ganlab.metrics.evaluator.FIDEvaluator"
    assert cfg.metric.download is False and cfg.metric.required is False


@pytest.mark.slow
def test_run_without_weights_warns_once_trains_and_never_touches_the_network(
    make_cfg, offline, caplog
):
    cfg = make_cfg("metric=fid", "kimg=0.064")
    with caplog.at_level(logging.WARNING, logger="ganlab"):
        best = train(cfg)
    assert best is None
    warnings = [r.getMessage() for r in caplog.records if "FID is off" in r.getMessage()]
    assert len(warnings) == 1
    for needed in (WEIGHTS_FILE, WEIGHTS_URL, str(offline), "metric.weights_path", "metric=none"):
        assert needed in warnings[0], needed
    run = Path(cfg.paths.output_dir)
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert not (run / "checkpoints" / "best.ckpt").exists()
    assert "val/fid" not in read_metrics(run) and "train/d_loss" in read_metrics(run)


@pytest.mark.slow
def test_required_without_weights_stops_before_training(make_cfg, offline):
    with pytest.raises(ConfigError, match=f"{WEIGHTS_FILE} is not in {offline}.*metric=none"):
        build(make_cfg("metric=fid", "metric.required=true"))


@pytest.mark.slow
def test_bad_weights_path_is_reported(tmp_path, offline):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(ConfigError, match=f"the weights file {missing} does not exist"):
        FIDEvaluator(weights_path=str(missing), required=True)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="garbage.pth cannot be loaded"):
        FIDEvaluator(weights_path=str(garbage), required=True)
    wrong_keys = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(3)}, wrong_keys)
    with pytest.raises(ConfigError, match="wrong.pth cannot be loaded .*Missing key"):
        FIDEvaluator(weights_path=str(wrong_keys), required=True)


@pytest.mark.slow
def test_weights_in_the_torch_hub_cache_are_used(offline, inception_weights):  # noqa: F811
    offline.mkdir(parents=True)
    (offline / WEIGHTS_FILE).symlink_to(inception_weights)
    evaluator = FIDEvaluator(required=True)
    assert evaluator.enabled
    assert evaluator.extractor_id["weights"] == file_digest(inception_weights)


@pytest.mark.slow
def test_download_is_opt_in_bounded_and_lands_in_the_hub_cache(
    offline,
    monkeypatch,
    inception_weights,  # noqa: F811
):
    calls = []

    def fake_urlopen(url, timeout=None):
        calls.append((url, timeout))
        return io.BytesIO(inception_weights.read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    assert not FIDEvaluator().enabled and calls == []  # download=false: not even tried
    evaluator = FIDEvaluator(download=True, download_timeout=5.0)
    assert evaluator.enabled and calls == [(WEIGHTS_URL, 5.0)]
    assert (offline / WEIGHTS_FILE).read_bytes() == inception_weights.read_bytes()


def test_failed_download_warns_or_stops(offline, monkeypatch, caplog):
    def timed_out(url, timeout=None):
        raise TimeoutError("timed out")

    monkeypatch.setattr(urllib.request, "urlopen", timed_out)
    with caplog.at_level(logging.WARNING, logger="ganlab"):
        assert not FIDEvaluator(download=True, download_timeout=0.1).enabled
    assert "downloading" in caplog.text and "timed out" in caplog.text
    with pytest.raises(ConfigError, match="downloading .* failed"):
        FIDEvaluator(download=True, required=True)
    assert not list(offline.glob("*"))  # no partial file left behind


def test_fid_command_without_weights_exits_2_offline(offline, tmp_path, capsys):
    images = render_shapes(4, 16, seed=0)
    a, b = write_pngs(tmp_path / "a", images), write_pngs(tmp_path / "b", images)
    assert fid_cli.main([str(a), str(b)]) == 2
    assert WEIGHTS_FILE in capsys.readouterr().err
