"""The whole evaluation on the real FSDKaggle2018 test set's shape (Ignored padding rows labelled None, empty
and unreadable wavs, one of them scored), from a finished demo schedule to the submission and its scores."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

import evaluate_experiment_set
from utils.demo.dataset import PARAMS_FILE
from utils.results import load_results


def test_evaluate_experiment_set_predicts_every_test_row(demo_root: Path, local_demo_schedule, tmp_path, capsys):
    assert local_demo_schedule.resumed.returncode == 0
    exp = tmp_path / "exp"  # a copy: the schedule's own folder is compared with the SLURM run's elsewhere
    shutil.copytree(local_demo_schedule.exp, exp)
    evaluate_experiment_set.main(evaluate_experiment_set.parse_args(
        ["--data_root", str(demo_root), "--exp_root", str(exp)]))
    out, err = capsys.readouterr()

    test = pd.read_csv(demo_root / "test_post_competition.csv", keep_default_na=False)
    stats = json.loads((demo_root / PARAMS_FILE).read_text())["stats"]
    broken = set(stats["broken_wavs"])
    assert (test["usage"] == "Ignored").any() and (test.loc[test["usage"] == "Ignored", "label"] == "None").all()
    assert set(stats["broken_scored"]) and set(stats["broken_scored"]) <= broken

    # the submission: exactly the test CSV's rows, in its order, three known labels each
    sub = pd.read_csv(exp / "submission.csv", keep_default_na=False)
    assert list(sub.columns) == ["fname", "label"] and sub["fname"].tolist() == test["fname"].tolist()
    assert all(len(labels.split()) == 3 for labels in sub["label"])

    # the broken clips carry the class prior, marked, through every fold's file and the fusion
    fused = load_results(exp / "fused_all.npz")
    assert fused.fnames.tolist() == test["fname"].tolist()
    assert set(fused.fnames[fused.missing].tolist()) == broken
    assert np.isfinite(fused.probs).all() and np.allclose(fused.probs.sum(axis=1), 1, atol=1e-5)
    assert "have no spectrogram" in err and "warning:" in err

    # scored on every leaderboard part, the broken scored clip included (a miss or a lucky prior)
    summary = out[out.index("Summary"):]
    assert "fusion of all" in summary
    fusion_row = [line for line in summary.splitlines() if line.startswith("fusion of all")][0]
    scores = [float(v) for v in fusion_row.split()[-3:]]
    assert all(0 < s <= 1 for s in scores)
    # the linear baseline on the same rows, its broken clips given the class prior as the nets' are
    linear_row = [line for line in summary.splitlines() if line.startswith("linear_baseline")][0]
    assert all(0 < float(v) <= 1 for v in linear_row.split()[-3:])
    linear = load_results(exp / "fused_linear_baseline.npz")
    assert linear.fnames.tolist() == test["fname"].tolist() and set(linear.fnames[linear.missing]) == broken
    assert (exp / "submission_linear_baseline.csv").is_file()
