"""ganlab.report: PNG + table from finished runs; PGGAN stage marks; FID rows placed by kimg."""

import csv

import pytest
from PIL import Image

from ganlab.cli import report
from ganlab.cli.report import page, png
from ganlab.cli.report.run import PANELS
from ganlab.training.fit import train


def write_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for row in rows for k in row}, key=lambda k: (k != "step", k))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, keys)
        writer.writeheader()
        writer.writerows(rows)


def pggan_like_rows():
    """4 px until 1 kimg, fade to 8 px until 2 kimg, then 8 px; FID at steps 40 and 80."""
    rows = []
    for i in range(1, 51):
        kimg = i * 0.064
        alpha = 1.0 if kimg < 1.0 else min((kimg - 1.0) / 1.0, 1.0)
        rows.append({"step": 2 * i, "train/kimg": kimg, "train/d_loss": 1.0, "train/g_loss": 0.7,
                     "train/d_real": 0.5, "train/d_fake": -0.5,
                     "train/resolution": 4 if kimg < 1.0 else 8, "train/alpha": alpha})
    rows += [{"step": 40, "val/fid": 90.0},  # kimg from the step
             {"step": 80, "val/fid": 70.0, "val/kimg": 2.56}]  # kimg logged with the FID
    return rows


@pytest.mark.slow
def test_report_of_a_finished_run_writes_png_and_table(make_cfg, tmp_path, capsys):
    train(make_cfg("kimg=0.128", name="run"))
    assert report.main([str(tmp_path / "run")]) == 0
    image = Image.open(tmp_path / "run" / "report.png")
    assert image.size[0] > 1000 and image.size[1] > 300
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if "best FID" in line)
    assert lines[header + 1].split() == ["run", "-", "-", "0.128", "-"]  # no FID; kimg


@pytest.mark.slow
def test_sweep_folder_overlays_jobs_and_table_has_best_fid(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    write_csv(sweep / "0" / "csv" / "metrics.csv", pggan_like_rows())
    write_csv(sweep / "1" / "csv" / "metrics.csv", pggan_like_rows()[:20])
    out_png = tmp_path / "both.png"
    assert report.main([str(sweep), "--out", str(out_png), "--smooth", "0.5"]) == 0
    assert out_png.stat().st_size > 10_000
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["sweep/0", "70.00", "2.560", "3.200", "val/fid"]  # step 80: 2.56
    assert lines[2].split() == ["sweep/1", "-", "-", "1.280", "-"]


def test_stage_boundaries_and_fid_kimg(tmp_path):
    write_csv(tmp_path / "metrics.csv", pggan_like_rows())
    run = report.Run("r", tmp_path, report.read_metrics_csv(tmp_path / "metrics.csv"))
    marks = [(round(k, 3), label, start) for k, label, start in run.stage_boundaries()]
    assert marks == [(1.024, "8px", True), (2.048, "", False)]  # fade start, fade end
    assert run.best_distance() == pytest.approx((70.0, 40 * 0.064))  # FID row placed by its step


def test_missing_metrics_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert report.main([str(tmp_path / "empty")]) == 2
    assert "no metrics.csv" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        report.main([str(tmp_path / "empty"), "--smooth", "1.5"])


def test_a_shapes_run_shows_its_best_fd_in_every_view(tmp_path, capsys):
    """metric=shapes logs val/fd_shapes, no val/fid: the table, the PNG and the HTML page all
    draw it from the one panel list (none of them says "not logged" for the distance)."""
    rows = pggan_like_rows()[:20] + [{"step": 10, "val/fd_shapes": 300.0},
                                     {"step": 30, "val/fd_shapes": 120.0, "val/kimg": 1.0}]
    write_csv(tmp_path / "shapes" / "csv" / "metrics.csv", rows)
    assert report.main([str(tmp_path / "shapes")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["shapes", "120.00", "1.000", "1.280", "val/fd_shapes"]
    runs = report.find_runs([tmp_path / "shapes"])
    distance = next(i for i, panel in enumerate(PANELS) if "val/fd_shapes" in
                    [line.key for line in panel.lines])
    figure = png.figure(runs)
    assert figure.axes[distance].get_legend_handles_labels()[1] == ["val/fd_shapes"]
    text = page.render_html(runs, "t")
    assert "val/fd_shapes</text>" in text and "120 <small>" not in text  # one run: no job table
    assert page.sweep_table(runs + runs).count("120 <small>@ 1 kimg</small>") == 2
