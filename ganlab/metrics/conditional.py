"""Conditioning measured: does a conditional generator draw what it is asked for?

    val/cond_acc   share of fakes a classifier assigns to the label they were drawn with (class:
                   the argmax; attributes: each attribute's sign, averaged over attributes)
    val/real_acc   the same classifier's accuracy on real validation images (the ceiling);
                   per class as val/real_acc_<name>, and the fakes' as val/cond_acc_<name>
    val/fd_intra   Frechet distance between the fakes of a class and the real images of that
                   class in the classifier's feature space, averaged over classes (class labels
                   with a feature space only: the shapes network)

Classifiers: on `data=shapes` with class labels, the shipped shapes network's `kind` head (slot 0:
the image's one shape) and its 128-d features (ganlab.metrics.shapes_features); for other data,
`metric.classifier=FILE`, a TorchScript module mapping float images [N, 3, r, r] in [-1, 1] to
class (or attribute) logits [N, K]. Like the other metrics this knows no training loop: it takes
a sampling function and labelled real images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganlab.metrics.fid import frechet_distance
from ganlab.utils import ConfigError

Sampler = Callable[[Tensor, Tensor], Tensor]  # (z, labels) -> images [N, 3, r, r] in [-1, 1]


class ShapesKindClassifier(nn.Module):
    """The shapes network as a classifier of the kind of the image's (first) shape: uint8 or
    float images -> (kind logits [N, 4] over SHAPE_KINDS, features [N, 128])."""

    def __init__(self, weights_path: str | None = None) -> None:
        super().__init__()
        from ganlab.metrics.shapes_features import DISCRETE, NUM_SLOTS, load_net

        self.net = load_net() if weights_path is None else load_net(weights_path, sha256=None)
        self.net.requires_grad_(False).eval()
        self.slots, self.kinds = NUM_SLOTS, DISCRETE["kind"]

    def train(self, mode: bool = True) -> ShapesKindClassifier:
        return super().train(False)  # batch norm stays in eval mode

    @torch.no_grad()
    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        from ganlab.metrics.shapes_features import to_input

        if images.dtype != torch.uint8:
            images = images.float().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)
        features, heads = self.net(to_input(images))
        kind = heads["kind"].view(-1, self.kinds, self.slots)[:, : self.kinds - 1, 0]
        return kind, features  # slot 0 (canonical: the leftmost shape), without "absent"


class ScriptedClassifier(nn.Module):
    """`metric.classifier=FILE`: a TorchScript module, images [N, 3, r, r] in [-1, 1] -> logits
    [N, K]; no features (no val/fd_intra)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        if not Path(path).is_file():
            raise ConfigError(f"metric.classifier={path} does not exist (a TorchScript file)")
        try:
            self.net = torch.jit.load(str(path), map_location="cpu").eval()
        except (RuntimeError, ValueError) as error:
            raise ConfigError(
                f"metric.classifier={path} is not a TorchScript module ({error}); save one with "
                "torch.jit.save(torch.jit.script(model), path)"
            ) from None

    @torch.no_grad()
    def forward(self, images: Tensor) -> tuple[Tensor, None]:
        if images.dtype == torch.uint8:
            images = images.float() / 127.5 - 1
        return self.net(images), None


def predictions(logits: Tensor, multi_label: bool) -> Tensor:
    """Predicted labels [N, K] as 0/1: one-hot argmax, or each attribute's sign."""
    if multi_label:
        return (logits > 0).float()
    return F.one_hot(logits.argmax(1), logits.shape[1]).float()


def accuracy_per_row(predicted: Tensor, labels: Tensor, multi_label: bool) -> Tensor:
    """Per-image accuracy [N]: 1 if the class matches (attributes: share of them that match)."""
    if multi_label:
        return (predicted == labels).float().mean(1)
    return (predicted.argmax(1) == labels.argmax(1)).float()


def _stats(features: Tensor) -> tuple[Tensor, Tensor]:
    features = features.double()
    return features.mean(0), torch.cov(features.T)


@torch.no_grad()
def conditional_scores(
    sample: Sampler,
    z_dim: int,
    reals: Iterable[tuple[Tensor, Tensor]],
    classifier: nn.Module,
    names: list[str],
    multi_label: bool,
    num_per_class: int = 250,
    batch_size: int = 256,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """val/cond_acc, val/real_acc (and per class), val/fd_intra (see the module docstring).

    sample: (z [B, z_dim], labels [B, K]) -> images in [-1, 1]; reals: batches of (uint8 images
    [B, 3, r, r], labels [B, K]) of the validation split; classifier: images -> (logits [B, K],
    features [B, d] or None). Fakes: `num_per_class` per class (one-hot; attributes: each
    attribute alone on), latents from `seed`.
    """
    k = len(names)
    classifier = classifier.to(device)
    real_hits, real_counts = torch.zeros(k), torch.zeros(k)
    real_features: list[list[Tensor]] = [[] for _ in range(k)]
    for images, labels in reals:
        logits, features = classifier(images.to(device))
        labels = labels.float().cpu()
        hits = accuracy_per_row(predictions(logits.cpu(), multi_label), labels, multi_label)
        members = labels if multi_label else labels  # an image counts for every label it has
        real_hits += (members * hits[:, None]).sum(0)
        real_counts += members.sum(0)
        if features is not None and not multi_label:
            for c in range(k):
                real_features[c].append(features.cpu()[labels[:, c] > 0])
    rng = torch.Generator().manual_seed(seed)
    fake_acc, fds = torch.zeros(k), []
    for c in range(k):
        hits, feats = [], []
        for start in range(0, num_per_class, batch_size):
            count = min(batch_size, num_per_class - start)
            z = torch.randn(count, z_dim, generator=rng).to(device)
            labels = F.one_hot(torch.full((count,), c), k).float().to(device)
            logits, features = classifier(sample(z, labels))
            predicted = predictions(logits.cpu(), multi_label)
            if multi_label:  # the asked attribute, alone on
                hits.append(predicted[:, c])
            else:
                hits.append(accuracy_per_row(predicted, labels.cpu(), multi_label))
            if features is not None:
                feats.append(features.cpu())
        fake_acc[c] = torch.cat(hits).mean()
        reals_c = torch.cat(real_features[c]) if real_features[c] else None
        if feats and reals_c is not None and len(reals_c) > 1:
            fakes_c = torch.cat(feats)
            mu1, s1 = _stats(fakes_c)
            mu2, s2 = _stats(reals_c)
            fds.append(float(frechet_distance(mu1, s1, mu2, s2, len(fakes_c), len(reals_c))))
    real_acc = real_hits / real_counts.clamp_min(1)
    out = {"cond_acc": float(fake_acc.mean()), "real_acc": float(real_acc.mean())}
    for c, name in enumerate(names):
        out[f"cond_acc_{name}"] = float(fake_acc[c])
        out[f"real_acc_{name}"] = float(real_acc[c])
    if fds:
        out["fd_intra"] = sum(fds) / len(fds)
    return out
