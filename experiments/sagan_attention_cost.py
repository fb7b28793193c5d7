"""SAGAN's G and D forward + backward, the fused attention kernel against the old SDPA call, in
process CPU seconds per step (robust to other load on the machine), one thread; issue 20 item 6.

    python experiments/sagan_attention_cost.py
"""

import time

import torch

from ganlab.nets.sagan import Discriminator, Generator

CASES = ((32, 16, 32), (64, 32, 32))  # (image side px, batch, width): the bench's SAGAN cases


def cpu_seconds_per_step(side: int, batch: int, width: int, kernel: str, steps: int = 3) -> float:
    """Process CPU time of one G + D forward and backward, attention at the 32x32 map."""
    torch.manual_seed(0)
    generator = Generator(128, side, width, attention=[32], attention_kernel=kernel)
    discriminator = Discriminator(side, width, attention=[32], attention_kernel=kernel)

    def step() -> None:
        discriminator(generator(torch.randn(batch, 128))).mean().backward()

    step()  # warm-up
    start = time.process_time()
    for _ in range(steps):
        step()
    return (time.process_time() - start) / steps


def main() -> None:
    torch.set_num_threads(1)
    for side, batch, width in CASES:
        best = {k: min(cpu_seconds_per_step(side, batch, width, k) for _ in range(2))
                for k in ("fused", "sdpa")}
        print(f"SAGAN-{side} batch {batch}: G+D fwd+bwd CPU s/step fused {best['fused']:.3f} "
              f"sdpa {best['sdpa']:.3f} ratio {best['sdpa'] / best['fused']:.2f}", flush=True)


if __name__ == "__main__":
    main()
