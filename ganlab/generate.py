"""Write images from a checkpoint's EMA generator.

    python -m ganlab.generate CKPT --num N --out PATH [--seed S] [--grid] [--device cpu|cuda]

Without --grid, PATH is a folder receiving N PNG files; with --grid, PATH is one PNG grid.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torchvision.utils import save_image

from ganlab.callbacks.samples import images_to_grid
from ganlab.checkpoints import load_generator
from ganlab.data.base import to_uint8
from ganlab.utils import ConfigError


@torch.no_grad()
def generate(
    generator: torch.nn.Module, num: int, seed: int, batch_size: int, device: str
) -> torch.Tensor:
    """num images [num, 3, R, R] in [-1, 1] (on the CPU), latents drawn from `seed`."""
    generator = generator.to(device)
    rng = torch.Generator().manual_seed(seed)
    chunks = []
    for start in range(0, num, batch_size):
        z = torch.randn(min(batch_size, num - start), generator.z_dim, generator=rng)
        chunks.append(generator(z.to(device)).float().cpu())
    return torch.cat(chunks)


def write_pngs(images: torch.Tensor, folder: Path) -> None:
    """Save [N, 3, H, W] in [-1, 1] as folder/000000.png ... (uint8, as FID tools read them)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(to_uint8(images)):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{index:06d}.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ganlab.generate", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="a ganlab checkpoint, e.g. RUN/checkpoints/last.ckpt")
    parser.add_argument("--num", type=int, default=64, help="number of images")
    parser.add_argument("--out", required=True, help="output folder (or .png file with --grid)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents")
    parser.add_argument("--grid", action="store_true", help="write one grid PNG instead of files")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    parser.add_argument("--raw", action="store_true", help="use the raw generator, not the EMA")
    args = parser.parse_args(argv)
    if args.num < 1:
        parser.error("--num must be >= 1")
    try:
        generator, _ = load_generator(args.checkpoint, ema=not args.raw)
    except ConfigError as error:
        print(f"ganlab.generate: error: {error}", file=sys.stderr)
        return 2
    images = generate(generator, args.num, args.seed, args.batch_size, args.device)
    out = Path(args.out)
    if args.grid:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_image(images_to_grid(images, nrow=max(1, int(args.num**0.5))), out)
    else:
        write_pngs(images, out)
    print(f"wrote {args.num} images to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
