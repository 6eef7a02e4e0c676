"""Running a schedule on a SLURM cluster: one batch script per step, submitted at once as a dependency chain.

A per-fold step becomes a job array over the folds (the fold is $SLURM_ARRAY_TASK_ID, one GPU per task by
default); a step that is not per fold (self-verification scores all folds in one process) is a single job.
Each job starts only once the previous step's job finished OK (--dependency=afterok), so a failed fold never
lets a later step run on missing parameters: SLURM cancels the dependents (kill_invalid_depend, or the user
cancels them; `--status` says which).

Everything lands in <exp_root>/slurm/: the scripts (readable; `sbatch <script>` re-runs a step by hand),
one log per task in logs/, and jobs.json, the record that maps job ids back to steps for `--status`."""

import json
import shlex
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from utils import paths
from utils.atomic import save_json, save_text
from utils.errors import InputError, StepFailed
from utils.launch.schedule import Step, output_done
from utils.model_files import load_model_file
from utils.paths import REPO

DEFAULT_GRES = "gpu:1"
JOB_PREFIX = "fsdtag_"

# short sbatch options and their long names, so a site's "-p gpu" replaces a default "--partition"
SHORT_OPTIONS = {"-p": "partition", "-t": "time", "-A": "account", "-C": "constraint", "-G": "gpus",
                 "-c": "cpus-per-task", "-J": "job-name", "-q": "qos", "-N": "nodes", "-n": "ntasks"}
GPU_OPTIONS = {"gres", "gpus", "gpus-per-task", "gpus-per-node"}
ACTIVE_STATES = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING"}


def task_log(exp_root: Path, step: Step, job_id: str, fold: int | None) -> Path:
    pattern = str(paths.slurm_log_pattern(exp_root, step.name, step.per_fold))
    if fold is None:
        return Path(pattern.replace("%j", job_id))
    return Path(pattern.replace("%A", job_id).replace("%a", str(fold)))


def parse_sbatch_args(text: str) -> list[tuple[str, str | None]]:
    """'--partition gpu -t 1:00:00 --exclusive' -> [('partition', 'gpu'), ('time', '1:00:00'), ('exclusive', None)].
    Keyed by long name, so a later option (site, then model file) replaces an earlier one."""
    options: list[tuple[str, str | None]] = []
    for token in shlex.split(text):
        if token.startswith("-"):
            name, _, value = token.partition("=")
            key = SHORT_OPTIONS.get(name, name.lstrip("-"))
            if len(name) > 2 and name[1] != "-" and name[:2] in SHORT_OPTIONS:  # -pgpu
                key, value = SHORT_OPTIONS[name[:2]], name[2:]
            options.append((key, value or None))
        elif options and options[-1][1] is None:
            options[-1] = (options[-1][0], token)  # the value of "--partition gpu"
        else:
            raise InputError(f"--slurm_args: {token!r} is not an sbatch option or its value")
    return options


def step_options(step: Step, site: list[tuple[str, str | None]]) -> dict[str, str | None]:
    """The step's sbatch options: one GPU per task, then the site's --slurm_args, then the model file's SLURM
    dict (a model that needs more memory or time says so in its own file). Any GPU option from the site or
    the model replaces the default gres; --gres=none asks for none (a CPU cluster)."""
    model_options = model_slurm_options(step.model) if step.model else {}
    merged: dict[str, str | None] = {}
    if not any(key in GPU_OPTIONS for key, _ in [*site, *model_options.items()]):
        merged["gres"] = DEFAULT_GRES
    for key, value in [*site, *model_options.items()]:
        merged.pop(key, None)  # re-insert, so the printed order follows the override order
        merged[key] = value
    if merged.get("gres") == "none":
        del merged["gres"]
    return merged


_model_options_cache: dict[str, dict[str, str | None]] = {}


def model_slurm_options(model: str) -> dict[str, str | None]:
    """A model file's optional SLURM = {"mem": "64G", "time": "24:00:00"} (sbatch long names, no dashes)."""
    if model not in _model_options_cache:
        path = Path(model) if Path(model).is_absolute() else REPO / model
        own = getattr(load_model_file(path), "SLURM", {})
        _model_options_cache[model] = {str(k).lstrip("-"): None if v is None else str(v) for k, v in own.items()}
    return _model_options_cache[model]


