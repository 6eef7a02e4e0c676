"""The slurm launcher on a real one-node SLURM cluster started on this machine (tests/slurm_cluster.py).

Needs root and Debian's slurmctld, slurmd, slurm-client and munge; elsewhere the tests are skipped and say
why. On the cluster the demo schedule runs its pretraining steps (--iterations 0: two chained job arrays, 1 epoch;
every process imports torch for ~8 s, so each step costs minutes on 2 CPUs); the node has no GPU, so the jobs
ask for one CPU each instead (--gres=none --cpus-per-task=1) and two folds run side by side. The scripts of the
whole chain, self-verification and fine-tuning included, are checked from --dry_run, and the local launcher
runs every step (tests/conftest.py: local_demo_schedule)."""

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from run_experiment_set import main as run_set
from run_experiment_set import parse_args as set_args
from tests.conftest import demo_schedule_args
from tests.helpers import write_train_csv
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


def slurm_args(demo_root: Path, exp: Path, *extra: str) -> list[str]:
    return demo_schedule_args(demo_root, exp, "--iterations", "0", "--launcher", "slurm", *extra)


def submit(cluster: SlurmCluster, demo_root: Path, exp: Path) -> subprocess.CompletedProcess:
    result = run(cluster, slurm_args(demo_root, exp, "--slurm_args", CPU_ARGS), 120)
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


def pretraining_files(exp: Path) -> set[str]:
    """The fold runs' files of pretraining (params_<k>_it0.pt, results_<k>_it0.json, ...) under exp, relative."""
    return {str(p.relative_to(exp)) for p in exp.rglob("*_it0.*") if re.fullmatch(r"\w+_[1-4]_it0\.\w+", p.name)}


def test_dry_run_writes_the_whole_chain(tmp_path, capsys):
    write_train_csv(tmp_path / "data")
    run_set(set_args(["--experiment_set", "all", "--preset", "demo", "--iterations", "1", "--launcher", "slurm",
                      "--dry_run", "--exp_root", str(tmp_path), "--data_root", str(tmp_path / "data")]))
    out = capsys.readouterr().out
    names = ["pretrain_vgg_gap_demo", "pretrain_vgg_gap_demo_v2", "self_verify_vgg_gap_demo_it0",
             "finetune_vgg_gap_demo_it1", "self_verify_vgg_gap_demo_v2_it0", "finetune_vgg_gap_demo_v2_it1"]
    for i, name in enumerate(names):
        per_fold = not name.startswith("self_verify")
        what = "one array task per fold, 1-4" if per_fold else "all folds in one job"
        assert f"# Step {i + 1} / 6 of the fsdtag schedule: {name} ({what})." in out
        after = f"'--dependency=afterok:<job of {names[i - 1]}>' " if i else ""
        assert f"# submit: sbatch --parsable {after}{tmp_path / 'slurm' / name}.sbatch" in out
    assert out.count("#SBATCH --array=1-4") == 4 and out.count('--fold "$fold"') == 4
    assert "self_verify.py" in out and not (tmp_path / "slurm").exists()  # a dry run writes nothing


def test_options_default_gpu_site_and_cpu_override(tmp_path):
    write_train_csv(tmp_path)
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
    """Pretraining on the cluster: a fold fails and SLURM cancels the next step; the same command resubmits the
    failed fold and the rest, which end in the same files as the local launcher's pretraining."""
    exp = tmp_path / "slurm_exp"
    # fold 2 of the first step cannot write its log: a folder stands where the file goes
    blocker = paths.log_path(exp, DEMO, 2, "it0")
    blocker.mkdir(parents=True)
    submitted = submit(slurm, demo_root, exp)
    assert submitted.stdout.count("submitted ") == 2, submitted.stdout
    jobs = json.loads((exp / "slurm" / "jobs.json").read_text())["jobs"]
    assert list(jobs) == ["pretrain_vgg_gap_demo", "pretrain_vgg_gap_demo_v2"]
    wait_for_queue(slurm)

    status = run(slurm, slurm_args(demo_root, exp, "--status"), 120)
    assert status.returncode == 1, status.stdout + status.stderr
    first = jobs["pretrain_vgg_gap_demo"]["job_id"]
    log = exp / "slurm" / "logs" / f"pretrain_vgg_gap_demo_{first}_2.log"
    assert f"FAILED: fold 2 of step pretrain_vgg_gap_demo (job {first}_2, state FAILED); log: {log}" in status.stdout
    assert log.is_file() and f"error: {blocker} is a folder" in log.read_text()  # the task's log says why
    lines = {line.split()[0]: line for line in status.stdout.splitlines() if line.startswith("pre")}
    assert "DONE: fold 1,3,4" in lines["pretrain_vgg_gap_demo"]
    assert "CANCELLED" in lines["pretrain_vgg_gap_demo_v2"], status.stdout
    # SLURM itself cancelled the later step (kill_invalid_depend), so it never ran on missing parameters
    acct = run(slurm, ["sacct", "-c", "-n", "-P", "-o", "JobID,State"], 60)
    states = dict(line.split("|", 1) for line in acct.stdout.splitlines() if "|" in line)
    assert states.get(jobs["pretrain_vgg_gap_demo_v2"]["job_id"], "").startswith("CANCELLED"), acct.stdout
    assert not list(exp.glob("vgg_gap_demo_v2/*"))

    # resume: only the failed fold of the first step is submitted again, the next step waiting on it;
    # a second submission while they are queued keeps them
    blocker.rmdir()
    resumed = submit(slurm, demo_root, exp)
    assert "submitted pretrain_vgg_gap_demo: job" in resumed.stdout and "(folds [2])" in resumed.stdout
    assert resumed.stdout.count("submitted ") == 2, resumed.stdout
    twice = submit(slurm, demo_root, exp)
    assert twice.stdout.count("keep ") == 2 and "submitted" not in twice.stdout
    jobs = json.loads((exp / "slurm" / "jobs.json").read_text())["jobs"]
    wait_for_queue(slurm)

    status = run(slurm, slurm_args(demo_root, exp, "--status"), 120)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "FAILED" not in status.stdout and status.stdout.count(" DONE") == 2
    assert "best iteration of vgg_gap_demo" in status.stdout
    assert pretraining_files(exp) == pretraining_files(local_demo_schedule.exp)
    assert len(pretraining_files(exp)) == 32 and (exp / "best_iterations.json").is_file()
    for model in (DEMO, DEMO_V2):
        for k in range(1, 5):
            assert json.loads(paths.log_path(exp, model, k, "it0").read_text())["finished"]
    # one log per array task, named by job and fold (the first try's 4, the resubmitted fold, the second
    # step's 4), and a readable script per step
    logs = sorted(p.name for p in (exp / "slurm" / "logs").iterdir())
    assert f"pretrain_vgg_gap_demo_{jobs['pretrain_vgg_gap_demo']['job_id']}_2.log" in logs and len(logs) == 9
    script = (exp / "slurm" / "pretrain_vgg_gap_demo_v2.sbatch").read_text()
    assert "#SBATCH --array=1-4" in script and '--fold "$fold"' in script and "--gres" not in script

    again = submit(slurm, demo_root, exp)
    assert again.stdout.count("skip ") == 2 and "submitted" not in again.stdout
