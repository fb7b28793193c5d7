"""Write and explore images from a checkpoint's EMA generator.

    python -m ganlab.generate SOURCE --out PATH [--num N] [--seed S] [--grid] [--raw]
        [--truncation PSI | --truncation-sweep] [--interpolate N [--lerp]] [--nearest K]

SOURCE is a checkpoint or a run folder (its checkpoints/best.ckpt, else last.ckpt). Plain
generation: PATH is a folder receiving N PNG files, or with --grid one PNG grid. The explore
modes write into PATH (a folder; or a .png path, whose stem then names the side files):
  --truncation-sweep  truncation_sweep.png: the same latents (columns) at psi 1 ... 0.2 (rows)
  --interpolate N     interpolation.png (rows of N steps between two random latents),
                      interpolation.gif (N frames), interpolation.mp4 (only with imageio-ffmpeg)
  --nearest K         nearest.png: each fake (left column) beside its K nearest training images

Conditional generators (trained with data.labels): `--class NAME` draws that class (a name the
checkpoint stores, or its index), `--attributes Smiling=1,Eyeglasses=0` those attribute values
(the others 0), in every mode; `--per-class N` writes per_class.png, a row of N images per class
(or attribute combination) with the same latents in every row. Without them the labels are drawn
at the training data's frequencies (from --seed). An unknown name lists the known ones.

Truncation (`--truncation PSI`, psi in (0, 1], 1 = none) scales the latent towards the mean
latent: z' = mean + psi * (z - mean), with mean = 0 for Gaussian z. Chosen over BigGAN's
resampling of |z| > threshold because it is continuous in psi, is exactly the identity at
psi = 1, and keeps each latent's direction, so a sweep shows the *same* images losing variety
(resampling replaces components, i.e. shows different images). Generators that pixel-normalise z
(PGGAN) would undo a scaled z, so for them the normalised latent is scaled instead.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.utils import save_image

from ganlab.data.transforms import images_to_grid, resize, to_float, to_uint8
from ganlab.models.conditioning import Labels
from ganlab.training.checkpoints import CHECKPOINTS, load_generator, run_checkpoint
from ganlab.utils import ConfigError

SWEEP_PSI = (1.0, 0.8, 0.6, 0.4, 0.2)  # rows of --truncation-sweep
PIXEL_SIDE = 16  # side of the downscaled pixel space of --nearest, px


# ----------------------------------------------------------------------------- sources
def resolve_checkpoint(source: str | Path) -> Path:
    """A checkpoint file as given, or a run folder's checkpoints/best.ckpt, else last.ckpt (or
    best, else last, lying in the folder itself, e.g. a checkpoints folder)."""
    path = Path(source).expanduser()
    if not path.is_dir():
        return path  # load_checkpoint names a missing file
    checkpoint = run_checkpoint(path) or next(
        (path / name for name in CHECKPOINTS if (path / name).is_file()), None
    )
    if checkpoint is not None:
        return checkpoint
    raise ConfigError(
        f"run folder {str(path)!r} holds no checkpoints/best.ckpt or checkpoints/last.ckpt; pass "
        "a run folder that trained at least to its first checkpoint (callbacks.checkpoint."
        "every_kimg) or a .ckpt file"
    )


# ----------------------------------------------------------------------------- latents
def check_psi(psi: float) -> float:
    """psi in (0, 1], else ConfigError naming the value."""
    if not 0.0 < psi <= 1.0:
        raise ConfigError(
            f"--truncation={psi} must be in (0, 1]: 1 = no truncation, smaller = closer to the "
            "mean latent (less variety, higher fidelity), e.g. --truncation 0.7"
        )
    return psi


def latent_normalizer(generator: nn.Module) -> nn.Module | None:
    """The generator's latent normalisation (PGGAN's pixel norm of z), if it has one."""
    return next((m for name, m in generator.named_modules() if name.endswith("normalize_z")
                 and not isinstance(m, nn.Identity)), None)


@contextlib.contextmanager
def truncated(generator: nn.Module, psi: float) -> Iterator[Callable[[Tensor], Tensor]]:
    """Yields `g(z)`: images of latents scaled towards the mean latent (0) by psi.

    Where G normalises z first (PGGAN), the normalised latent is scaled (a forward hook).
    """
    check_psi(psi)
    norm = latent_normalizer(generator)
    if norm is None:
        yield lambda z: generator(z * psi if psi != 1.0 else z)
        return
    handle = norm.register_forward_hook(lambda m, i, out: out * psi if psi != 1.0 else out)
    try:
        yield generator
    finally:
        handle.remove()


def draw_latents(num: int, z_dim: int, seed: int) -> Tensor:
    """[num, z_dim] ~ N(0, 1) from `seed` (CPU)."""
    return torch.randn(num, z_dim, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def render(
    generator: nn.Module, z: Tensor, psi: float = 1.0, batch_size: int = 256, device: str = "cpu"
) -> Tensor:
    """Images [N, 3, R, R] in [-1, 1] (CPU) of latents z [N, z_dim], truncated by psi."""
    generator = generator.to(device)
    with truncated(generator, psi) as g:
        chunks = [g(chunk.to(device)).float().cpu() for chunk in z.split(batch_size)]
    return torch.cat(chunks)


@torch.no_grad()
def generate(
    generator: nn.Module, num: int, seed: int, batch_size: int, device: str, psi: float = 1.0
) -> Tensor:
    """num images [num, 3, R, R] in [-1, 1] (on the CPU), latents drawn from `seed`."""
    return render(generator, draw_latents(num, generator.z_dim, seed), psi, batch_size, device)


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation of latents a, b [N, D] at fractions t [T] -> [N, T, D].

    Gaussian latents live near a sphere; slerp keeps intermediate norms typical (lerp shrinks
    them towards the mean). Falls back to lerp where a and b are (anti)parallel.
    """
    a_n, b_n = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(1).clamp(-1, 1))[:, None, None]  # [N, 1, 1]
    t = t[None, :, None]
    so = torch.sin(omega)
    safe = so.abs() > 1e-6
    so = torch.where(safe, so, torch.ones_like(so))
    out = (torch.sin((1 - t) * omega) * a[:, None] + torch.sin(t * omega) * b[:, None]) / so
    return torch.where(safe, out, lerp(a, b, t[0, :, 0]))


def lerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Linear interpolation of latents a, b [N, D] at fractions t [T] -> [N, T, D]."""
    return a[:, None] + t[None, :, None] * (b - a)[:, None]


def interpolation_latents(rows: int, steps: int, z_dim: int, seed: int, spherical: bool) -> Tensor:
    """[rows, steps, z_dim]: `steps` points from one random latent to another, per row."""
    if steps < 2:
        raise ConfigError(f"--interpolate={steps} must be >= 2 (the two end points included), "
                          "e.g. --interpolate 8")
    ends = draw_latents(2 * rows, z_dim, seed)
    t = torch.linspace(0, 1, steps)
    return (slerp if spherical else lerp)(ends[:rows], ends[rows:], t)


# ----------------------------------------------------------------------------- labels
class LabelledGenerator(nn.Module):
    """A conditional generator called as g(z): the labels of each call come from `queue` (set
    with `use`, consumed in order, so batches of one render share it) or else from `draw(n)`.
    Truncation and interpolation see only z."""

    def __init__(self, generator: nn.Module, draw: Callable[[int], Tensor]) -> None:
        super().__init__()
        self.generator, self.draw, self.z_dim = generator, draw, generator.z_dim
        self.queue: Tensor | None = None

    def use(self, labels: Tensor | None) -> None:
        self.queue = labels

    def forward(self, z: Tensor) -> Tensor:
        if self.queue is None:
            labels = self.draw(len(z))
        else:
            labels, self.queue = self.queue[: len(z)], self.queue[len(z):]
        return self.generator(z, labels.to(z.device, z.dtype))


def parse_attributes(text: str) -> dict[str, int]:
    """'Smiling=1,Eyeglasses=0' -> {'Smiling': 1, 'Eyeglasses': 0}; ConfigError if malformed."""
    values = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or value.strip() not in ("0", "1"):
            raise ConfigError(f"--attributes {text!r}: expected NAME=0|1 pairs, e.g. Smiling=1")
        values[name.strip()] = int(value)
    return values


def conditional(generator: nn.Module, config: dict, args: argparse.Namespace
                ) -> tuple[nn.Module, Labels | None]:
    """The generator as render() calls it (g(z)) and its labels (None: unconditional). ConfigError
    for --class / --attributes / --per-class on an unconditional checkpoint or unknown names."""
    model = config.get("model") or {}
    asked = args.class_name is not None or args.attributes is not None or args.per_class
    if model.get("conditioning", "none") == "none":
        if asked:
            raise ConfigError(
                "--class / --attributes / --per-class need a conditional checkpoint (trained with "
                "data.labels=class or attributes); this one is unconditional"
            )
        return generator, None
    labels = Labels(**model["labels"])
    if args.class_name is not None and labels.multi_label:
        raise ConfigError(f"this checkpoint has attributes ({', '.join(labels.names)}): use "
                          "--attributes NAME=1,...")
    if args.attributes is not None and not labels.multi_label:
        raise ConfigError(f"this checkpoint has classes ({', '.join(labels.names)}): use "
                          "--class NAME")
    if args.class_name is not None:
        fixed = labels.of_class(args.class_name)
    elif args.attributes is not None:
        fixed = labels.of_attributes(parse_attributes(args.attributes))
    else:
        rng = torch.Generator().manual_seed(args.seed)
        return LabelledGenerator(generator, lambda n: labels.random(n, generator=rng)), labels
    return LabelledGenerator(generator, lambda n: fixed.expand(n, -1)), labels


def write_per_class(args: argparse.Namespace, generator: LabelledGenerator, labels: Labels,
                    render_) -> list[Path]:
    """per_class.png: a row of --per-class images per class / attribute combination, the same
    latents in every row; the row names printed."""
    rows, names = labels.grid_rows()
    z = draw_latents(args.per_class, generator.z_dim, args.seed)
    generator.use(rows.repeat_interleave(len(z), 0))
    images = render_(z.repeat(len(rows), 1))
    generator.use(None)
    print("rows: " + "; ".join(names))
    folder, stem = out_paths(Path(args.out), "per_class")
    return [save_grid(images, len(z), stem.with_suffix(".png"))]


# ----------------------------------------------------------------------------- writers
def write_pngs(images: Tensor, folder: Path) -> None:
    """Save [N, 3, H, W] in [-1, 1] as folder/000000.png ... (uint8, as FID tools read them)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(to_uint8(images)):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{index:06d}.png")