def batch_script(step: Step, index: int, total: int, exp_root: Path, options: dict[str, str | None]) -> str:
    """A readable script that runs one step: every resource as an #SBATCH line, the command spelled out."""
    lines = ["#!/usr/bin/env bash",
             f"#SBATCH --job-name={JOB_PREFIX}{step.name}"]
    if step.per_fold:
        lines.append(f"#SBATCH --array=1-{len(step.folds)}")
    lines += [f"#SBATCH --output={paths.slurm_log_pattern(exp_root, step.name, step.per_fold)}",
              f"#SBATCH --chdir={REPO}"]  # the commands name repository files (train.py, models/...)
    lines += [f"#SBATCH --{key}" if value is None else f"#SBATCH --{key}={value}" for key, value in options.items()]
    what = f"one array task per fold, 1-{len(step.folds)}" if step.per_fold else "all folds in one job"
    script = paths.slurm_script_path(exp_root, step.name)
    lines += ["#",
              f"# Step {index} / {total} of the fsdtag schedule: {step.name} ({what}).",
              "# Written by run_experiment_set.py --launcher slurm, which chains the steps with",
              "# --dependency=afterok:<previous step's job>. To re-run this step by hand:",
              f"#   sbatch {script}" + (f"\n#   sbatch --array=3 {script}    # fold 3 only" if step.per_fold else ""),
              "set -euo pipefail",
              ""]
    if step.per_fold:
        lines += [f'fold=${{SLURM_ARRAY_TASK_ID:?submit with sbatch --array=1-{len(step.folds)}}}',
                  f'echo "{step.name} fold $fold on $(hostname), job ${{SLURM_JOB_ID:-}}"',
                  f'{step.shell()} --fold "$fold"']
    else:
        lines += [f'echo "{step.name} on $(hostname), job ${{SLURM_JOB_ID:-}}"',
                  step.shell()]
    return "\n".join(lines) + "\n"


def unfinished_folds(step: Step) -> list[int]:
    """The folds whose outputs are missing; a per-fold step's outputs are its folds' logs, in fold order."""
    if not step.per_fold or len(step.outputs) != len(step.folds):
        return [] if step.done() else list(step.folds)
    return [k for k, out in enumerate(step.outputs, 1) if not output_done(out)]


def load_record(exp_root: Path) -> dict:
    path = paths.slurm_record_path(exp_root)
    return json.loads(path.read_text()) if path.is_file() else {"jobs": {}}


def queued_tasks(job_ids: list[str]) -> dict[str, str]:
    """'<job>' or '<job>_<fold>' -> state, for what SLURM still holds (pending, running) of these jobs."""
    if not job_ids:
        return {}
    # all of the user's jobs, filtered here: squeue -j fails outright once one of the ids is purged
    result = subprocess.run(["squeue", "--me", "-h", "-r", "-o", "%i|%T"], capture_output=True, text=True)
    if result.returncode != 0:
        raise StepFailed(f"squeue failed: {result.stderr.strip()}")
    wanted = set(job_ids)
    return {task: state for task, _, state in (line.partition("|") for line in result.stdout.split())
            if task.split("_")[0] in wanted}


def accounted_tasks(job_ids: list[str]) -> dict[str, str]:
    """Finished tasks' states from sacct, where the cluster keeps accounting (slurmdbd); empty otherwise.
    (sacct -c, the job-completion file, loses the array task ids in SLURM 22.05, so it is not used here;
    the outputs and logs on disk tell the same story.)"""
    if not job_ids:
        return {}
    try:
        result = subprocess.run(["sacct", "-n", "-P", "-X", "-j", ",".join(job_ids), "-o", "JobID,State"],
                                capture_output=True, text=True)
    except FileNotFoundError:
        return {}
    states = {}
    for line in result.stdout.splitlines() if result.returncode == 0 else []:
        task, _, state = line.partition("|")
        if state.strip():
            states[task] = state.split()[0]  # "CANCELLED by 0" -> "CANCELLED"
    return states


