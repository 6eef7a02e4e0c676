"""The slurm launcher on a real one-node SLURM cluster started on this machine (tests/slurm_cluster.py).

Needs root and Debian's slurmctld, slurmd, slurm-client and munge; elsewhere the tests are skipped and say
why. The demo schedule runs at a tiny size (1 iteration, 1 epoch); the node has no GPU, so the jobs ask for
one CPU each instead (--gres=none --cpus-per-task=1) and two folds run side by side on a 2-CPU machine."""

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import demo_schedule_args
from tests.slurm_cluster import SlurmCluster, unavailable_reason
from utils import paths
from utils.launch.schedule import PRESETS, build_schedule
from utils.launch.slurm import parse_sbatch_args, step_options
from utils.paths import REPO

DEMO, DEMO_V2 = "models/vgg_gap_demo.py", "models/vgg_gap_demo_v2.py"
CPU_ARGS = "--gres=none --cpus-per-task=1"
WAIT_S = 900


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmCluster]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"no local SLURM cluster: {reason}")
    cluster = SlurmCluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()  # always, whatever the tests did: no daemons left behind


def run(cluster: SlurmCluster, args: list[str], timeout: float = WAIT_S) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, env=cluster.env(), capture_output=True, text=True, timeout=timeout)


def submit(cluster: SlurmCluster, demo_root: Path, exp: Path) -> subprocess.CompletedProcess:
    result = run(cluster, demo_schedule_args(demo_root, exp, "--launcher", "slurm", "--slurm_args", CPU_ARGS), 120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def wait_for_queue(cluster: SlurmCluster) -> None:
    """Until the cluster holds no job: finished, failed or cancelled by a failed dependency."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        queue = run(cluster, ["squeue", "-h", "-o", "%i %T %r"], 30)
        assert queue.returncode == 0, queue.stderr
        if not queue.stdout.strip():
            return
        time.sleep(1)
    pytest.fail(f"jobs still queued after {WAIT_S} s:\n{queue.stdout}")


def files(exp: Path, skip: str) -> set[str]:
    """Every file under exp, relative, but the launcher's own logs folder."""
    return {str(p.relative_to(exp)) for p in exp.rglob("*") if p.is_file() and p.relative_to(exp).parts[0] != skip}


def test_options_default_gpu_site_and_cpu_override(tmp_path):
    step = build_schedule(PRESETS["demo"], "pretrain", tmp_path, tmp_path)[0]
    assert step_options(step, []) == {"gres": "gpu:1"}
    site = parse_sbatch_args("-p gpu --time 2:00:00 --exclusive")
    assert step_options(step, site) == {"gres": "gpu:1", "partition": "gpu", "time": "2:00:00", "exclusive": None}
    assert step_options(step, parse_sbatch_args("--gres=gpu:a100:1")) == {"gres": "gpu:a100:1"}
    assert step_options(step, parse_sbatch_args(CPU_ARGS)) == {"cpus-per-task": "1"}
    with pytest.raises(ValueError):
        parse_sbatch_args("gpu")


def test_failed_fold_is_reported_and_resubmission_makes_the_local_files(slurm, demo_root, local_demo_schedule,
                                                                        tmp_path):
    """One schedule on the cluster: a fold fails and SLURM cancels every later step; the same command resubmits
    the failed fold and the rest, which end in the same files as the local launcher's schedule."""
    exp = tmp_path / "slurm_exp"
    # fold 2 of the first step cannot write its log: a folder stands where the file goes
    blocker = paths.log_path(exp, DEMO, 2, "it0")
    blocker.mkdir(parents=True)
    submitted = submit(slurm, demo_root, exp)
    assert submitted.stdout.count("submitted ") == 6, submitted.stdout
    jobs = json.loads((exp / "slurm" / "jobs.json").read_text())["jobs"]
    assert len({entry["job_id"] for entry in jobs.values()}) == 6
    wait_for_queue(slurm)

    status = run(slurm, demo_schedule_args(demo_root, exp, "--launcher", "slurm", "--status"), 120)
    assert status.returncode == 1, status.stdout + status.stderr
    first = jobs["pretrain_vgg_gap_demo"]["job_id"]
    log = exp / "slurm" / "logs" / f"pretrain_vgg_gap_demo_{first}_2.log"
    assert f"FAILED: fold 2 of step pretrain_vgg_gap_demo (job {first}_2, state FAILED); log: {log}" in status.stdout
    assert log.is_file() and f"error: {blocker} is a folder" in log.read_text()  # the task's log says why
    lines = {line.split()[0]: line for line in status.stdout.splitlines() if line.startswith(("pre", "self", "fine"))}
    assert "DONE: fold 1,3,4" in lines["pretrain_vgg_gap_demo"]
    for name in list(jobs)[1:]:
        assert "CANCELLED" in lines[name], status.stdout
    # SLURM itself cancelled every later step (kill_invalid_depend), so none ran on missing parameters
    acct = run(slurm, ["sacct", "-c", "-n", "-P", "-o", "JobID,State"], 60)
    states = dict(line.split("|", 1) for line in acct.stdout.splitlines() if "|" in line)
    for name in list(jobs)[1:]:
        assert states.get(jobs[name]["job_id"], "").startswith("CANCELLED"), (name, acct.stdout)
    assert not list(exp.glob("vgg_gap_demo_v2/*"))
    assert not list((exp / "vgg_gap_demo").glob("*_it1*"))

    # resume: only the failed fold of the first step is submitted again, each step waiting on the one before;
    # a second submission while they are queued keeps them
    blocker.rmdir()
    resumed = submit(slurm, demo_root, exp)
    assert "submitted pretrain_vgg_gap_demo: job" in resumed.stdout and "(folds [2])" in resumed.stdout
    assert resumed.stdout.count("submitted ") == 6, resumed.stdout
    twice = submit(slurm, demo_root, exp)
    assert twice.stdout.count("keep ") == 6 and "submitted" not in twice.stdout
    jobs = json.loads((exp / "slurm" / "jobs.json").read_text())["jobs"]
    wait_for_queue(slurm)

    status = run(slurm, demo_schedule_args(demo_root, exp, "--launcher", "slurm", "--status"), 120)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "FAILED" not in status.stdout and status.stdout.count(" DONE") == 6
    assert "best iteration of vgg_gap_demo" in status.stdout
    assert files(exp, "slurm") == files(local_demo_schedule.exp, "logs")
    for model in (DEMO, DEMO_V2):
        for k in range(1, 5):
            assert json.loads(paths.log_path(exp, model, k, "it1").read_text())["finished"]
    # one log per array task, named by job and fold (the first try's 4 pretraining tasks, the resubmitted fold
    # and 14 of the later steps), and a readable script per step
    logs = sorted(p.name for p in (exp / "slurm" / "logs").iterdir())
    assert f"pretrain_vgg_gap_demo_{jobs['pretrain_vgg_gap_demo']['job_id']}_2.log" in logs and len(logs) == 19
    script = (exp / "slurm" / "finetune_vgg_gap_demo_it1.sbatch").read_text()
    assert "#SBATCH --array=1-4" in script and '--fold "$fold"' in script and "--gres" not in script

    again = submit(slurm, demo_root, exp)
    assert again.stdout.count("skip ") == 6 and "submitted" not in again.stdout
