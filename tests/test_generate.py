"""ganlab.generate's explore modes: truncation, interpolation (grid + GIF), nearest neighbours,
run folders as sources, and each bad input with its message."""

from pathlib import Path

import pytest
import torch
from PIL import Image

from ganlab.cli.generate import (
    lerp,
    main,
    nearest_neighbours,
    pixel_features,
    render,
    resolve_checkpoint,
    shapes_feature_fn,
    slerp,
    truncated,
)
from ganlab.data.shapes import ShapesDataModule
from ganlab.nets.progressive import Generator as ProgressiveGenerator
from ganlab.training.checkpoints import load_generator
from ganlab.training.fit import train
from ganlab.utils import ConfigError
from tests.conftest import TINY, compose_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gen")
    torch.manual_seed(0)
    train(compose_config([*TINY, "kimg=0.064"], root / "run"))
    return root / "run"


@pytest.mark.slow
def test_truncation_at_psi_1_equals_no_truncation(run_dir):
    generator, _ = load_generator(run_dir / "checkpoints" / "last.ckpt")
    z = torch.randn(4, generator.z_dim)
    plain = generator(z)
    assert torch.equal(render(generator, z, psi=1.0), plain)
    assert not torch.allclose(render(generator, z, psi=0.5), plain)
    assert torch.allclose(render(generator, z, psi=0.5), generator(z * 0.5))


def test_truncation_scales_pggan_after_its_latent_pixel_norm():
    generator = ProgressiveGenerator(z_dim=8, resolution=8, width=8).eval()
    z = torch.randn(3, 8)
    with torch.no_grad(), truncated(generator, 1.0) as g:
        assert torch.equal(g(z), generator(z))
    with torch.no_grad(), truncated(generator, 0.3) as g:
        cut = g(z)
    assert not torch.allclose(cut, generator(z))  # scaling z alone would be normalised away
    torch.testing.assert_close(generator(z), generator(z * 0.3))  # as this shows; hook removed


def test_slerp_and_lerp_endpoints_equal_the_two_latents():
    a, b = torch.randn(3, 16), torch.randn(3, 16)
    t = torch.linspace(0, 1, 5)
    for path in (slerp(a, b, t), lerp(a, b, t)):
        assert path.shape == (3, 5, 16)
        torch.testing.assert_close(path[:, 0], a)
        torch.testing.assert_close(path[:, -1], b)
    mid = slerp(a, b, torch.tensor([0.5]))[:, 0]
    assert (mid.norm(dim=1) > lerp(a, b, torch.tensor([0.5]))[:, 0].norm(dim=1)).all()


def test_nearest_neighbours_of_a_training_image_include_itself():
    data = ShapesDataModule(resolution=16, num_images=64, num_val_images=8)
    dataset = data.build_split("train")
    queries = torch.stack([dataset[5], dataset[40]])
    index, dist = nearest_neighbours(queries, dataset, k=3, embed=pixel_features, batch_size=16)
    assert index[:, 0].tolist() == [5, 40]
    assert dist[:, 0].abs().max() < 1e-4 and (dist[:, 1:] >= dist[:, :1]).all()


def test_nearest_neighbours_in_the_shapes_feature_space_include_itself():
    data = ShapesDataModule(resolution=32, num_images=64, num_val_images=8)
    dataset = data.build_split("train")
    embed = shapes_feature_fn("ganlab.data.shapes.ShapesDataModule")
    assert embed is not None
    assert shapes_feature_fn("ganlab.data.folder.ImageFolderDataModule") is None
    index, dist = nearest_neighbours(torch.stack([dataset[5], dataset[40]]), dataset, k=3,
                                     embed=embed, batch_size=16)
    assert index[:, 0].tolist() == [5, 40] and dist[:, 0].abs().max() < 1e-3


def test_interpolate_writes_a_grid_and_a_gif_of_n_frames(run_dir, tmp_path, capsys):
    out = tmp_path / "interp"
    assert main([str(run_dir), "--interpolate", "6", "--num", "3", "--out", str(out)]) == 0
    gif = Image.open(out / "interpolation.gif")
    assert gif.n_frames == 6
    grid = Image.open(out / "interpolation.png")
    assert grid.size == (6 * 65 + 1, 3 * 65 + 1)  # 16 px upscaled to 64, 1 px padding
    printed = capsys.readouterr().out
    try:
        import imageio_ffmpeg
    except ImportError:
        assert "MP4 skipped: imageio-ffmpeg is not installed" in printed
    else:
        frames, _ = imageio_ffmpeg.count_frames_and_secs(str(out / "interpolation.mp4"))
        assert frames == 6


def test_truncation_sweep_and_nearest_sheets(run_dir, tmp_path):
    assert main([str(run_dir), "--truncation-sweep", "--num", "4",
                 "--out", str(tmp_path / "sweep.png")]) == 0
    assert Image.open(tmp_path / "sweep.png").size == (4 * 65 + 1, 5 * 65 + 1)
    assert main([str(run_dir), "--nearest", "3", "--num", "2", "--space", "pixel",
                 "--out", str(tmp_path / "nn")]) == 0
    assert Image.open(tmp_path / "nn" / "nearest.png").size == (4 * 65 + 1, 2 * 65 + 1)


def test_a_run_folder_resolves_to_best_then_last(run_dir, tmp_path):
    assert resolve_checkpoint(run_dir) == run_dir / "checkpoints" / "last.ckpt"
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best.ckpt").write_bytes(b"")
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert resolve_checkpoint(tmp_path).name == "best.ckpt"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--truncation", "0"], r"--truncation=0.0 must be in \(0, 1\]"),
        (["--truncation", "1.5"], r"--truncation=1.5 must be in \(0, 1\]"),
        (["--interpolate", "1"], r"--interpolate=1 must be >= 2"),
    ],
)
def test_bad_explore_values_exit_2_naming_the_value(run_dir, tmp_path, capsys, args, message):
    assert main([str(run_dir), *args, "--out", str(tmp_path / "x")]) == 2
    assert pytest.importorskip("re").search(message, capsys.readouterr().err)


def test_a_run_folder_without_checkpoints_is_rejected(tmp_path, capsys):
    assert main([str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "holds no checkpoints/best.ckpt or checkpoints/last.ckpt" in capsys.readouterr().err


def test_nearest_without_a_dataset_to_search_is_rejected(run_dir, tmp_path, capsys):
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    checkpoint["ganlab"]["config"]["data"] = {
        "_target_": "ganlab.data.folder.ImageFolderDataModule", "root": str(tmp_path / "gone")}
    torch.save(checkpoint, tmp_path / "moved.ckpt")
    assert main([str(tmp_path / "moved.ckpt"), "--nearest", "2", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--nearest cannot build the training data" in err and "--data-root" in err
    with pytest.raises(ConfigError, match="holds no data config"):
        from ganlab.cli.generate import build_train_set

        build_train_set({}, None)
