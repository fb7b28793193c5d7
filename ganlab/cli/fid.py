"""FID between two image folders, or a folder and a .npz of statistics.

    python -m ganlab.fid A B [--weights FILE] [--batch-size N] [--device cpu|cuda] [--num N]

Same protocol and code path as FID during training (ganlab.metrics): torch-fidelity's
InceptionV3, TF-compatible resize, uint8 images. A .npz holds `mu` and `sigma` (pytorch-fid,
torch-fidelity) or is an entry of ganlab's real-statistics cache (metric.cache_dir). Score samples
written by `python -m ganlab.generate CKPT --num 10000 --out DIR` against a dataset folder or a
cache entry. Weights are never downloaded: without --weights they must be in the torch hub cache.
"""

from __future__ import annotations

import argparse
import sys

import torch

from ganlab.metrics.fid import score_folders
from ganlab.metrics.inception import WeightsUnavailableError
from ganlab.utils import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ganlab.fid", description=__doc__.split("\n")[0])
    parser.add_argument("input1", help="folder of images (png/jpg/jpeg) or .npz of statistics")
    parser.add_argument("input2", help="folder of images or .npz of statistics")
    parser.add_argument("--weights", help="InceptionV3 weights file (default: torch hub cache)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per Inception forward")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--num", type=int, help="use the first N images of each folder (sorted)")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or (args.num is not None and args.num < 2):
        parser.error("--batch-size must be >= 1 and --num >= 2")
    try:
        fid = score_folders(
            args.input1, args.input2, args.weights, args.batch_size, args.device, args.num
        )
    except (ConfigError, WeightsUnavailableError) as error:
        print(f"ganlab.fid: error: {error}", file=sys.stderr)
        return 2
    print(f"{fid:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
