"""An offline feature space for the embedded `shapes` data: a small CNN trained to predict the
parameters each image was drawn from (`render_shapes(..., return_labels=True)`); its penultimate
layer (128 dimensions) is the feature, as Inception's pool layer is for FID.

    python -m ganlab.metrics.shapes_features --train   # retrain (deterministic, 1 thread)
    python -m ganlab.metrics.shapes_features --eval    # held-out accuracy / R^2 of the shipped net

The weights ship in the package (weights/shapes32.pt, checked against WEIGHTS_SHA256 at load);
`--train` rewrites both and records the held-out figures in weights/shapes32.json.

Inputs of any side are scored at 32 px, the side the net was trained at: larger images are
area-averaged down (for integer factors the mean of each k x k block, which is the renderer's
own box filter: a 64 px shapes image area-resized to 32 px is what the renderer draws at 32 px
with finer supersampling), smaller ones (PGGAN stages at 4-16 px) bilinearly upsampled. The
evaluator resizes reals and fakes of a stage alike, so both sides of a comparison match, but
below 32 px the net sees blurrier images than it was trained on and the distances of different
stages are not comparable with each other.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganlab.data.shapes import ABSENT, NUM_SLOTS, PALETTE, SHAPE_KINDS, render_shapes
from ganlab.utils import ConfigError

RESOLUTION = 32  # px, the side the net sees
NUM_FEATURES = 128  # width of the penultimate layer, the feature
WEIGHTS_PATH = Path(__file__).with_name("weights") / "shapes32.pt"
WEIGHTS_SHA256 = "0b064b0c0e65122f44f9dd1e9cb99702930622cf1edf787e877fdcc6d556e151"
RETRAIN = "python -m ganlab.metrics.shapes_features --train"
TRAIN_SEED, HELD_OUT_SEED = 1_000_003, 1_000_004  # render seeds (the datamodule uses 2*seed(+1))
# discrete heads: name -> classes; continuous heads: name -> values per image
DISCRETE = {"num_shapes": 2, "kind": len(SHAPE_KINDS) + 1, "palette": len(PALETTE)}
CONTINUOUS = {
    "colour": NUM_SLOTS * 3,
    "centre": NUM_SLOTS * 2,
    "scale": NUM_SLOTS,
    "rotation": NUM_SLOTS * 2,
    "background": 6,
    "gradient": 2,
}
SLOTTED = {"kind": ABSENT, "palette": -1}  # discrete per-slot labels and their "empty" value


# ----------------------------------------------------------------------------- targets
def canonical_order(labels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Labels with the two slots of each image sorted by centre x (empty slot last), so that
    "the first shape" is well defined from the image (draw order often is not)."""
    x = np.nan_to_num(labels["centre"][:, :, 0], nan=np.inf)  # [N, slots]
    order = np.argsort(x, axis=1, kind="stable")
    out = dict(labels)
    for name, value in labels.items():
        if value.ndim >= 2 and value.shape[1] == NUM_SLOTS and name != "background":
            index = order.reshape(order.shape + (1,) * (value.ndim - 2))
            out[name] = np.take_along_axis(value, index, axis=1)
    return out


def targets(labels: dict[str, np.ndarray]) -> dict[str, Tensor]:
    """Training targets: discrete int64 [N] / [N, slots] (-1: ignore), continuous float [N, c]
    (NaN: undefined, not scored)."""
    labels = canonical_order(labels)
    out = {"num_shapes": torch.from_numpy(labels["num_shapes"] - 1)}
    out |= {name: torch.from_numpy(labels[name]) for name in SLOTTED}
    for name in CONTINUOUS:
        out[name] = torch.from_numpy(labels[name].reshape(len(labels[name]), -1))
    return out


# ----------------------------------------------------------------------------- the network
def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


