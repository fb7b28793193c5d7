#!/usr/bin/env bash
# The CPU tables of experiments/BENCHMARKS.md (issue 13), to be run ALONE on a quiet machine.
#   experiments/cpu_bench.sh            # all: about 55-70 minutes on 2 cores (the peers: 25-40)
#   experiments/cpu_bench.sh --dry-run  # print the commands only
# Writes experiments/bench_{reference,overhead,end_to_end,peers}.json; each command also prints its table.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
run() { echo "+ $*"; [ "${DRY_RUN:-0}" = 1 ] || "$@"; }
[ "${1:-}" = "--dry-run" ] && DRY_RUN=1
export PYTHONPATH=$PWD WANDB_MODE=offline
# 1. reference cases (DCGAN-64/64, SAGAN-64/32, PGGAN-32 every phase), 8 rounds: ~15 min
run "$PY" -m ganlab.bench --rounds 8 --json experiments/bench_reference.json
# 2. overhead-bound case: DCGAN 16 px, width 16, batch 16, default callbacks + logging;
#    3 windows of 200 steps per path and round, 4 rounds: ~2 min. Prints ms of overhead per step.
run "$PY" -m ganlab.bench --overhead --skip loader --skip fid --json experiments/bench_overhead.json
# 3. the whole run: python -m ganlab.run on 1,700 generated PNGs, DCGAN-32 batch 64, 12 kimg,
#    against the plain loop: steady-state ratio + startup: ~3 min
run "$PY" -m ganlab.bench --end-to-end --json experiments/bench_end_to_end.json
# 4. the peers' own code at their own architectures (heykeetae SAGAN-64 batch 64, pytorch_GAN_zoo
#    PGGAN 32 px mid-fade batch 16, paper widths) against ganlab fp32 and its fast path: ~25-40 min.
#    The peers live outside the project: PEERS_DIR/sagan, PEERS_DIR/pggan (experiments/BENCHMARKS.md).
PEERS_DIR=${PEERS_DIR:-/work/peers}
if [ -d "$PEERS_DIR/sagan" ] && [ -d "$PEERS_DIR/pggan" ]; then
  run "$PY" experiments/peers/bench_peers.py --sagan-repo "$PEERS_DIR/sagan" \
    --pggan-repo "$PEERS_DIR/pggan" --json experiments/bench_peers.json
else
  echo "skipped: the peers (set PEERS_DIR to the folder holding sagan/ and pggan/)"
fi
