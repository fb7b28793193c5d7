"""The InceptionV3 feature extractor of the published FID protocol, and where its weights come from.

The network is torch-fidelity's `FeatureExtractorInceptionV3` (the TensorFlow FID graph ported to
PyTorch): uint8 images of any size are resized to 299x299 with TensorFlow-1-compatible bilinear
interpolation (no antialiasing) and mapped to the 2048-d pool features and the 1008 unbiased
logits. This is exactly what torchmetrics' `FrechetInceptionDistance(antialias=False)` runs
(its `NoTrainInceptionV3._torch_fidelity_forward` with `use_antialias=False` calls the same
`interpolate_bilinear_2d_like_tensorflow1x`); torchmetrics' default `antialias=True` does not
match published numbers.

Weights never download implicitly. `find_weights` looks at `metric.weights_path`, then at the
torch hub cache (`$TORCH_HOME/hub/checkpoints/`, where torch-fidelity itself stores them); only
`metric.download=true` fetches them, with a socket timeout.
"""

from __future__ import annotations

import hashlib
import io
import os
import urllib.request
from pathlib import Path

import torch
from torch import Tensor, nn
from torch_fidelity.feature_extractor_inceptionv3 import (
    URL_INCEPTION_V3,
    FeatureExtractorInceptionV3,
)

from ganlab.logs import get_logger

log = get_logger(__name__)

WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = URL_INCEPTION_V3
FEATURES = ("2048", "logits_unbiased")  # pool features (FID, KID) and logits (IS), one forward
EXTRACTOR_NAME = "inception-v3-compat"


class WeightsUnavailableError(RuntimeError):
    """The Inception weights could not be found or loaded; the message says how to fix it."""


def hub_weights_path() -> Path:
    """Where torch-fidelity keeps the weights: $TORCH_HOME/hub/checkpoints/WEIGHTS_FILE."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def weights_help(reason: str) -> str:
    """The full 'no weights' message: what is missing, where to get it, where to put it."""
    return (
        f"{reason}. FID needs torch-fidelity's InceptionV3 weights {WEIGHTS_FILE} "
        f"(download: {WEIGHTS_URL}). Put the file in {hub_weights_path().parent}/ (the torch hub "
        "cache, $TORCH_HOME/hub/checkpoints), or pass its path (training: metric.weights_path="
        "FILE; ganlab.fid: --weights FILE), or let training fetch it once with "
        "metric.download=true. To train without evaluation, use metric=none "
        "(metric.required=true turns this warning into an error)."
    )


def download_weights(dest: Path, timeout: float) -> Path:
    """Fetch WEIGHTS_URL into `dest` (atomically); each socket operation times out after
    `timeout` seconds. Raises WeightsUnavailableError on any failure."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.part")
    log.info("downloading %s to %s (timeout %.0f s)", WEIGHTS_URL, dest, timeout)
    try:
        with urllib.request.urlopen(WEIGHTS_URL, timeout=timeout) as response, open(tmp, "wb") as f:
            for block in iter(lambda: response.read(1 << 20), b""):
                f.write(block)
        os.replace(tmp, dest)
    except Exception as error:  # noqa: BLE001 - any network or disk error means "no weights"
        tmp.unlink(missing_ok=True)
        raise WeightsUnavailableError(
            weights_help(f"downloading {WEIGHTS_URL} failed ({error})")
        ) from None
    return dest


def find_weights(
    weights_path: str | None = None, download: bool = False, timeout: float = 30.0
) -> Path:
    """The weights file to load: `weights_path` if given (it must exist), else the torch hub
    cache; if neither exists and `download`, fetch into the hub cache. Never touches the network
    unless `download`. Raises WeightsUnavailableError with the full help message."""
    if weights_path:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(
                weights_help(f"the weights file {weights_path} does not exist")
            )
        return path
    path = hub_weights_path()
    if path.is_file():
        return path
    if download:
        return download_weights(path, timeout)
    raise WeightsUnavailableError(weights_help(f"{WEIGHTS_FILE} is not in {path.parent}"))


class _RandomInception(FeatureExtractorInceptionV3):
    """FeatureExtractorInceptionV3 that skips loading when handed an empty state dict."""

    def load_state_dict(self, state_dict, *args, **kwargs):  # type: ignore[override]
        if state_dict:
            return super().load_state_dict(state_dict, *args, **kwargs)
        return None


def random_inception(features: tuple[str, ...] = FEATURES) -> FeatureExtractorInceptionV3:
    """torch-fidelity's InceptionV3 with randomly initialised weights: the exact keys and shapes
    of the real weights file, without reading or downloading it (for tests and timing only)."""
    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    return _RandomInception(EXTRACTOR_NAME, list(features), feature_extractor_weights_path=empty)


class InceptionFeatures(nn.Module):
    """uint8 images [N, 3, H, W] -> (pool features [N, 2048], unbiased logits [N, 1008]), float32.

    One torch-fidelity InceptionV3 (always in eval mode), shared by FID, KID and IS.
    """

    num_features = 2048

    def __init__(self, net: FeatureExtractorInceptionV3) -> None:
        super().__init__()
        if tuple(net.features_list) != FEATURES:
            raise ValueError(f"expected features {FEATURES}, got {net.features_list}")
        self.net = net.eval().requires_grad_(False)

    @classmethod
    def from_file(cls, path: str | Path) -> InceptionFeatures:
        """Load the weights file (strictly: every key and shape must match) or raise
        WeightsUnavailableError saying why."""
        try:
            net = FeatureExtractorInceptionV3(
                EXTRACTOR_NAME, list(FEATURES), feature_extractor_weights_path=str(path)
            )
        except Exception as error:  # noqa: BLE001 - unpickling or key/shape mismatch
            detail = " ".join(str(error).split())
            detail = detail if len(detail) < 300 else f"{detail[:300]} ..."
            raise WeightsUnavailableError(
                weights_help(f"{path} cannot be loaded ({detail})")
            ) from None
        return cls(net)

    def train(self, mode: bool = True) -> InceptionFeatures:
        return super().train(False)  # batch norm stays in inference mode

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        pool, logits = self.net(images)
        return pool, logits


def file_digest(path: str | Path) -> str:
    """sha256 (first 16 hex digits) of a file's contents."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def module_digest(module: nn.Module) -> str:
    """sha256 (16 hex digits) of a module's class and state dict (a custom extractor's identity)."""
    digest = hashlib.sha256(f"{type(module).__module__}.{type(module).__qualname__}".encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
