"""Shared fixtures: a small real-audio demo dataset with both spectrogram versions, built once per session."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import prepare_spectrograms
from utils import paths
from utils.demo.dataset import PARAMS_FILE, build_demo_dataset
from utils.paths import REPO
from utils.spectrogram_cache import FAILED_NAME

# distinct-sounding classes, so a few CPU epochs of the demo net learn them
DEMO_CLASSES = ["Bass_drum", "Flute", "Glockenspiel", "Hi-hat", "Trumpet"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that needs demo_root, directly or through another fixture, waits minutes for the dataset: it is
    marked slow here, so that a new one cannot be left out of the mark."""
    for item in items:
        if "demo_root" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root: 5 classes x 24 train clips (noisy unverified labels) + 6 scored test clips, as many Ignored
    padding clips and a few broken test wavs (no spectrogram; listed in specs_test_v*/failed.txt), specs v1 and
    v2."""
    root = tmp_path_factory.mktemp("demo")
    build_demo_dataset(root, clips_per_class=24, test_clips_per_class=6, seed=3, classes=DEMO_CLASSES, jobs=2)
    # like Kaggle's test download, the test set holds broken wavs (0 samples, or not audio at all)
    broken = set(json.loads((root / PARAMS_FILE).read_text())["stats"]["broken_wavs"])
    assert broken
    for version in (1, 2):
        for split in ("train", "test"):
            spec_path = root / f"specs_{split}_v{version}"
            code = prepare_spectrograms.main(prepare_spectrograms.parse_args([
                "--audio_path", str(root / f"audio_{split}"), "--spec_path", str(spec_path),
                "--spec_version", str(version), "--dump", "--jobs", "2", "--no_progress"]))
            wavs = {p.name for p in (root / f"audio_{split}").glob("*.wav")}
            failed = broken if split == "test" else set()
            assert code == (1 if failed else 0)
            if failed:  # failed.txt names exactly the broken clips, one line each
                lines = (spec_path / FAILED_NAME).read_text().splitlines()
                assert sorted(Path(line.split(": ", 1)[0]).name for line in lines) == sorted(failed)
            assert {p.stem for p in spec_path.glob("*.npy")} == {Path(w).stem for w in wavs - failed}
    return root


def demo_schedule_args(demo_root: Path, exp: Path, *extra: str) -> list[str]:
    """The demo schedule at a tiny size: 1 iteration, 1 epoch per training step, folds on the CPU."""
    return [sys.executable, "run_experiment_set.py", "--experiment_set", "all", "--preset", "demo",
            "--iterations", "1", "--epochs", "1", "--num_gpus", "0", "--data_root", str(demo_root),
            "--exp_root", str(exp), *extra]


@dataclass
class LocalSchedule:
    exp: Path
    first_step_mtimes: list[float]  # of the first step's outputs, when the schedule was killed
    resumed: subprocess.CompletedProcess  # the run that went on after the kill


@pytest.fixture(scope="session")
def local_demo_schedule(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> LocalSchedule:
    """The tiny demo schedule through the local launcher, killed once its first step is done, then started
    again to the end. Shared by the schedule test and the SLURM test, which compares its files with these."""
    exp = tmp_path_factory.mktemp("local_schedule")
    first = [paths.log_path(exp, "models/vgg_gap_demo.py", k, "it0") for k in range(1, 5)]
    proc = subprocess.Popen(demo_schedule_args(demo_root, exp), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not all(p.is_file() for p in first):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    mtimes = [p.stat().st_mtime for p in first]
    resumed = subprocess.run(demo_schedule_args(demo_root, exp), cwd=REPO, capture_output=True, text=True,
                             timeout=900)
    return LocalSchedule(exp, mtimes, resumed)
