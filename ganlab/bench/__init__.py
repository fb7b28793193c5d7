"""Training throughput of ganlab's real training path against a plain PyTorch loop.

    python -m ganlab.bench                      # DCGAN 64/64, SAGAN 64/32, PGGAN 32 px per stage
    python -m ganlab.bench --quick              # small sizes: about a minute on 2 CPU cores
    python -m ganlab.bench --model dcgan --resolution 64 --batch 64 --json bench.json
    python -m ganlab.bench --model sagan --device cuda --precision bf16-mixed --compile
    python -m ganlab.bench --model dcgan --device cuda --compile --compile-mode reduce-overhead
    python -m ganlab.bench --model pggan -- model.generator.width=128   # then Hydra overrides

Both paths of a case are built from the same composed config (conf/train.yaml, data=shapes):
- ganlab: `ganlab.run.build` and `Trainer.fit` with the GAN module, logging at the default
  interval, reals from the in-memory loader; sample grids, checkpoints, the progress bar and the
  metric are off (they run every few kimg, not per step);
- plain: a hand-written loop over the same G, D, loss object, Adam settings, batch size, n_critic,
  EMA update and PGGAN fade, reals indexed from the same images held on the device; no Lightning.
Each path runs `warmup` iterations, then `windows` timed windows of `steps` iterations (default:
the logging interval, so each window holds one logging step); paths alternate over `rounds`;
the figure is the median window. Also: peak memory in the timed windows (RSS on CPU,
`torch.cuda.max_memory_allocated` on GPU), FLOPs per training image (torch.utils.flop_counter,
one iteration: forward, backward, penalties), achieved FLOP/s, host syncs (`.item()` and the
like) per training step outside logging steps, and, where present, the loader benchmark
(`ganlab.data.bench`) and one FID evaluation (`ganlab.bench.fid.time_evaluation`).
"""

from ganlab.bench.cli import main

__all__ = ["main"]
