"""Faults of real use that used to mislead silently: a schedule re-run with other settings, a train.csv in the
run dir, a resume with paths spelled otherwise, two runs of one fold, a launcher killed alone, logs of resumes."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import self_verify
import train
from run_experiment_set import main as run_set
from run_experiment_set import parse_args as set_args
from tests.helpers import write_train_csv
from utils import paths
from utils.launch.schedule import PRESETS, build_schedule, redo_from, stale_steps
from utils.paths import REPO, lock_path, resolve_train_file
from utils.resume import fold_lock

DEMO = "models/vgg_gap_demo.py"


@pytest.fixture
def finished(local_demo_schedule, tmp_path) -> Path:
    """A copy of the finished tiny demo schedule (1 epoch per step, seed 1, 1 iteration)."""
    assert local_demo_schedule.resumed.returncode == 0
    exp = tmp_path / "exp"
    shutil.copytree(local_demo_schedule.exp, exp)
    return exp


@pytest.mark.parametrize("change,difference", [(["--epochs", "2"], "epochs: 1 -> 2"),
                                               (["--epochs", "1", "--seed", "2"], "seed: 1 -> 2")])
def test_schedule_refuses_outputs_of_other_settings(demo_root, finished, change, difference):
    args = ["--experiment_set", "all", "--preset", "demo", "--iterations", "1", "--num_gpus", "0",
            "--data_root", str(demo_root), "--exp_root", str(finished), *change]
    with pytest.raises(ValueError, match=f"pretrain_vgg_gap_demo: .*other settings \\({difference}.*--redo"):
        run_set(set_args(args))
    # the same settings are done: nothing to refuse
    same = build_schedule(PRESETS["demo"], "all", demo_root, finished, 1, seed=1, epochs=1)
    assert stale_steps(same) == [] and all(step.done() for step in same)


def test_redo_removes_the_stale_step_and_the_later_steps_of_its_model(demo_root, finished):
    steps = build_schedule(PRESETS["demo"], "all", demo_root, finished, 1, seed=1, epochs=2)
    stale = stale_steps(steps)
    assert {s.name for s, _ in stale} >= {"pretrain_vgg_gap_demo", "pretrain_vgg_gap_demo_v2"}
    first_demo = [(s, d) for s, d in stale if s.model == DEMO][:1]
    removed = redo_from(steps, first_demo)
    demo_dir, v2_dir = paths.run_dir(finished, DEMO), paths.run_dir(finished, "models/vgg_gap_demo_v2.py")
    assert removed and all(f.parent == demo_dir for f in removed)
    assert not list(demo_dir.glob("results_*.json")) and not list(demo_dir.glob("params_*.pt"))
    assert not (demo_dir / "train_self_verified_it0.csv").exists()
    assert len(list(v2_dir.glob("results_*.json"))) == 8  # the other model keeps its outputs


def test_data_root_train_csv_is_never_shadowed(demo_root, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "train.csv").write_text("fname,label,manually_verified\n")
    (run_dir / "train_self_verified_it0.csv").write_text("x")  # a self-verified file: found in the run dir
    assert resolve_train_file("train.csv", run_dir, demo_root) == demo_root / "train.csv"
    own = "train_self_verified_it0.csv"
    assert resolve_train_file(own, run_dir, demo_root) == run_dir / own
    with pytest.raises(ValueError, match="may not be named train.csv"):
        self_verify.main(self_verify.parse_args(["--model", DEMO, "--spec_dir", "specs_train_v1", "--tag", "it0",
                                                 "--train_file", "train.csv", "--data_root", str(demo_root),
                                                 "--exp_root", str(tmp_path)]))


@pytest.mark.parametrize("flag,value,message", [("--n_excerpts", "0", "--n_excerpts must be at least 1"),
                                                ("--top_probs_thresh", "2", "--top_probs_thresh must be in"),
                                                ("--k_per_class", "-1", "--k_per_class must be at least 1")])
def test_self_verify_flags_are_checked(tmp_path, flag, value, message):
    write_train_csv(tmp_path / "data")  # refused before any data is read: a train.csv alone will do
    with pytest.raises(ValueError, match=message):
        self_verify.main(self_verify.parse_args(["--model", DEMO, "--spec_dir", "specs_train_v1", "--tag", "it0",
                                                 "--train_file", "sv.csv", "--data_root", str(tmp_path / "data"),
                                                 "--exp_root", str(tmp_path), flag, value]))


def train_args(data_root: str, exp_root: str, *extra: str) -> list[str]:
    return ["--model", str(REPO / DEMO), "--spec_dir", "specs_train_v1", "--fold", "2", "--max_len", "600",
            "--data_root", data_root, "--exp_root", exp_root, *extra]


@pytest.mark.parametrize("epochs", ["0", "-3"])
def test_epochs_must_be_positive(tmp_path, epochs):
    write_train_csv(tmp_path / "data")
    with pytest.raises(ValueError, match=f"--epochs must be at least 1, got {epochs}"):
        train.main(train.parse_args(train_args(str(tmp_path / "data"), str(tmp_path), "--epochs", epochs)))


def test_roots_from_the_environment(demo_root, tmp_path, monkeypatch):
    """Without --data_root/--exp_root, train.py and self_verify.py take the environment's roots (not None)."""
    from utils.paths import DATA_ROOT_ENV, EXP_ROOT_ENV

    monkeypatch.setenv(DATA_ROOT_ENV, str(demo_root))
    monkeypatch.setenv(EXP_ROOT_ENV, str(tmp_path / "env_exp"))
    args = ["--model", str(REPO / DEMO), "--spec_dir", "specs_train_v1", "--max_len", "600"]
    for fold in range(1, 5):
        train.main(train.parse_args([*args, "--fold", str(fold), "--epochs", "1"]))
    assert all(paths.params_path(tmp_path / "env_exp", DEMO, k, "it0").is_file() for k in range(1, 5))
    self_verify.main(self_verify.parse_args([*args, "--tag", "it0", "--out", "sv.csv"]))
    assert (paths.run_dir(tmp_path / "env_exp", DEMO) / "sv.csv").is_file()


