"""Self-verification's acceptance rules, its fold discipline, and the schedule that iterates it."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import self_verify
import train
from run_experiment_set import main as run_set
from run_experiment_set import parse_args as set_args
from tests.conftest import demo_schedule_args
from tests.helpers import write_train_csv
from utils import paths
from utils.dataset_csv import read_train_csv
from utils.errors import InputError
from utils.folds import load_folds
from utils.launch.schedule import PRESETS, build_schedule
from utils.paths import REPO
from utils.predict import predict_excerpts
from utils.self_verification import accept, threshold_sweep
from utils.spec_data import random_excerpt

DEMO = "models/vgg_gap_demo.py"


def test_accept_all_three_conditions():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.97, 0.03], [0.96, 0.04], [0.6, 0.4], [0.01, 0.99]])
    assert list(accept(labels, probs, 0.95, 40)) == [True, True, False, True]
    # (1) alone: the prediction disagrees with the given label, however confident
    assert not accept(np.array([1]), np.array([[0.99, 0.01]]), 0.0, 40)[0]
    # (2) alone: right class but below the threshold
    assert not accept(np.array([0]), np.array([[0.9, 0.1]]), 0.95, 40)[0]
    # (3) alone: the class cap is full; the highest posteriors are taken first
    assert list(accept(labels, probs, 0.95, 1)) == [True, False, False, True]
    # threshold 0 reproduces the seed code: agreement and cap only
    assert list(accept(labels, probs, 0.0, 40)) == [True, True, False, True]
    assert list(accept(np.array([0]), np.array([[0.5, 0.5 - 1e-6]]), 0.0, 40)) == [True]


def test_threshold_sweep_counts_and_precision():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.97, 0.03], [0.6, 0.4], [0.2, 0.8], [0.01, 0.99]])
    correct = np.array([True, False, True, False])  # clip 1's and clip 3's given labels are wrong
    sweep = threshold_sweep(labels, probs, 40, correct, thresholds=(0.5, 0.9, 0.98))
    assert sweep == [{"threshold": 0.5, "accepted": 4, "precision": 0.5},
                     {"threshold": 0.9, "accepted": 2, "precision": 0.5},
                     {"threshold": 0.98, "accepted": 1, "precision": 0.0}]
    assert threshold_sweep(labels, probs, 1, None, thresholds=(0.5,)) == [{"threshold": 0.5, "accepted": 2}]
    assert np.isnan(threshold_sweep(labels, probs, 40, correct, thresholds=(0.999,))[0]["precision"])


class BandMeans(torch.nn.Module):
    """Logits = each band's mean over the excerpt's frames: the answer to any input is known in advance."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=3)[:, 0]


