"""A researcher's own data set, end to end: other data sets' layouts built from the embedded default's audio, with
other data sets' kinds of class names, taken through import, spectrograms, the demo schedule, evaluation, a bundle
and tag_files.py. ESC-50's 5 predefined folds with clean labels and no test split (cross-validation figures); an
FSDnoisy18k-like set with a noisy part and a test split scored whole (4 folds made here, self-verification);
a CSV with a 10-value fold column (every consumer counts 10 folds)."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import eval as eval_script
import prepare_spectrograms
import train as train_script
from tests.conftest import demo_schedule_args
from utils import paths
from utils.demo.dataset import PARAMS_FILE
from utils.errors import DataError
from utils.folds import fold_numbers, load_folds
from utils.launch.schedule import PRESETS, build_schedule
from utils.launch.slurm import batch_script
from utils.paths import REPO

# the embedded default's classes under the names other data sets give theirs: spaces, accents, parentheses, case
NAMES = {"Bass_drum": "bass drum (kick)", "Flute": "Flûte traversière", "Glockenspiel": "glockenspiel",
         "Hi-hat": "Hi-hat, closed", "Trumpet": "trumpet in B♭"}


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=900)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def demo_tables(demo_root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The default's train rows (labels renamed) and its scored, readable test rows."""
    train = pd.read_csv(demo_root / "train.csv")
    for column in ("label", "true_label"):
        train[column] = train[column].map(NAMES)
    test = pd.read_csv(demo_root / "test_post_competition.csv")
    broken = set(json.loads((demo_root / PARAMS_FILE).read_text())["stats"]["broken_wavs"])
    test = test[(test["usage"] != "Ignored") & ~test["fname"].isin(broken)].copy()
    test["label"] = test["label"].map(NAMES)
    return train, test


def link_audio(src_dir: Path, fnames, dst_dir: Path, rename=lambda f: f) -> None:
    dst_dir.mkdir(parents=True, exist_ok=True)
    for f in fnames:
        shutil.copy(src_dir / f, dst_dir / rename(f))


def prepare(root: Path, splits: tuple[str, ...], versions: tuple[int, ...] = (1, 2)) -> None:
    """Spectrograms of each split, as README 'Your own data' does."""
    for split in splits:
        for version in versions:
            code = prepare_spectrograms.main(prepare_spectrograms.parse_args([
                "--audio_path", str(root / f"audio_{split}"), "--out_dir", str(root / f"specs_{split}_v{version}"),
                "--spec_version", str(version), "--dump", "--jobs", "2", "--no_progress"]))
            assert code == 0


