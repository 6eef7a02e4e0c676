"""The prepared GPU check in its quick CPU mode, so that it cannot rot before the first GPU run: every section runs
and its comparisons (here CPU against CPU) pass; --prepare writes a data root small enough to carry."""

import subprocess
import sys

from utils.folds import load_folds
from utils.paths import REPO


def test_quick_mode_runs_every_section(demo_root, tmp_path):
    out = tmp_path / "gpu_check.txt"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--quick", "--device", "cpu", "--data_root",
                           str(demo_root), "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = out.read_text()
    rows = [line for line in report.splitlines()[2:] if line and not line.startswith(("---", " "))][:8]
    names = ["device data path = host path", "bf16: trains, resumes", "fp16 + scaler: trains, resumes",
             "2 folds in one process = separate", "posteriors = the CPU's", "end to end: train 2 epochs, eval",
             "a bundle tags as on the CPU", "figures (benchmarks.train_step)"]
    assert [row[:40].strip() for row in rows] == names
    assert all(row[41:47].strip() == "ok" for row in rows), rows
    assert "samples/s" in report and "TFLOP/s" in report and "all 63 steps" in report  # train_step's output
    assert not (tmp_path / ".gpu_check.txt.work").exists()


def test_prepare_writes_a_small_data_root(demo_root, tmp_path):
    carry = tmp_path / "carry"
    subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--prepare", str(carry), "--data_root",
                    str(demo_root), "--per_class", "1"], cwd=REPO, check=True, capture_output=True)
    folds = load_folds(carry)  # its train.csv and folds.csv agree
    assert set(folds["fold"]) == {1, 2, 3, 4} and len(folds) == 4 * folds["label"].nunique() * 2
    assert (carry / "specs_train_v1" / "manifest.json").is_file()
    assert len(list((carry / "specs_train_v1").glob("*.npy"))) == len(folds)
