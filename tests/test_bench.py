"""`python -m ganlab.bench --quick` runs and writes valid JSON (no timing assertions)."""

import json
import math

import pytest
import torch

from ganlab.bench import main
from ganlab.bench.fid import time_evaluation
from tests.fid_helpers import TinyFeatures

TINY = ["--quick", "--resolution", "16", "--batch", "8", "--steps", "2", "--skip", "loader",
        "--skip", "fid", "--"]


@pytest.mark.slow
def test_quick_bench_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    main(["--model", "dcgan", "--json", str(path), *TINY,
          "model.generator.width=8", "model.discriminator.width=8"])
    result = json.loads(path.read_text())
    (row,) = result["training"]
    assert (row["model"], row["side"], row["batch"]) == ("dcgan", 16, 8)
    for key in ("ganlab_img_per_s", "plain_img_per_s", "ratio", "gflop_per_image",
                "ganlab_peak_memory_mb", "plain_peak_memory_mb"):
        assert math.isfinite(row[key]) and row[key] > 0, key
    assert len(row["ganlab_windows"]) == len(row["plain_windows"]) == 2
    assert result["machine"]["cpu_count"] >= 1 and "torch" in result["machine"]
    assert "ganlab img/s" in capsys.readouterr().out  # the printed table


@pytest.mark.slow
def test_training_step_has_no_host_sync_outside_logging_steps(tmp_path):
    """PGGAN mid-fade with WGAN-GP (penalty, callback, fading reals): the profiled steps, none
    of them a logging step, call no `.item()` / `bool(tensor)` / nonzero."""
    path = tmp_path / "bench.json"
    main(["--model", "pggan", "--json", str(path), "--warmup", "3", *TINY,
          "model.generator.width=8", "model.discriminator.width=8", "model.generator.z_dim=16"])
    (row,) = json.loads(path.read_text())["training"]
    assert (row["side"], row["fading"]) == (16, True)
    assert row["host_syncs_per_step"] == 0


def test_time_evaluation_scores_a_cache_miss_then_a_hit():
    result = time_evaluation(resolution=16, num_real=8, num_fake=8, batch_size=8,
                             extractor=TinyFeatures())
    assert (result["num_real"], result["num_fake"], result["weights"]) == (8, 8, "TinyFeatures")
    assert result["miss_s"] > 0 and result["hit_s"] > 0
    assert math.isfinite(result["fid_miss"])
    assert result["fid_hit"] == pytest.approx(result["fid_miss"], rel=1e-6)  # same fakes


@pytest.mark.slow
def test_overhead_case_keeps_the_default_callbacks(tmp_path):
    """--overhead: DCGAN 16 px with the progress bar and logging on; ms per step reported."""
    path = tmp_path / "bench.json"
    main(["--overhead", "--json", str(path), "--batch", "8", "--warmup", "2", "--steps", "2",
          "--windows", "1", "--rounds", "1", "--skip", "loader", "--skip", "fid", "--",
          "model.generator.width=8", "model.discriminator.width=8"])
    (row,) = json.loads(path.read_text())["training"]
    assert (row["model"], row["side"], row["batch"], row["callbacks"]) == ("dcgan", 16, 8, True)
    assert math.isfinite(row["overhead_ms_per_step"])


def test_flops_count_a_whole_n_critic_cycle(tmp_path):
    """With n_critic=2 the FLOPs per image include the G step of the cycle's last iteration:
    more than half of n_critic=1's (D-only iterations alone would give about half)."""
    from ganlab.bench.cases import Case, compose_config, render_train_set
    from ganlab.bench.paths import flops_per_image

    overrides = ("model.generator.width=8", "model.discriminator.width=8")
    train_set = render_train_set(Case("dcgan", 16, 8), 16)
    images = torch.from_numpy(train_set.array)
    flops = {}
    for n_critic in (1, 2):
        case = Case("dcgan", 16, 8, overrides=(*overrides, f"model.n_critic={n_critic}"))
        flops[n_critic] = flops_per_image(compose_config(case, tmp_path, 16), case, images)
    assert flops[1] > flops[2] > 0.55 * flops[1]


@pytest.mark.slow
def test_end_to_end_quick_runs_a_real_ganlab_run(tmp_path):
    path = tmp_path / "e2e.json"
    main(["--end-to-end", "--quick", "--json", str(path)])
    row = json.loads(path.read_text())["end_to_end"]
    assert row["startup_s"] > 0 and row["steady_img_per_s"] > 0 and row["plain_img_per_s"] > 0
    assert "ganlab.run" in row["command"] and "data=folder" in row["command"]


@pytest.mark.slow
def test_versus_times_each_case_against_its_baseline_overrides(tmp_path):
    path = tmp_path / "bench.json"
    baseline = ["model.generator.attention_kernel=sdpa",
                "model.discriminator.attention_kernel=sdpa"]
    main(["--model", "sagan", "--json", str(path), "--versus", *baseline, *TINY,
          "model.generator.width=8", "model.discriminator.width=8"])
    result = json.loads(path.read_text())
    (row,), (versus,) = result["training"], result["versus"]
    assert "model.generator.attention_kernel=sdpa" not in row["overrides"]  # the new path
    assert versus["baseline"]["overrides"][-2:] == baseline  # the same case, old attention
    assert versus["baseline_overrides"] == baseline
    for key in ("speed_up", "speed_up_cpu_time"):
        assert math.isfinite(versus[key]) and versus[key] > 0
    assert versus["speed_up"] == round(row["ganlab_img_per_s"] / versus["baseline_img_per_s"], 3)