def softmax_np(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def test_excerpt_posteriors_are_the_mean_of_the_excerpts_softmaxes():
    rng = np.random.default_rng(0)
    # lengths below, at and above max_len (20); 3 bands = 3 classes
    specs = [rng.normal(scale=2.0, size=(3, n)).astype(np.float32) for n in (7, 20, 33, 12)]
    probs = predict_excerpts(BandMeans(), specs, 20, 5, 6, torch.device("cpu"), np.random.default_rng(42))
    twin = np.random.default_rng(42)  # the same draws, clip by clip, excerpt by excerpt
    expected, from_mean_logits = [], []
    for spec in specs:
        excerpts = [random_excerpt(spec, 20, 5, twin) for _ in range(6)]
        expected.append(np.mean([softmax_np(e.mean(axis=1)) for e in excerpts], axis=0))
        from_mean_logits.append(softmax_np(np.mean([e.mean(axis=1) for e in excerpts], axis=0)))
    assert probs.shape == (4, 3)
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    # averaging posteriors is not averaging logits: the test tells the two apart
    assert np.abs(np.array(from_mean_logits) - probs).max() > 1e-2


def test_excerpt_posteriors_do_not_depend_on_the_batching():
    rng = np.random.default_rng(1)
    specs = [rng.normal(size=(3, n)).astype(np.float32) for n in (4, 9, 15, 30, 2, 11, 20)]
    runs = [predict_excerpts(BandMeans(), specs, 16, 5, 4, torch.device("cpu"), np.random.default_rng(7),
                             batch_excerpts_max=per_pass) for per_pass in (1, 4, 9, 12, 1000)]
    for other in runs[1:]:  # one clip per pass, clips split over passes, all at once
        np.testing.assert_allclose(other, runs[0], atol=1e-6)


@pytest.fixture(scope="module")
def it0(demo_root, tmp_path_factory):
    """A tiny pretrained it0 for all four folds."""
    exp = tmp_path_factory.mktemp("exp")
    for fold in range(1, 5):
        train.main(train.parse_args(["--model", DEMO, "--data_root", str(demo_root), "--exp_root", str(exp),
                                     "--spec_dir", "specs_train_v1", "--max_len", "800", "--fold", str(fold),
                                     "--epochs", "6"]))
    return exp


def run_self_verify(demo_root, exp, *extra):
    return self_verify.main(self_verify.parse_args([
        "--model", DEMO, "--data_root", str(demo_root), "--exp_root", str(exp), "--spec_dir", "specs_train_v1",
        "--max_len", "800", "--tag", "it0", "--train_file", "train_self_verified_it0.csv", *extra]))


def test_only_held_out_unverified_clips_are_scored(demo_root, it0):
    run_self_verify(demo_root, it0, "--stochastic", "--n_excerpts", "5", "--top_probs_thresh", "0.5")
    out = paths.run_dir(it0, DEMO) / "train_self_verified_it0.csv"
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    train_df = read_train_csv(demo_root / "train.csv")
    folds = load_folds(demo_root)
    assert summary["totals"]["candidates"] == int((train_df["manually_verified"] == 0).sum())
    per_fold = pd.read_csv(out).merge(folds, on="fname")
    assert len(per_fold) == len(train_df)
    # the written file keeps train.csv's columns and rows; accepted clips were unverified before
    written = read_train_csv(out)
    assert list(written.columns) == list(train_df.columns)
    newly = written["manually_verified"].to_numpy() > train_df["manually_verified"].to_numpy()
    assert newly.sum() == summary["totals"]["accepted"]
    assert (written["label"] == train_df["label"]).all()
    assert "acceptance_precision" in summary["totals"]
    # the sweep: what each threshold would have accepted from the same posteriors, the run's own among them
    sweep = {r["threshold"]: r for r in summary["thresholds"]}
    assert sweep[0.5]["accepted"] == summary["totals"]["accepted"]
    counts = [r["accepted"] for r in summary["thresholds"]]
    assert counts == sorted(counts, reverse=True) and counts[0] > 0
    assert all(0 <= r["precision"] <= 1 for r in summary["thresholds"] if r["accepted"])


def test_clip_never_scored_by_a_model_that_trained_on_it(demo_root, it0, monkeypatch):
    loaded = []  # (fold the loaded params were trained on, their file name), in loading order
    scored = []  # (fold of the model loaded last, the clips whose spectrograms were read for it)
    real_load, real_specs = self_verify.load_trained_model, self_verify.load_spectrograms

    def load_spy(model_file, params_file):
        model, config = real_load(model_file, params_file)
        loaded.append((config["fold"], Path(params_file).name))
        return model, config

    def specs_spy(spec_dir, fnames, max_len):
        scored.append((loaded[-1][0], list(fnames)))
        return real_specs(spec_dir, fnames, max_len)

    monkeypatch.setattr(self_verify, "load_trained_model", load_spy)
    monkeypatch.setattr(self_verify, "load_spectrograms", specs_spy)
    run_self_verify(demo_root, it0)
    # fold k's own params (recorded as trained on fold k), not one model for all folds
    assert loaded == [(k, f"params_{k}_it0.pt") for k in range(1, 5)]
    folds = load_folds(demo_root).set_index("fname")
    assert [k for k, _ in scored] == [1, 2, 3, 4]
    for k, fnames in scored:  # each model reads only the unverified clips held out of its own training
        assert set(folds.loc[fnames, "fold"]) == {k} and set(folds.loc[fnames, "verified"]) == {0}
    every = [f for _, fnames in scored for f in fnames]
    assert sorted(every) == sorted(folds.index[folds["verified"] == 0])  # each unverified clip once


def test_self_verified_file_round_trips_through_train(demo_root, it0):
    run_self_verify(demo_root, it0, "--top_probs_thresh", "0")
    train.main(train.parse_args(["--model", DEMO, "--data_root", str(demo_root), "--exp_root", str(it0),
                                 "--spec_dir", "specs_train_v1", "--max_len", "800", "--fold", "1", "--epochs", "1",
                                 "--fine_tune", "--ini_params", "params_%d_it0", "--tag", "it1",
                                 "--train_file", "train_self_verified_it0.csv"]))
    log = json.loads(paths.log_path(it0, DEMO, 1, "it1").read_text())
    pre = json.loads(paths.log_path(it0, DEMO, 1, "it0").read_text())
    assert log["finished"] and log["config"]["n_valid"] == pre["config"]["n_valid"]


def test_full_schedule_has_63_steps(tmp_path):
    write_train_csv(tmp_path)
    steps = build_schedule(PRESETS["full"], "all", tmp_path, tmp_path)
    assert len(steps) == 63
    assert [s.name for s in steps[:4]] == ["pretrain_vgg_gap_spec2", "pretrain_vgg_gap_spec1_1",
                                           "pretrain_vgg_gap_spec1_2", "self_verify_vgg_gap_spec2_it0"]
    assert steps[-1].name == "finetune_vgg_gap_spec1_2_it10"
    assert len(build_schedule(PRESETS["full"], "pretrain", tmp_path, tmp_path)) == 3
    assert len(build_schedule(PRESETS["full"], "finetune", tmp_path, tmp_path)) == 60


def test_controls_fine_tune_on_train_csv_with_their_own_tags(tmp_path):
    write_train_csv(tmp_path)
    preset = PRESETS["medium"]
    for control, tag, train_on in (("all_labels", "base", "all"), ("verified_only", "ver", "verified")):
        steps = build_schedule(preset, "finetune", tmp_path, tmp_path, 2, control=control)
        assert [s.tag for s in steps] == [f"{tag}1", f"{tag}2"]  # no self-verification step
        for s in steps:
            assert s.command[s.command.index("--train_file") + 1] == "train.csv"
            assert s.command[s.command.index("--train_on") + 1] == train_on
            assert s.settings["train_on"] == train_on
        assert steps[1].command[steps[1].command.index("--ini_params") + 1] == f"params_%d_{tag}1"
    with pytest.raises(InputError, match="unknown control 'none'"):
        build_schedule(preset, "finetune", tmp_path, tmp_path, control="none")
    # the threshold given replaces the preset's in the verification step and in what its output records
    verify = build_schedule(preset, "finetune", tmp_path, tmp_path, 1, top_probs_thresh=0.7)[0]
    assert verify.name.startswith("self_verify_")
    assert verify.command[verify.command.index("--top_probs_thresh") + 1] == "0.7"
    assert verify.settings["top_probs_thresh"] == 0.7
    with pytest.raises(InputError, match="--top_probs_thresh must be in"):
        run_set(set_args(["--preset", "medium", "--top_probs_thresh", "1.5", "--data_root", str(tmp_path),
                          "--exp_root", str(tmp_path / "exp")]))


def test_dry_run_prints_every_step(tmp_path, capsys):
    write_train_csv(tmp_path / "data")
    run_set(set_args(["--experiment_set", "all", "--dry_run", "--exp_root", str(tmp_path), "--data_root",
                      str(tmp_path / "data")]))
    out = capsys.readouterr().out
    assert out.count("Running experiment (") == 63 and "Running experiment (63 / 63)" in out
    assert out.count("run_experiment.sh") == 33  # 3 pretrain + 30 fine-tune steps go through the fold runner


def test_demo_schedule_end_to_end_and_resume(demo_root, local_demo_schedule):
    exp, done = local_demo_schedule.exp, local_demo_schedule.resumed
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    first = [paths.log_path(exp, DEMO, k, "it0") for k in range(1, 5)]
    assert "skip pretrain_vgg_gap_demo: outputs exist" in done.stdout  # killed after its first step
    assert [p.stat().st_mtime for p in first] == local_demo_schedule.first_step_mtimes
    assert "Running experiment (6 / 6)" in done.stdout
    best = json.loads((exp / "best_iterations.json").read_text())
    assert set(best) == {"vgg_gap_demo", "vgg_gap_demo_v2"}
    for b in best.values():  # the figures are the logs' (the rule itself: tests/test_schedule.py)
        for tag in ("it0", "it1"):
            fold_best = [min(row["valid_loss"] for row in json.loads(log.read_text())["history"])
                         for log in (paths.log_path(exp, b["model"], k, tag) for k in range(1, 5))]
            assert b["iterations"][tag]["valid_loss"] == pytest.approx(np.mean(fold_best))
    for model in ("models/vgg_gap_demo.py", "models/vgg_gap_demo_v2.py"):
        for k in range(1, 5):
            assert json.loads(paths.log_path(exp, model, k, "it1").read_text())["finished"]
    again = subprocess.run(demo_schedule_args(demo_root, exp), cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0 and again.stdout.count("skip ") == 6