def submit_slurm(steps: list[Step], exp_root: Path, slurm_args: str = "", dry_run: bool = False) -> dict:
    """Write a script per unfinished step and submit the chain; returns the record (also in jobs.json).
    A step whose job from an earlier submission is still queued is not submitted twice: the chain waits on it."""
    site = parse_sbatch_args(slurm_args)
    record = load_record(exp_root)
    queued = queued_tasks([entry["job_id"] for entry in record["jobs"].values()])
    queued_jobs = {task.split("_")[0] for task in queued}
    previous: str | None = None
    for i, step in enumerate(steps, 1):
        folds = unfinished_folds(step)
        if not folds:
            print(f"skip {step.name}: outputs exist", flush=True)
            continue
        entry = record["jobs"].get(step.name)
        if entry and entry["job_id"] in queued_jobs and not dry_run:
            previous = entry["job_id"]
            print(f"keep {step.name}: job {previous} still queued", flush=True)
            continue
        script = batch_script(step, i, len(steps), exp_root, step_options(step, site))
        path = paths.slurm_script_path(exp_root, step.name)
        command = ["sbatch", "--parsable"]
        if step.per_fold and len(folds) < len(step.folds):
            command.append(f"--array={','.join(map(str, folds))}")  # resume: only the folds still missing
        if previous:
            command.append(f"--dependency=afterok:{previous}")
        command.append(str(path))
        if dry_run:
            previous = f"<job of {step.name}>"
            print(f"# ---- {path}\n{script}# submit: {shlex.join(command)}\n", flush=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        paths.slurm_log_pattern(exp_root, step.name, step.per_fold).parent.mkdir(parents=True, exist_ok=True)
        save_text(path, script)
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            save_json(paths.slurm_record_path(exp_root), record)  # what was submitted so far stays mapped
            raise StepFailed(f"sbatch failed for step {step.name} (exit {result.returncode}): "
                               f"{result.stderr.strip()}")
        previous = result.stdout.strip().split(";")[0]  # --parsable prints "<id>" or "<id>;<cluster>"
        record["jobs"][step.name] = {"job_id": previous, "folds": folds if step.per_fold else None,
                                     "script": str(path), "submitted": datetime.now().isoformat(timespec="seconds")}
        save_json(paths.slurm_record_path(exp_root), record)
        print(f"submitted {step.name}: job {previous}" + (f" (folds {folds})" if step.per_fold else ""), flush=True)
    return record


@dataclass
class TaskStatus:
    step: str
    fold: int | None      # None for a single-job step
    state: str            # DONE, TODO, PENDING, RUNNING, FAILED, CANCELLED, ...
    job: str = ""
    log: Path | None = None


def slurm_status(steps: list[Step], exp_root: Path) -> list[TaskStatus]:
    """Each step's (and each fold's) state: outputs on disk first, then squeue, then sacct, then the logs.
    A task that is not queued, has no outputs and left a log ran and failed; one without a log never started
    (cancelled because something before it failed)."""
    jobs = load_record(exp_root)["jobs"]
    ids = [entry["job_id"] for entry in jobs.values()]
    queued = queued_tasks(ids)
    accounted = accounted_tasks(ids)
    statuses = []
    for step in steps:
        entry = jobs.get(step.name)
        missing = unfinished_folds(step)
        for fold in (step.folds if step.per_fold else [None]):
            done = (fold not in missing) if step.per_fold else not missing
            if done:
                statuses.append(TaskStatus(step.name, fold, "DONE"))
                continue
            if entry is None:
                statuses.append(TaskStatus(step.name, fold, "TODO"))
                continue
            job = entry["job_id"]
            task = job if fold is None else f"{job}_{fold}"
            log = task_log(exp_root, step, job, fold)
            state = queued.get(task) or accounted.get(task) or accounted.get(job)
            if state in (None, "COMPLETED"):
                # COMPLETED without outputs: the command exited 0 but wrote nothing, still a failure
                state = "FAILED" if log.is_file() else "CANCELLED"
            statuses.append(TaskStatus(step.name, fold, state, task, log))
    return statuses


def print_status(statuses: list[TaskStatus]) -> int:
    """One line per step (folds summarised), then one line per failed task with its fold, step and log.
    Returns 1 when something failed, so scripts can test the exit code."""
    by_step: dict[str, list[TaskStatus]] = {}
    for status in statuses:
        by_step.setdefault(status.step, []).append(status)
    for step, tasks in by_step.items():
        states = sorted({t.state for t in tasks})
        summary = states[0] if len(states) == 1 else ", ".join(
            f"{s}: fold {','.join(str(t.fold) for t in tasks if t.state == s)}" for s in states)
        jobs = sorted({t.job.split("_")[0] for t in tasks if t.job})
        print(f"{step:40s} {summary}" + (f"  (job {', '.join(jobs)})" if jobs else ""))
    failed = [t for t in statuses if t.state not in ACTIVE_STATES | {"DONE", "TODO", "CANCELLED"}]
    for t in failed:
        where = f"fold {t.fold} of step {t.step}" if t.fold is not None else f"step {t.step}"
        print(f"FAILED: {where} (job {t.job}, state {t.state}); log: {t.log}")
    if failed:
        print("fix the cause and submit the same command again: finished folds are skipped")
    return 1 if failed else 0


