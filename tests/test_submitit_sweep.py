"""Sweeps through submitit: a `-m` sweep runs end to end through submitit's local executor (every
job trains, writes its checkpoint and metrics and returns the optimized metric), and through
`hydra/launcher=slurm` with stand-in sbatch / srun / sacct commands on PATH (the task function
and config pickled, the sbatch script written and run by the stand-ins), for `python -m
ganlab.run` and the `ganlab-train` console script. (submitit pickles the Hydra task function:
it lives in the importable ganlab.cli.train, so it pickles by reference, not with __main__'s
globals, which once held a module object that cannot be pickled.)"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
JOBS = ["model.lr_g=1e-3,2e-3", "debug=tiny", "trainer.accelerator=cpu", "kimg=0.032",
        "metric=shapes", "metric.num_real=32", "metric.batch_size=32",
        "extras.print_config=false", "callbacks.progress=null"]

SBATCH = """#!/bin/bash
# stand-in sbatch: starts every task of the array in the background with its SLURM variables,
# marks it done in this folder when it ends, and reports the job id as sbatch does
here=$(dirname "$0"); script="$1"
array=$(grep -o -- '--array=[0-9]*-[0-9]*' "$script" | sed 's/--array=//')
last=${array#*-}
rm -f "$here"/1234_*.done  # a new submission: no task of an earlier sweep counts as done
for task in $(seq 0 "${last:-0}"); do
  (SLURM_JOB_ID=1234 SLURM_ARRAY_JOB_ID=1234 SLURM_ARRAY_TASK_ID=$task SLURM_NTASKS=1 \\
   SLURM_PROCID=0 SLURM_LOCALID=0 SLURM_NODEID=0 SLURM_JOB_NUM_NODES=1 SLURM_JOB_NAME=run \\
   SLURM_JOB_NODELIST=localhost SLURM_NODELIST=localhost SLURM_NTASKS_PER_NODE=1 \\
   bash "$script"; touch "$here/1234_$task.done") </dev/null >/dev/null 2>&1 &
done
cp "$script" "$here/submitted.sh"
echo "Submitted batch job 1234"
"""
SRUN = """#!/bin/bash
# stand-in srun: one task here, with srun's --output / --error patterns filled in
out=/dev/null; err=/dev/null
while [[ "$1" == --* ]]; do
  case "$1" in
    --output) out="$2"; shift 2 ;;
    --error) err="$2"; shift 2 ;;
    *) shift ;;
  esac
done
fill() { local s="$1"; s=${s//%A/$SLURM_ARRAY_JOB_ID}; s=${s//%a/$SLURM_ARRAY_TASK_ID}
  s=${s//%t/0}; s=${s//%j/${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}}; echo "$s"; }
args=(); for a in "$@"; do args+=("$(fill "$a")"); done
out=$(fill "$out"); err=$(fill "$err"); mkdir -p "$(dirname "$out")"
"${args[@]}" >>"$out" 2>>"$err"
"""
SACCT = """#!/bin/bash
# stand-in sacct: the tasks sbatch started, RUNNING until they end, then COMPLETED
here=$(dirname "$0")
echo "JobID|State|NodeList"
for task in 0 1 2 3; do
  if [ -e "$here/1234_$task.done" ]; then state=COMPLETED; else state=RUNNING; fi
  echo "1234_${task}|${state}|localhost"
done
"""


def entry(kind: str) -> list[str]:
    if kind == "module":
        return [sys.executable, "-m", "ganlab.run"]
    script = Path(sys.executable).parent / "ganlab-train"
    if not script.is_file():
        pytest.skip("the ganlab-train console script is not installed (pip install -e .)")
    return [str(script)]


def sweep(command: list[str], launcher: str, sweep_dir: Path, path: str | None = None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    if path:
        env["PATH"] = f"{path}:{env['PATH']}"
    overrides = [f"hydra/launcher={launcher}", *JOBS, f"hydra.sweep.dir={sweep_dir}"]
    done = subprocess.run([*command, "-m", *overrides], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done


def check_jobs(sweep_dir: Path, results: list[Path]) -> None:
    for job in ("0", "1"):
        assert (sweep_dir / job / "checkpoints" / "last.ckpt").is_file()
        assert "train/d_loss" in (sweep_dir / job / "csv" / "metrics.csv").read_text()
    values = []
    for path in results:  # what each job returned to the sweeper (submitit's result pickle)
        with open(path, "rb") as f:
            status, job_return = pickle.load(f)
        assert status == "success"
        values.append(job_return.return_value)
    assert len(values) == 2 and all(isinstance(v, float) for v in values), values


def test_a_sweep_through_submitit_local_runs_end_to_end(tmp_path):
    sweep_dir = tmp_path / "sweep"
    sweep(entry("module"), "submitit_local", sweep_dir)
    check_jobs(sweep_dir, sorted(sweep_dir.glob(".submitit/*/*_result.pkl")))


@pytest.mark.parametrize("kind", ["module", "console_script"])
def test_a_slurm_sweep_submits_and_runs_with_stand_in_commands(tmp_path, kind):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", SBATCH), ("srun", SRUN), ("sacct", SACCT)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    sweep_dir = tmp_path / "sweep"
    sweep(entry(kind), "slurm", sweep_dir, path=str(bin_dir))
    script = (bin_dir / "submitted.sh").read_text()
    assert "#SBATCH --array=0-1" in script and "#SBATCH --signal=USR1@120" in script
    assert sorted(p.name for p in sweep_dir.glob(".submitit/1234_*/*_submitted.pkl")) == [
        "1234_0_submitted.pkl", "1234_1_submitted.pkl"]
    check_jobs(sweep_dir, sorted(sweep_dir.glob(".submitit/1234_*/*_result.pkl")))
