#!/usr/bin/env bash
# GPU table (issue 13): DCGAN-64, SAGAN-64, PGGAN-64 final stage; float32 (TF32) and bf16-mixed;
# compile off (batch 64, 256) and on (batch 256); batch 64 and 256; ganlab vs plain, peak memory, achieved FLOP/s and the
# fraction of the card's peak (ganlab/bench/counters.py PEAK_TFLOPS). Budget: < 8 min on one
# H100/H200-class GPU (18 runs of ~10-45 s: 3 warm-up + 2 x 20 iterations, 2 rounds per case; a run over
# 120 s is cut and reported as FAILED).
#   experiments/gpu_bench.sh            # run (needs a CUDA device)
#   experiments/gpu_bench.sh --dry-run  # print the commands (what runs without a GPU)
# NOT RUN ON A GPU YET. torch.compile(mode="reduce-overhead") / CUDA graphs: not wired yet
# (model.compile uses the default mode); see experiments/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
DRY_RUN=0
[ "${1:-}" = "--dry-run" ] && DRY_RUN=1
if [ "$DRY_RUN" = 0 ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA device visible: printing the commands instead (--dry-run)"; DRY_RUN=1
fi
export PYTHONPATH=$PWD WANDB_MODE=offline
OUT=experiments/gpu_bench; mkdir -p "$OUT"
TIMING=(--warmup 3 --steps 20 --windows 2 --rounds 2 --skip loader --skip fid)
for spec in "dcgan 64" "sagan 64" "pggan 64 --no-stages"; do
  set -- $spec; model=$1; res=$2; shift 2
  for batch in 64 256; do
    for prec in 32 bf16-mixed; do
      comps=(""); [ "$batch" = 256 ] && comps+=("--compile")  # compile at 256 only: 8 min
      for comp in "${comps[@]}"; do
        name="$OUT/${model}${res}_b${batch}_${prec}${comp:+_compile}.json"
        cmd=("$PY" -m ganlab.bench --device cuda --model "$model" --resolution "$res" --batch "$batch"
             --precision "$prec" $comp "$@" "${TIMING[@]}" --json "$name" -- tf32=true)
        echo "+ ${cmd[*]}"
        [ "$DRY_RUN" = 1 ] || timeout 120 "${cmd[@]}" || echo "FAILED (or over 120 s): ${cmd[*]}"
      done
    done
  done
done