def save_grid(images: Tensor, nrow: int, path: Path, upscale: bool = True) -> Path:
    """[N, 3, r, r] in [-1, 1] -> one PNG grid of `nrow` images per row; `upscale`: small images
    enlarged (nearest) to >= 64 px so that a sheet is readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    side = images.shape[-1]
    size = side * max(1, 64 // side) if upscale else None
    save_image(images_to_grid(images, nrow, size=size), path)
    return path


def frames_to_pil(frames: Tensor) -> list:
    """[T, N, 3, r, r] in [-1, 1] -> T PIL images, each one row of the N images."""
    from PIL import Image

    grids = [images_to_grid(frame, nrow=frame.shape[0], size=max(64, frame.shape[-1]))
             for frame in frames]
    return [Image.fromarray(g.mul(255).round().byte().permute(1, 2, 0).numpy()) for g in grids]


def write_gif(frames: Tensor, path: Path, fps: float = 8.0) -> Path:
    """Animated GIF of T frames (a ping-pong loop would double them: it is not added)."""
    images = frames_to_pil(frames)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


def write_mp4(frames: Tensor, path: Path, fps: float = 8.0) -> Path | None:
    """MP4 through imageio-ffmpeg if installed, else None (the caller says it is skipped)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    import numpy as np

    images = [np.asarray(im.convert("RGB")) for im in frames_to_pil(frames)]
    h, w = (s - s % 16 for s in images[0].shape[:2])  # codec-friendly sizes
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, macro_block_size=16)
    writer.send(None)
    for image in images:
        writer.send(np.ascontiguousarray(image[:h, :w]))
    writer.close()
    return path


# ----------------------------------------------------------------------------- nearest
def pixel_features(images: Tensor) -> Tensor:
    """uint8 or [-1, 1] float [N, 3, R, R] -> [N, 3*16*16]: area-downscaled pixels in [-1, 1]."""
    x = to_float(images) if images.dtype == torch.uint8 else images.float()
    return resize(x, min(PIXEL_SIDE, x.shape[-1]), "area").flatten(1)


def shapes_feature_fn(data_target: str | None) -> Callable[[Tensor], Tensor] | None:
    """The shapes-feature extractor (uint8 [N, 3, R, R] -> [N, 128], no grad) for a run trained on
    the shapes data (`data_target`: its data config's `_target_`), else None."""
    from ganlab.metrics.shapes_features import ShapesFeatures

    if data_target != ShapesFeatures.data_target:
        return None
    extractor = ShapesFeatures().eval()
    return torch.no_grad()(extractor)


