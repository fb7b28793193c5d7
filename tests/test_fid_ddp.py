"""FID under DDP (2 CPU processes, gloo): shares split over ranks, states summed, the same value
on every rank, the cache written once by rank 0 and reused without reading reals, no hang."""

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ganlab.metrics.cache import load_stats
from ganlab.metrics.evaluator import FIDEvaluator
from tests.fid_helpers import StubModule, TinyFeatures, shapes

OPTIONS = {"num_real": 41, "num_fake": 23, "batch_size": 8, "kid": True, "prdc": True}  # uneven


def tiny_features_error(features: TinyFeatures) -> float:
    """Bound on how far one TinyFeatures output (tanh(3 * pool(x) @ P), |x| <= 1, so |f| <= 1) can
    move with the float32 summation order: the 16-pixel pooling and the 48-term product round at
    most gamma_k = k u / (1 - k u) (k = 64 + 2 terms, u = 2**-24) of sum |P| in a column, and
    tanh(3 .) is 3-Lipschitz."""
    k, u = 66, torch.finfo(torch.float32).eps / 2
    gamma = k * u / (1 - k * u)
    return 3 * gamma * float(features.projection.abs().sum(0).max())


def _worker(rank: int, world: int, tmp: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=world)
    torch.set_num_threads(1)
    datamodule = shapes(num_val=48)
    reads = []
    read_batch = datamodule.val_set.__getitems__
    datamodule.val_set.__getitems__ = lambda indices: reads.extend(indices) or read_batch(indices)
    module = StubModule(datamodule)
    evaluators = [
        FIDEvaluator(feature_extractor=TinyFeatures(), cache_dir=tmp, **OPTIONS) for _ in range(2)
    ]
    first = evaluators[0].evaluate(module, datamodule, nimg=1000)
    reads_first = sorted(reads)
    second = evaluators[1].evaluate(module, datamodule, nimg=1000)  # a new run: the disk cache
    result = {
        "first": first,
        "second": second,
        "reads_first": reads_first,
        "reads_second": len(reads) - len(reads_first),
    }
    Path(tmp, f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_share_the_work_and_agree(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for key in ("fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage"):
        values = {r[when][key] for r in ranks for when in ("first", "second")}
        assert len(values) == 1, (key, values)  # every rank, miss and hit: one value
    assert ranks[0]["first"]["num_real"] == 41 and ranks[0]["first"]["num_fake"] == 23
    assert ranks[0]["reads_first"] == list(range(0, 41, 2))  # each rank its share of reals
    assert ranks[1]["reads_first"] == list(range(1, 41, 2))
    assert ranks[0]["reads_second"] == ranks[1]["reads_second"] == 0  # cache hit: no real read
    (entry,) = list(tmp_path.glob("*.npz"))

    # the entry (written by rank 0 alone) holds all 41 reals: as one process computes them
    datamodule = shapes(num_val=48)
    single = FIDEvaluator(feature_extractor=TinyFeatures(), **OPTIONS)
    for images in single.real_batches(datamodule, 41, 0, 1, torch.device("cpu")):
        single.metrics.update(images, real=True)
    expected, cached = single.metrics.stats(real=True), load_stats(entry)
    assert cached.num == expected.num == 41
    # float64 sums of float32 features; each feature may differ by `error` between the ranks'
    # batches and one process's (float32 kernels sum in an order that depends on the CPU and
    # the batch): a sum of n features by n * error, of n products by n * error * (2 + error)
    error = tiny_features_error(TinyFeatures())
    torch.testing.assert_close(cached.features_sum, expected.features_sum,
                               rtol=0, atol=41 * error)
    torch.testing.assert_close(cached.features_cov_sum, expected.features_cov_sum,
                               rtol=0, atol=41 * error * (2 + error))
    assert cached.features.shape == (41, TinyFeatures.num_features)
