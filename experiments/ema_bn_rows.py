"""Does the EMA generator need batch-norm statistics of its own? (issue 20 item 4)

For each checkpoint, the EMA G is scored twice with the shapes metric, on the same weights:
with the batch-norm statistics saved in the checkpoint (recomputed from its own forward passes,
`model.ema_bn_latents`) and with the raw G's running statistics copied in (what ganlab did
before). Prints a markdown table and writes JSON.

    python experiments/ema_bn_rows.py RUN_DIR_OR_CKPT ... [--num-fake 2000] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from torch import nn

from ganlab.cli import quality
from ganlab.training import scoring
from ganlab.training.checkpoints import load_generator


def batchnorm_buffers(net: nn.Module) -> dict[str, object]:
    """The running statistics of every batch norm of `net`, by buffer name."""
    norms = {name for name, m in net.named_modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    return {name: buffer for name, buffer in net.named_buffers()
            if name.rsplit(".", 1)[0] in norms}


def score_both(evaluator, checkpoint: Path) -> dict[str, float]:
    """fd_shapes / recall of the EMA G with its own and with the raw G's statistics."""
    ema, config = load_generator(checkpoint, ema=True)
    raw, _ = load_generator(checkpoint, ema=False)
    data = scoring.data_config(config, quality.REFERENCE)
    datamodule = scoring.reference_data(data, "val")
    own = scoring.score(evaluator, ema, config, data, datamodule, "val", "cpu")
    for name, buffer in batchnorm_buffers(ema).items():
        buffer.copy_(dict(raw.named_buffers())[name])
    copied = scoring.score(evaluator, ema, config, data, datamodule, "val", "cpu")
    return {"own_fd": float(own["fd_shapes"]), "own_recall": float(own["recall"]),
            "copied_fd": float(copied["fd_shapes"]), "copied_recall": float(copied["recall"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", help="checkpoints, or run dirs (their last.ckpt)")
    parser.add_argument("--num-fake", type=int, default=quality.NUM_FAKE)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    evaluator = quality.shapes_evaluator(args.num_fake, Path("outputs/ema_bn"))
    rows = []
    print("| checkpoint | EMA FD, own BN stats | EMA FD, G's BN stats | recall own / G's |")
    print("|---|---|---|---|")
    for path in map(Path, args.paths):
        checkpoint = path / "checkpoints" / "last.ckpt" if path.is_dir() else path
        row = {"checkpoint": str(checkpoint), **score_both(evaluator, checkpoint)}
        rows.append(row)
        print(f"| {checkpoint} | {row['own_fd']:.1f} | {row['copied_fd']:.1f} | "
              f"{row['own_recall']:.3f} / {row['copied_recall']:.3f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