def schedule_bundle_and_tags(root: Path, exp: Path, files: list[Path], preset: str = "demo") -> tuple[str,
                                                                                                   pd.DataFrame]:
    """The tiny schedule of a preset, evaluate_experiment_set.py, a bundle of its best iterations and tags of
    `files`; returns the evaluation's output and the tags."""
    proc = subprocess.run(demo_schedule_args(root, exp, "--preset", preset), cwd=REPO, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    evaluation = run("evaluate_experiment_set.py", "--data_root", str(root), "--exp_root", str(exp)).stdout
    run("export_bundle.py", "--exp_root", str(exp), "--out", str(exp / "bundle.pt"))
    run("tag_files.py", "--bundle", str(exp / "bundle.pt"), *map(str, files), "--out", str(exp / "tags.csv"))
    tags = pd.read_csv(exp / "tags.csv", keep_default_na=False)
    return proc.stdout + evaluation, tags


def test_esc50_five_folds_clean_labels_no_test_split(demo_root, tmp_path):
    train, _ = demo_tables(demo_root)
    src = tmp_path / "ESC-50-master"
    link_audio(demo_root / "audio_train", train["fname"], src / "audio")
    # ESC-50's columns; folds 1..5 stratified by hand, as the data set ships them
    train["fold"] = train.groupby("true_label").cumcount() % 5 + 1
    classes = sorted(NAMES.values())
    meta = pd.DataFrame({"filename": train["fname"], "fold": train["fold"],
                         "target": [classes.index(c) for c in train["true_label"]], "category": train["true_label"],
                         "esc10": "False", "src_file": range(len(train)), "take": "A"})
    (src / "meta").mkdir()
    meta.to_csv(src / "meta" / "esc50.csv", index=False)

    root, exp = tmp_path / "esc50 data", tmp_path / "exp"
    run("import_dataset.py", "esc50", str(src), "--data_root", str(root))
    folds = load_folds(root)
    assert fold_numbers(folds) == [1, 2, 3, 4, 5] and (folds["verified"] == 1).all()
    assert sorted(set(folds["label"])) == classes
    prepare(root, ("train",))

    # own data on a CPU: the cpu preset, its nets trained until converged (here capped at one epoch)
    output, tags = schedule_bundle_and_tags(root, exp, [root / "audio_train" / f for f in train["fname"][:3]],
                                            preset="cpu")
    assert "self-verification has nothing to verify" in output
    for model in ("vgg_gap_cpu", "vgg_gap_cpu_v2"):  # five folds pretrained, no fine-tuning iteration
        run_dir = exp / model
        assert sorted(p.name for p in run_dir.glob("params_*.pt")) == [f"params_{k}_it0.pt" for k in range(1, 6)]
        assert sorted(p.name for p in run_dir.glob("final_*.pt")) == [f"final_{k}_it0.pt" for k in range(1, 6)]
        assert not list(run_dir.glob("train_self_verified_*"))
    best = json.loads((exp / "best_iterations.json").read_text())
    assert all(choice["folds"] == [1, 2, 3, 4, 5] for choice in best.values())
    assert all(choice["chosen_by"] == "inner validation loss" for choice in best.values())
    # no test split: the cross-validation figures, each fold and their mean and spread, nothing chosen on the
    # reported folds; the writeup's choice after them; the linear baseline on the same folds
    assert "Cross-validation (5 folds)" in output and "no test split" in output
    assert "nothing, neither epoch nor iteration, is chosen on the clips scored" in output
    fused = next(line for line in output.splitlines() if line.startswith("fusion of all"))
    assert len(fused.split()) == 3 + 4 + 5 + 1  # label (3 words), mean +- spread twice, 5 fold cells, no writeup
    linear = next(line for line in output.splitlines() if line.startswith("linear baseline (all labels)"))
    assert len(linear.split()) == 4 + 4 + 5 + 1
    assert 0 < float(linear.split()[4]) <= 1
    assert not list(exp.glob("submission*.csv"))
    assert len(tags) == 3 and set(tags["label_1"]) <= set(classes)


def test_fsdnoisy18k_noisy_part_and_a_test_split_scored_whole(demo_root, tmp_path):
    train, test = demo_tables(demo_root)
    src = tmp_path / "FSDnoisy18k"
    link_audio(demo_root / "audio_train", train["fname"], src / "FSDnoisy18k.audio_train")
    link_audio(demo_root / "audio_test", test["fname"], src / "FSDnoisy18k.audio_test")
    (src / "FSDnoisy18k.meta").mkdir()
    train.assign(aso_id="/m/0", noisy_small=1 - train["manually_verified"])[
        ["fname", "label", "aso_id", "manually_verified", "noisy_small"]].to_csv(
        src / "FSDnoisy18k.meta" / "train.csv", index=False, quoting=csv.QUOTE_MINIMAL)
    test.assign(aso_id="/m/0")[["fname", "label", "aso_id"]].to_csv(src / "FSDnoisy18k.meta" / "test.csv",
                                                                    index=False)

    root, exp = tmp_path / "noisy", tmp_path / "exp"
    run("import_dataset.py", "fsdnoisy18k", str(src), "--data_root", str(root))
    assert not (root / "folds.csv").exists()  # no folds of its own: the writeup's 4 are made on first use
    assert (root / "test.csv").is_file() and not (root / paths.KAGGLE_TEST_CSV).exists()
    prepare(root, ("train", "test"))

    output, tags = schedule_bundle_and_tags(root, exp, [root / "audio_test" / f for f in test["fname"][:4]])
    assert fold_numbers(load_folds(root)) == [1, 2, 3, 4]
    summary = json.loads((exp / "vgg_gap_demo" / "train_self_verified_it0.summary.json").read_text())
    assert summary["totals"]["candidates"] == (train["manually_verified"] == 0).sum()
    assert "Cross-validation (4 folds)" in output
    assert f"The ensemble on the whole test split ({len(test)} clips)" in output
    # the linear baseline, trained on every training clip, scored on the same test rows as the nets
    linear = next(line for line in output.splitlines() if line.startswith("linear_baseline "))
    assert len(linear.split()) == 3 and 0 < float(linear.split()[1]) <= 1  # name, test acc, test MAP@3
    assert (exp / "fused_linear_baseline.npz").is_file()
    for name in NAMES.values():  # the per-class table names the data set's own classes
        assert name in output
    assert (exp / "cmatrix_test_fused_all.png").stat().st_size > 0
    assert not list(exp.glob("submission*.csv"))  # no Kaggle steps without Kaggle's test CSV
    assert len(tags) == 4 and set(tags["label_1"]) <= set(NAMES.values())


def test_a_csv_with_ten_folds_reaches_every_consumer(demo_root, tmp_path, capsys):
    train, _ = demo_tables(demo_root)
    src = tmp_path / "recordings"
    train["site"] = ["north" if i % 2 else "south" for i in range(len(train))]
    train["file_id"] = train["fname"].str.removesuffix(".wav")
    train["fold"] = [f"f{k:02d}" for k in train.groupby("true_label").cumcount() % 10]  # not numbers: mapped
    for site, part in train.groupby("site"):
        link_audio(demo_root / "audio_train", part["fname"], src / "recordings" / site)
    train[["site", "file_id", "true_label", "fold"]].rename(columns={"true_label": "species"}).to_csv(
        src / "meta.csv", index=False)

    root, exp = tmp_path / "ten", tmp_path / "exp"
    run("import_dataset.py", "csv", str(src), "--data_root", str(root), "--csv", "meta.csv",
        "--audio_path", "recordings/{site}/{file_id}.wav", "--label_column", "species", "--fold_column", "fold")
    assert fold_numbers(load_folds(root)) == list(range(1, 11))
    # in this process: a subprocess per refusal would import torch each time
    train_script.main(train_script.parse_args(["--model", "models/vgg_gap_demo.py", "--spec_dir", "specs_train_v1",
                                 "--data_root", str(root), "--list_folds"]))
    assert capsys.readouterr().out.split() == [str(k) for k in range(1, 11)]
    steps = build_schedule(PRESETS["demo"], "all", root, exp, 1)
    assert all(step.folds == list(range(1, 11)) for step in steps)
    assert [s.name for s in steps] == ["pretrain_vgg_gap_demo", "pretrain_vgg_gap_demo_v2"]  # all verified
    assert "#SBATCH --array=1-10" in batch_script(steps[0], 1, len(steps), exp, {})
    with pytest.raises(ValueError, match=r"--fold must be in 1\.\.10"):
        train_script.main(train_script.parse_args(["--model", "models/vgg_gap_demo.py", "--spec_dir", "specs_train_v1",
                                     "--data_root", str(root), "--fold", "11"]))
    prepare(root, ("train",), versions=(1,))
    run("train.py", "--model", "models/vgg_gap_demo.py", "--spec_dir", "specs_train_v1", "--fold", "10",
        "--epochs", "1", "--max_len", "1500", "--data_root", str(root), "--exp_root", str(exp))
    out = run("eval.py", "--model", "models/vgg_gap_demo.py", "--fold", "10", "--set", "valid",
              "--data_root", str(root), "--exp_root", str(exp)).stdout
    assert "MAP@3" in out and "trumpet in B♭" in out
    with pytest.raises(DataError, match="has no test split"):
        eval_script.main(eval_script.parse_args(["--model", "models/vgg_gap_demo.py", "--fold", "10", "--set", "test",
                                                 "--data_root", str(root), "--exp_root", str(exp)]))
