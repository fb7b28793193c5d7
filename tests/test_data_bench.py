"""The loader benchmark runs end to end on a tiny synthetic set and reports both paths."""

import json

import pytest

from ganlab.data.bench import loader_benchmark, main


@pytest.mark.slow
def test_loader_benchmark_returns_the_figures(tmp_path):
    result = loader_benchmark(resolution=16, num_images=24, batch_size=8, decode_workers=0,
                              seconds=0.05)
    assert result["num_images"] == 24 and result["resolution"] == 16
    assert result["cached_img_per_s"] > 0 and result["decode_img_per_s"] > 0
    assert result["speedup"] > 1  # cached reads beat decoding even here
    assert isinstance(result["target_met"], bool)


@pytest.mark.slow
def test_cli_prints_and_writes_json(tmp_path, capsys):
    out = tmp_path / "loader.json"
    main(["--resolution", "8", "--num-images", "16", "--batch-size", "8", "--decode-workers", "0",
          "--seconds", "0.05", "--json", str(out)])
    assert "img/s" in capsys.readouterr().out
    assert json.loads(out.read_text())["resolution"] == 8