def build_train_set(config: dict, data_root: str | None):
    """The run's training split (Dataset of uint8 [3, R, R]) from its saved data config."""
    from hydra.utils import instantiate

    data = dict(config.get("data") or {})
    if not data.get("_target_"):
        raise ConfigError("--nearest needs the training data, but the checkpoint holds no data "
                          "config; pass a checkpoint written by ganlab.run")
    if data_root:
        data["root"] = data_root
    try:
        datamodule = instantiate(data)
        dataset = datamodule.build_split("train")
    except Exception as error:  # noqa: BLE001 - a missing folder, archive, LMDB...
        root = data.get("root", "(none)")
        raise ConfigError(
            f"--nearest cannot build the training data (data.root={root}): {error}. Point "
            "--data-root at the run's dataset folder"
        ) from None
    if len(dataset) == 0:
        raise ConfigError(f"--nearest: the training data at data.root={data.get('root')} is empty")
    return dataset


@torch.no_grad()
def nearest_neighbours(
    queries: Tensor, dataset, k: int, embed: Callable[[Tensor], Tensor], batch_size: int = 512
) -> tuple[Tensor, Tensor]:
    """Indices and distances [Q, k] of the k training images nearest each query.

    queries: uint8 [Q, 3, R, R]; dataset: indexable uint8 [3, R, R] images (searched in chunks);
    embed: uint8 images -> features [N, D] (Euclidean distance).
    """
    q = embed(queries).float()
    best_d = torch.full((len(q), 0), float("inf"))
    best_i = torch.zeros((len(q), 0), dtype=torch.long)
    for start in range(0, len(dataset), batch_size):
        idx = list(range(start, min(start + batch_size, len(dataset))))
        chunk = torch.stack([dataset[i] for i in idx])
        d = torch.cdist(q, embed(chunk).float())
        best_d = torch.cat([best_d, d], 1)
        best_i = torch.cat([best_i, torch.tensor(idx).expand(len(q), -1)], 1)
        best_d, order = best_d.topk(min(k, best_d.shape[1]), dim=1, largest=False)
        best_i = best_i.gather(1, order)
    return best_i, best_d


def nearest_sheet(
    fakes: Tensor, dataset, k: int, space: str, data_target: str | None = None
) -> tuple[Tensor, str]:
    """[Q * (k+1), 3, r, r] in [-1, 1]: each fake followed by its k nearest training images
    (`data_target`: the run's data class; the shapes features serve the shapes data only)."""
    embed, name = pixel_features, f"pixels downscaled to {PIXEL_SIDE} px"
    features = shapes_feature_fn(data_target) if space != "pixel" else None
    if space == "features" and features is None:
        raise ConfigError(f"--space features scores the shapes data only (this run trained on "
                          f"{data_target}); use --space pixel")
    if features is not None:
        embed, name = features, "the shapes-feature space"
    real_side = dataset[0].shape[-1]
    queries = to_uint8(resize(fakes, real_side, "bilinear")) if fakes.shape[-1] != real_side \
        else to_uint8(fakes)
    index, _ = nearest_neighbours(queries, dataset, k, embed)
    rows = [torch.cat([queries[i: i + 1], torch.stack([dataset[j] for j in index[i]])])
            for i in range(len(queries))]
    return to_float(torch.cat(rows)), name


