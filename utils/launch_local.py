"""Running a schedule on this machine: per-fold steps through run_experiment.sh, one after another."""

import os
import shlex
import subprocess
from pathlib import Path

from utils.schedule import Step

REPO = Path(__file__).resolve().parents[1]


def step_command(step: Step, num_gpus: int) -> list[str]:
    if step.per_fold:
        return [str(REPO / "run_experiment.sh"), step.name, step.shell(), str(num_gpus)]
    return step.command


def run_local(steps: list[Step], num_gpus: int, exp_root: Path, dry_run: bool = False) -> None:
    """Run each unfinished step; stop at the first failure (later steps need its outputs)."""
    env = {**os.environ, "FSDTAG_EXP_ROOT": str(exp_root)}  # run_experiment.sh's fold logs go there
    for i, step in enumerate(steps, 1):
        print(f"Running experiment ({i} / {len(steps)})", flush=True)
        command = step_command(step, num_gpus)
        if step.done():
            print(f"skip {step.name}: outputs exist", flush=True)
            continue
        print(shlex.join(command), flush=True)
        if dry_run:
            continue
        result = subprocess.run(command, cwd=REPO, env=env)
        if result.returncode != 0:
            raise RuntimeError(f"step {step.name} failed (exit {result.returncode}); fix it and run the same "
                               f"command again to resume")
