"""Running a schedule on this machine: per-fold steps through run_experiment.sh, one after another."""

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from utils.errors import StepFailed
from utils.launch.schedule import Step
from utils.paths import REPO


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
        # run_experiment.sh trains the data root's folds, which the schedule read from its folds.csv
        returncode = run_stoppable(command, {**env, "FSDTAG_FOLDS": " ".join(map(str, step.folds))})
        if returncode != 0:
            raise StepFailed(f"step {step.name} failed (exit {returncode}); fix it and run the same "
                               f"command again to resume")


def run_stoppable(command: list[str], env: dict[str, str]) -> int:
    """Run a step in its own process group and pass SIGINT/SIGTERM on to that whole group, so that stopping
    this launcher (Ctrl-C, or kill of its PID alone) stops run_experiment.sh and every fold it started."""
    proc = subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True)
    received: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        # no waiting in here: the handler runs inside proc.wait() below, whose lock it would deadlock on
        received.append(signum)
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            pass

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        returncode = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        print(f"stopped: {signal.Signals(received[0]).name} passed on to the running step", file=sys.stderr)
        raise SystemExit(128 + received[0])
    return returncode