def test_resume_with_paths_spelled_otherwise(demo_root, tmp_path, monkeypatch, capsys):
    """A checkpoint resumes whatever the spelling of its folders; a change of substance is refused by name."""
    exp = tmp_path / "exp"
    train.main(train.parse_args(train_args(str(demo_root), str(exp), "--epochs", "1")))
    moved = tmp_path / "moved"
    shutil.move(exp, moved)  # a moved experiments folder, now given relative to the working directory
    monkeypatch.chdir(tmp_path)
    rel_root = os.path.relpath(demo_root, tmp_path)
    capsys.readouterr()
    train.main(train.parse_args(train_args(rel_root + "/", "moved", "--epochs", "1")))
    assert "resuming" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"other settings \(seed: 1 -> 2\).*another --exp_root or --tag"):
        train.main(train.parse_args(train_args(rel_root, "moved", "--epochs", "1", "--seed", "2")))


def test_a_fold_is_trained_by_one_process_at_a_time(demo_root, tmp_path):
    with fold_lock(lock_path(tmp_path, DEMO, 2, "it0")):
        p = subprocess.run([sys.executable, "train.py", *train_args(str(demo_root), str(tmp_path), "--epochs", "1")],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert f"process {os.getpid()}" in p.stderr and "already training" in p.stderr
    assert not paths.log_path(tmp_path, DEMO, 2, "it0").exists()


def parent_pids() -> dict[int, int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            after_name = stat.read_text().rsplit(") ", 1)[1]  # the command name may hold spaces
        except (OSError, IndexError):
            continue  # ended meanwhile
        parents[int(stat.parent.name)] = int(after_name.split()[1])
    return parents


def descendants(root: int) -> set[int]:
    parents, found, frontier = parent_pids(), set(), {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent (a PID is not reused within a test's seconds)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_killing_the_launcher_alone_stops_its_whole_tree(demo_root, tmp_path):
    """kill -TERM to run_experiment_set.py's PID (not its group) stops run_experiment.sh and train.py too."""
    exp = tmp_path / "exp"
    proc = subprocess.Popen([sys.executable, "run_experiment_set.py", "--experiment_set", "pretrain", "--preset",
                             "demo", "--epochs", "50", "--num_gpus", "0", "--data_root", str(demo_root),
                             "--exp_root", str(exp)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            # folds one after another, so that a fold not yet started shows the launcher stopped
                            env={**os.environ, "FSDTAG_CPU_JOBS": "1"})

    tree: set[int] = set()  # the launcher's descendants (run_experiment.sh, its folds), by parent PID
    deadline = time.time() + 120
    while time.time() < deadline and not paths.log_path(exp, DEMO, 1, "it0").exists():
        tree |= descendants(proc.pid)
        time.sleep(0.2)  # until fold 1 is inside its epochs
    tree |= descendants(proc.pid)
    assert tree, "the schedule should be running"
    os.kill(proc.pid, signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        for pid in tree:  # never leave this test's own processes running behind a failure
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 128 + signal.SIGTERM and "SIGTERM passed on" in err
    deadline = time.time() + 30
    while time.time() < deadline and any(alive(pid) for pid in tree):
        time.sleep(0.2)
    assert not any(alive(pid) for pid in tree)
    assert not paths.log_path(exp, DEMO, 2, "it0").exists()  # run_experiment.sh did not go on to fold 2
    assert json.loads(paths.log_path(exp, DEMO, 1, "it0").read_text())["finished"] is False