# ----------------------------------------------------------------------------- CLI
def out_paths(out: Path, name: str) -> tuple[Path, Path]:
    """(folder, stem) of the explore outputs: PATH/name, or PATH's own stem if it is a .png."""
    if out.suffix == ".png":
        return out.parent, out.with_suffix("")
    return out, out / name


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ganlab.generate", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("checkpoint", help="a checkpoint (RUN/checkpoints/last.ckpt) or a run "
                        "folder (its best.ckpt, else last.ckpt)")
    parser.add_argument("--num", type=int, default=None, help="images (default 64); rows of "
                        "--interpolate (4) and --nearest (8); columns of --truncation-sweep (8)")
    parser.add_argument("--out", required=True, help="output folder (or .png file)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents")
    parser.add_argument("--grid", action="store_true", help="write one grid PNG instead of files")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    parser.add_argument("--raw", action="store_true", help="use the raw generator, not the EMA")
    parser.add_argument("--truncation", type=float, default=1.0, metavar="PSI",
                        help="scale latents towards the mean, psi in (0, 1] (1: none)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--truncation-sweep", action="store_true",
                      help=f"one grid: the same latents at psi {', '.join(map(str, SWEEP_PSI))}")
    mode.add_argument("--interpolate", type=int, metavar="N", help="N steps between latents")
    mode.add_argument("--nearest", type=int, metavar="K", help="K nearest training images")
    parser.add_argument("--lerp", action="store_true", help="--interpolate linearly (not slerp)")
    parser.add_argument("--fps", type=float, default=8.0, help="frames per second of GIF / MP4")
    parser.add_argument("--space", choices=("auto", "pixel", "features"), default="auto",
                        help="--nearest distance: auto = shapes features if available, else pixels")
    parser.add_argument("--data-root", help="--nearest: the training data folder, if it moved")
    parser.add_argument("--class", dest="class_name", metavar="NAME",
                        help="conditional checkpoints: draw this class (name or index)")
    parser.add_argument("--attributes", metavar="A=0|1,...",
                        help="conditional checkpoints: these attribute values, e.g. Smiling=1")
    mode.add_argument("--per-class", type=int, metavar="N",
                      help="conditional checkpoints: a row of N images per class, same latents")
    args = parser.parse_args(argv)
    if args.per_class is not None and args.per_class < 1:
        parser.error(f"--per-class={args.per_class} must be >= 1")
    if args.num is not None and args.num < 1:
        parser.error(f"--num={args.num} must be >= 1")
    if args.nearest is not None and args.nearest < 1:
        parser.error(f"--nearest={args.nearest} must be >= 1, e.g. --nearest 5")
    return args


def run(args: argparse.Namespace) -> list[Path]:
    """Do what the arguments ask; returns the files (or folder) written."""
    check_psi(args.truncation)
    if args.interpolate is not None and args.interpolate < 2:
        interpolation_latents(1, args.interpolate, 1, 0, True)  # raises the ConfigError
    generator, config = load_generator(resolve_checkpoint(args.checkpoint), ema=not args.raw)
    generator, labels = conditional(generator, config, args)
    out, psi, seed = Path(args.out), args.truncation, args.seed
    render_ = lambda z, p=psi: render(generator, z, p, args.batch_size, args.device)  # noqa: E731
    if args.truncation_sweep:
        z = draw_latents(args.num or 8, generator.z_dim, seed)
        images = torch.cat([render_(z, p) for p in SWEEP_PSI])
        folder, stem = out_paths(out, "truncation_sweep")
        return [save_grid(images, len(z), stem.with_suffix(".png"))]
    if args.per_class:
        return write_per_class(args, generator, labels, render_)
    if args.interpolate is not None:
        return write_interpolation(args, generator, render_)
    if args.nearest is not None:
        dataset = build_train_set(config, args.data_root)
        fakes = render_(draw_latents(args.num or 8, generator.z_dim, seed))
        data_target = (config.get("data") or {}).get("_target_")
        sheet, space = nearest_sheet(fakes, dataset, args.nearest, args.space, data_target)
        print(f"nearest neighbours in {space} among {len(dataset)} training images")
        folder, stem = out_paths(out, "nearest")
        return [save_grid(sheet, args.nearest + 1, stem.with_suffix(".png"))]
    images = render_(draw_latents(args.num or 64, generator.z_dim, seed))
    if args.grid:
        return [save_grid(images, max(1, int(len(images) ** 0.5)), out, upscale=False)]
    write_pngs(images, out)
    return [out]


def write_interpolation(args: argparse.Namespace, generator: nn.Module, render_) -> list[Path]:
    """interpolation.png (rows x N grid), .gif (N frames), .mp4 (if imageio-ffmpeg is here)."""
    rows, steps = args.num or 4, args.interpolate
    z = interpolation_latents(rows, steps, generator.z_dim, args.seed, spherical=not args.lerp)
    images = render_(z.flatten(0, 1))  # [rows * steps, 3, r, r], row-major
    folder, stem = out_paths(Path(args.out), "interpolation")
    written = [save_grid(images, steps, stem.with_suffix(".png"))]
    frames = images.unflatten(0, (rows, steps)).transpose(0, 1)  # [steps, rows, 3, r, r]
    written.append(write_gif(frames, stem.with_suffix(".gif"), args.fps))
    mp4 = write_mp4(frames, stem.with_suffix(".mp4"), args.fps)
    if mp4 is None:
        print("MP4 skipped: imageio-ffmpeg is not installed (pip install imageio-ffmpeg)")
    else:
        written.append(mp4)
    return written


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        written = run(args)
    except ConfigError as error:
        print(f"ganlab.generate: error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