class ShapesNet(nn.Module):
    """The CNN: float images [N, 3, 32, 32] in [-1, 1] -> (features [N, 128] >= 0, {head:
    [N, outputs]}). Continuous heads predict standardised values (see `mean`, `std`)."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            _conv(3, 32, 1),  # 32 px
            _conv(32, 64, 2),  # 16
            _conv(64, 64, 2),  # 8
            _conv(64, 128, 2),  # 4
            nn.Flatten(),
            nn.Linear(128 * 4 * 4, NUM_FEATURES),
            nn.ReLU(),
        )
        outputs = {"num_shapes": 2, "kind": NUM_SLOTS * DISCRETE["kind"]}
        outputs |= {"palette": NUM_SLOTS * DISCRETE["palette"], **CONTINUOUS}
        self.heads = nn.ModuleDict({n: nn.Linear(NUM_FEATURES, k) for n, k in outputs.items()})
        width = sum(CONTINUOUS.values())
        self.register_buffer("mean", torch.zeros(width))  # continuous targets' mean and std
        self.register_buffer("std", torch.ones(width))

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        features = self.trunk(x)
        return features, {name: head(features) for name, head in self.heads.items()}


def to_input(images: Tensor) -> Tensor:
    """uint8 [N, 3, r, r] -> float [N, 3, 32, 32] in [-1, 1] (area down, bilinear up)."""
    x = images.float() / 127.5 - 1
    if x.shape[-1] > RESOLUTION:
        x = F.interpolate(x, size=(RESOLUTION, RESOLUTION), mode="area")
    elif x.shape[-1] < RESOLUTION:
        x = F.interpolate(x, size=(RESOLUTION, RESOLUTION), mode="bilinear", align_corners=False)
    return x


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_net(path: str | Path = WEIGHTS_PATH, sha256: str | None = WEIGHTS_SHA256) -> ShapesNet:
    """The trained net from `path`, checked against `sha256` (None: unchecked).

    Raises ConfigError naming the file, both hashes and the command that retrains it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"the shapes feature weights {path} are missing; retrain: {RETRAIN}")
    found = file_sha256(path)
    if sha256 is not None and found != sha256:
        raise ConfigError(
            f"the shapes feature weights {path} have SHA-256 {found}, expected {sha256} "
            f"(ganlab.metrics.shapes_features.WEIGHTS_SHA256); restore the file or retrain: "
            f"{RETRAIN}"
        )
    net = ShapesNet()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval()


class ShapesFeatures(nn.Module):
    """`metric=shapes`' feature extractor: uint8 images [N, 3, r, r] -> float [N, 128].

    Any side r is resized to 32 px first (see the module docstring). Only meaningful for images
    of the `shapes` dataset (`data_target`).

    Args:
        weights_path: the weights file (None: the shipped one, checked by hash).
    """

    num_features = NUM_FEATURES
    data_target = "ganlab.data.shapes.ShapesDataModule"
    resolution = RESOLUTION  # px: ganlab.evaluate refuses checkpoints of another final side

    def __init__(self, weights_path: str | None = None) -> None:
        super().__init__()
        if weights_path is None:
            self.net = load_net()
        else:
            self.net = load_net(weights_path, sha256=None)
        self.net.requires_grad_(False)

    def train(self, mode: bool = True) -> ShapesFeatures:
        return super().train(False)  # BatchNorm stays in eval mode

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        return self.net(to_input(images))[0]


# ----------------------------------------------------------------------------- training
def _loss(outputs: dict[str, Tensor], target: dict[str, Tensor], net: ShapesNet) -> Tensor:
    """Sum of the heads' cross-entropies and the masked MSE of the standardised continuous
    targets."""
    loss = F.cross_entropy(outputs["num_shapes"], target["num_shapes"])
    for name, empty in SLOTTED.items():
        logits = outputs[name].view(len(outputs[name]), DISCRETE[name], NUM_SLOTS)
        ignore = -100 if empty >= 0 else empty
        loss = loss + F.cross_entropy(logits, target[name], ignore_index=ignore)
    pred = torch.cat([outputs[name] for name in CONTINUOUS], 1)
    wanted = (torch.cat([target[name] for name in CONTINUOUS], 1) - net.mean) / net.std
    valid = ~wanted.isnan()
    return loss + (pred - wanted.nan_to_num()).square().mul(valid).sum() / valid.sum()


