"""ganlab.report --html: one self-contained page (curves, sample slider, sheets, config,
eval.json, sweep table), rendered in headless Chromium (skipped only without a chromium binary)."""

import json
import re

import numpy as np
import pytest
from PIL import Image

from ganlab.cli import report
from ganlab.cli.report.browser import check_page, find_chromium
from tests.test_report import pggan_like_rows, write_csv


def fake_run(folder, rows, grids=3):
    """A run folder as ganlab.run leaves it: metrics.csv, sample grids, a stage sheet, config."""
    write_csv(folder / "csv" / "metrics.csv", rows)
    (folder / "samples").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(grids):
        pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "samples" / f"fakes_{(i + 1) * 64000:09d}.png")
    Image.new("RGB", (24, 24), (200, 30, 30)).save(folder / "samples" / "stage_008px.png")
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "config.yaml").write_text("model:\n  lr_g: 0.000123\n")
    (folder / "eval.json").write_text(json.dumps({"fid": 42.5, "precision": 0.61}))
    return folder


def test_html_report_is_self_contained_with_every_part(tmp_path):
    run = fake_run(tmp_path / "run", pggan_like_rows())
    assert report.main([str(run), "--html"]) == 0
    page = (run / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # no network
    assert "<script src" not in page
    assert page.count('class="plot"') == 4 and page.count('class="curve"') >= 5
    assert page.count("data:image/png;base64,") >= 5  # 3 grids (slider) + sheet + shown grid
    assert "stage_008px.png" in page and "lr_g: 0.000123" in page and "42.5" in page
    assert 'type="range"' in page


def test_html_report_of_a_sweep_has_one_row_per_job(tmp_path):
    sweep = tmp_path / "sweep"
    fake_run(sweep / "0", pggan_like_rows())
    fake_run(sweep / "1", pggan_like_rows()[:20] + [{"step": 40, "val/fid": 55.0}])
    out = tmp_path / "sweep.html"
    assert report.main([str(sweep), "--html", "--out", str(out)]) == 0
    page = out.read_text()
    rows = re.findall(r"<tr><td>(sweep/\d)</td><td>([\d.]+)", page)
    assert rows == [("sweep/0", "70"), ("sweep/1", "55")]


def test_html_report_of_a_shapes_metric_sweep_shows_the_shapes_fd(tmp_path):
    sweep = tmp_path / "sweep"
    for job, fd in (("0", 31.5), ("1", 29.0)):
        fake_run(sweep / job, pggan_like_rows()[:20] + [{"step": 40, "val/fd_shapes": fd}])
    out = tmp_path / "sweep.html"
    assert report.main([str(sweep), "--html", "--out", str(out)]) == 0
    assert re.findall(r"<tr><td>(sweep/\d)</td><td>([\d.]+)", out.read_text()) == [
        ("sweep/0", "31.5"), ("sweep/1", "29")
    ]


def test_html_report_of_a_folder_without_runs_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert report.main([str(tmp_path / "empty"), "--html"]) == 2
    assert "no metrics.csv under" in capsys.readouterr().err


@pytest.mark.skipif(find_chromium() is None, reason="no chromium binary (apt-get install chromium)")
def test_html_report_renders_in_headless_chromium(tmp_path):
    run = fake_run(tmp_path / "run", pggan_like_rows())
    assert report.main([str(run), "--html"]) == 0
    seen = check_page(run / "report.html", tmp_path / "shot.png", width=1000, height=1400)
    assert seen.rendered == "ok", seen
    assert "plots=4" in seen.counts and "broken=0" in seen.counts
    assert seen.console_errors == []
    shot = np.asarray(Image.open(seen.screenshot).convert("RGB")).astype(int)
    assert shot.std() > 10 and seen.distinct_colors > 50  # not blank
    blue = (abs(shot - [31, 119, 180]).sum(-1) < 40).sum()  # the first run's curve colour
    assert blue > 200


@pytest.mark.skipif(find_chromium() is None, reason="no chromium binary (apt-get install chromium)")
def test_browser_check_catches_a_broken_page(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<html><body data-rendered='pending'><script>nosuchfn();</script></body>")
    seen = check_page(page, tmp_path / "shot.png", width=400, height=300)
    assert not seen.ok and seen.rendered == "pending"
    assert any("nosuchfn" in line for line in seen.console_errors)


def test_every_series_of_a_panel_has_its_own_colour_and_a_label(tmp_path):
    run = fake_run(tmp_path / "run", pggan_like_rows())
    assert report.main([str(run), "--html"]) == 0
    page = (run / "report.html").read_text()
    losses = page.split('class="plot"')[1]  # the first panel: D and G losses
    strokes = re.findall(r'class="curve" points="[^"]*" stroke="([^"]+)"', losses)
    assert len(strokes) == 2 and strokes[0] != strokes[1]  # D and G, not both blue
    assert ">D</text>" in losses and ">G</text>" in losses  # the legend names each series
