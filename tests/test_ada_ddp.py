"""ADA under DDP (issue 23 item 5; 2 CPU processes, gloo): the sign statistics behind r_t are
summed over ranks before p moves, and are not buffers that DDP broadcasts from rank 0 at every
forward. Both ranks end with the same p, equal to one process's p on the concatenated batches."""

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ganlab.augment import ADA

STEPS, BATCH = 12, 8
ADA_ARGS = dict(target=0.6, interval=4, speed_kimg=1.0, initial_p=0.5)  # p moves 0.064 / step


def real_signs(step: int, rank: int) -> torch.Tensor:
    """sign(D(real)) [BATCH] of rank `rank` at `step`: rank 0's D calls nearly every real real,
    rank 1's about half (a batch mean of +-1 over 8 images is exact in float32)."""
    gen = torch.Generator().manual_seed(100 * step + rank)
    share = 0.9 if rank == 0 else 0.45
    return torch.where(torch.rand(BATCH, generator=gen) < share, 1.0, -1.0)


class Model(nn.Module):
    """A D stand-in that holds the ADA module, as GANModule does, so DDP wraps both."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1)
        self.augment = ADA(**ADA_ARGS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.augment(x).mean((2, 3)))


def _worker(rank: int, world: int, tmp: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=world)
    torch.set_num_threads(1)
    torch.manual_seed(rank)
    model = Model()
    ddp = DistributedDataParallel(model, broadcast_buffers=True)  # DDP's default
    trace = []
    for step in range(STEPS):
        ddp(torch.rand(BATCH, 3, 8, 8)).sum().backward()  # a forward: buffers broadcast here
        model.augment.after_d_step(real_signs(step, rank).mean(), BATCH)
        trace.append([float(model.augment.p), float(model.augment.rt)])
    state = {key: float(value) for key, value in model.augment.get_extra_state().items()}
    Path(tmp, f"rank{rank}.json").write_text(json.dumps({"trace": trace, "state": state}))
    dist.destroy_process_group()


@pytest.mark.slow
def test_p_is_equal_on_both_ranks_and_to_one_process_on_the_whole_batch(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]  # p, r_t and the pending sums agree on every rank

    single = ADA(**ADA_ARGS)  # one process, both ranks' batches as one of 2 x BATCH images
    trace = []
    for step in range(STEPS):
        signs = torch.cat([real_signs(step, rank) for rank in range(2)])
        single.after_d_step(signs.mean(), 2 * BATCH)
        trace.append([float(single.p), float(single.rt)])
    assert ranks[0]["trace"] == trace
    # rank 0's batches alone (r_t 0.85 > 0.6) would raise p; both ranks' (r_t < 0.6) lower it
    rank0 = torch.stack([real_signs(step, 0) for step in range(STEPS)]).mean()
    assert rank0 > ADA_ARGS["target"] and trace[-1][0] == pytest.approx(0.5 - 3 * 0.064)
    assert ranks[0]["state"]["p"] == trace[-1][0] and ranks[0]["state"]["steps"] == 0