def _batches(num: int, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    return list(torch.randperm(num, generator=generator).split(batch_size))


def train_net(
    num_images: int = 32000, epochs: int = 6, batch_size: int = 128, lr: float = 2e-3
) -> ShapesNet:
    """Train from scratch, deterministically (fixed render and torch seeds)."""
    torch.manual_seed(0)
    images, labels = render_shapes(num_images, RESOLUTION, TRAIN_SEED, return_labels=True)
    x, target = to_input(torch.from_numpy(images)), targets(labels)
    net = ShapesNet()
    continuous = torch.cat([target[name] for name in CONTINUOUS], 1)
    net.mean.copy_(continuous.nanmean(0))
    net.std.copy_((continuous - net.mean).square().nanmean(0).sqrt().clamp_min(1e-3))
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * math.ceil(num_images / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    order = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        start, total = time.perf_counter(), torch.zeros(())
        net.train()
        for index in _batches(num_images, batch_size, order):
            # random horizontal flips would change the labels (x, rotation): none here
            _, outputs = net(x[index])
            loss = _loss(outputs, {k: v[index] for k, v in target.items()}, net)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.detach() * len(index)
        print(
            f"epoch {epoch + 1}/{epochs}: loss {float(total) / num_images:.4f} "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    return net.eval()


@torch.no_grad()
def held_out_scores(net: ShapesNet, num_images: int = 4000) -> dict[str, float]:
    """Accuracy of each discrete label (kind over both slots incl. empty ones, palette over
    drawn shapes) and R^2 of each continuous one (over defined values) on images rendered from
    HELD_OUT_SEED."""
    images, labels = render_shapes(num_images, RESOLUTION, HELD_OUT_SEED, return_labels=True)
    target = targets(labels)
    outputs = [net.eval()(to_input(torch.from_numpy(c)))[1] for c in np.split(images, 8)]
    outputs = {name: torch.cat([o[name] for o in outputs]) for name in outputs[0]}
    scores = {"acc/num_shapes": _accuracy(outputs["num_shapes"], target["num_shapes"])}
    for name in SLOTTED:
        logits = outputs[name].view(num_images, DISCRETE[name], NUM_SLOTS)
        scores[f"acc/{name}"] = _accuracy(logits, target[name])
    pred = torch.cat([outputs[name] for name in CONTINUOUS], 1) * net.std + net.mean
    start = 0
    for name, width in CONTINUOUS.items():
        truth, guess = target[name], pred[:, start : start + width]
        start += width
        valid = ~truth.isnan()
        truth, guess = truth[valid].double(), guess[valid].double()
        residual = (truth - guess).square().sum()
        scores[f"r2/{name}"] = float(1 - residual / (truth - truth.mean()).square().sum())
    return scores


def _accuracy(logits: Tensor, target: Tensor) -> float:
    valid = target >= 0
    return float((logits.argmax(1) == target)[valid].float().mean())


def save(net: ShapesNet, scores: dict[str, float], path: Path = WEIGHTS_PATH) -> str:
    """Write the weights, their hash into this module's source, and the scores beside them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    digest = file_sha256(path)
    source = Path(__file__)
    text = re.sub(
        r'WEIGHTS_SHA256 = "[0-9a-f]{64}"', f'WEIGHTS_SHA256 = "{digest}"', source.read_text()
    )
    source.write_text(text)
    record = {"sha256": digest, "held_out_seed": HELD_OUT_SEED, "scores": scores}
    path.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    return digest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", action="store_true", help="retrain and write the weights")
    parser.add_argument("--eval", action="store_true", help="score the shipped weights")
    parser.add_argument("--num-images", type=int, default=32000, help="training images")
    parser.add_argument("--epochs", type=int, default=6, help="passes over them")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    if not (args.train or args.eval):
        parser.error("pass --train or --eval")
    torch.set_num_threads(args.threads)
    net = train_net(args.num_images, args.epochs) if args.train else load_net()
    scores = held_out_scores(net)
    for name, value in scores.items():
        print(f"{name:16s} {value:.4f}")
    if args.train:
        print(f"wrote {WEIGHTS_PATH} (sha256 {save(net, scores)})")


if __name__ == "__main__":
    main()
