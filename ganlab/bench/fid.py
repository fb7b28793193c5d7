"""One FID evaluation timed, for `python -m ganlab.bench`: a random DCGAN generator against the
shapes dataset, first without cached real statistics, then with them.

Here, beside the bench, and not in ganlab.metrics: the metrics score images and know no model;
this timing needs one to make the fakes.
"""

from __future__ import annotations

import tempfile
from typing import Any

import torch
from torch import nn

from ganlab.data.shapes import ShapesDataModule
from ganlab.metrics.evaluator import FIDEvaluator
from ganlab.metrics.inception import (
    InceptionFeatures,
    WeightsUnavailableError,
    find_weights,
    random_inception,
)
from ganlab.models.dcgan import DCGAN
from ganlab.nets.dcgan import Discriminator, Generator
from ganlab.training.losses import NonSaturating


def inception_or_random(weights_path: str | None) -> tuple[nn.Module, str]:
    """The Inception extractor if its weights are found, else a random InceptionV3 of identical
    cost (timing only), with a word saying which."""
    try:
        return InceptionFeatures.from_file(find_weights(weights_path)), "inception"
    except WeightsUnavailableError:
        return InceptionFeatures(random_inception()), "random (timing only)"


def time_evaluation(
    resolution: int = 64,
    num_real: int = 256,
    num_fake: int | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    weights_path: str | None = None,
    extractor: nn.Module | None = None,
) -> dict[str, Any]:
    """Time one FID evaluation of a random DCGAN generator on the shapes dataset at `resolution`,
    first without cached real statistics (reals read and featurised), then with them (fakes
    only). Uses the Inception weights if found, else a random InceptionV3 of identical cost;
    `extractor` (uint8 [N, 3, r, r] -> [N, d]) replaces both (tests).

    Returns {'resolution', 'num_real', 'num_fake', 'device', 'weights', 'miss_s', 'hit_s',
    'speedup', 'fid_miss', 'fid_hit'}; for ganlab.bench.
    """
    datamodule = ShapesDataModule(
        resolution=resolution, num_images=1, num_val_images=num_real, eval_batch_size=batch_size
    )
    datamodule.setup("fit")
    module = DCGAN(
        Generator(resolution=resolution), Discriminator(resolution=resolution), NonSaturating()
    )
    module.to(device)
    if extractor is not None:
        weights = type(extractor).__qualname__
    else:
        extractor, weights = inception_or_random(weights_path)
    with tempfile.TemporaryDirectory() as tmp:
        evaluator = FIDEvaluator(
            num_real=num_real,
            num_fake=num_fake,
            batch_size=batch_size,
            feature_extractor=extractor,
            cache_dir=tmp,
        )
        evaluator.metrics.to(device)
        with torch.no_grad():  # warm-up (first-call allocations), not timed
            warm_up = torch.zeros(2, 3, resolution, resolution, dtype=torch.uint8, device=device)
            evaluator.metrics.extractor(warm_up)
        miss = evaluator.evaluate(module, datamodule)
        evaluator.memory.clear()  # the hit below reads the disk cache, as a new run would
        hit = evaluator.evaluate(module, datamodule)
    return {
        "resolution": resolution,
        "num_real": num_real,
        "num_fake": miss["num_fake"],
        "device": device,
        "weights": weights,
        "miss_s": miss["seconds"],
        "hit_s": hit["seconds"],
        "speedup": miss["seconds"] / hit["seconds"],
        "fid_miss": miss["fid"],
        "fid_hit": hit["fid"],
    }
