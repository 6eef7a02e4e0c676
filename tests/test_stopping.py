"""Training until converged: the rule's parts, a tiny real run that stops before its cap and resumes exactly, and the
augmentations of the recipe for small data (the same batches on either data path)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

import train
from tests.test_gpu_options import Interrupted, assert_same_training, checkpoint, clips, interrupt_before_epoch
from utils import paths
from utils.augment import apply_augment, augments, check_augment, draw_augment
from utils.excerpt_source import DeviceExcerpts, HostExcerpts, draw_starts
from utils.folds import load_folds
from utils.launch.schedule import Preset, select_best_iterations
from utils.model_files import SHARED_SETTINGS, load_model_file, model_settings
from utils.training import EpochBatches, final_decay_span, inner_validation_split, lr_at, plateaued, resolve_stage

# the cpu preset's recipe, with a patience of 1 epoch so that a tiny run converges long before its cap
CONVERGING = """from utils.model_files import CPU_SETTINGS
from utils.vgg_gap import VGGGAP

SETTINGS = {**CPU_SETTINGS, "spec_version": 1, "gain_db": 3.0, "epochs": 40, "patience": 1,
            "final_decay_epochs": 2, "inner_valid_share": 0.2}


def build_model(n_classes):
    return VGGGAP(nf=2, n_classes=n_classes, dropout=0.1, dropout_head=0.2)
"""


# ---- the rule --------------------------------------------------------------------------------------------------

def test_final_decay_follows_the_plateau_or_ends_at_the_cap():
    assert final_decay_span(None, 40, 5) == (35, 40)  # no plateau yet: the decay that would end at the cap
    assert final_decay_span(12, 40, 5) == (12, 17)  # a plateau seen after 12 epochs: decay over 13..17, stop
    assert final_decay_span(38, 40, 5) == (35, 40)  # too late a plateau cannot pass the cap
    assert final_decay_span(None, 3, 5) == (0, 3)  # a cap shorter than the decay: all of it decays
    start, end = final_decay_span(12, 40, 5)
    assert [lr_at(e, 1.0, end, start) for e in range(11, 17)] == pytest.approx([1, 1, 0.8, 0.6, 0.4, 0.2])


def test_plateau_is_patience_epochs_without_a_new_best():
    assert not plateaued([1.0, 0.9, 0.8], 2)
    assert not plateaued([1.0, 0.8, 0.9], 2)
    assert plateaued([1.0, 0.8, 0.9, 0.85], 2)
    assert plateaued([1.0, 0.8, 0.8], 1)  # equal is no improvement


def test_inner_validation_is_stratified_verified_and_repeatable():
    part = pd.DataFrame({"fname": [f"{i}.wav" for i in range(43)],
                         "label": ["a"] * 20 + ["b"] * 20 + ["c"] * 2 + ["d"],
                         "manually_verified": [1] * 5 + [0] * 15 + [1] * 20 + [0, 0] + [1]})
    train_part, inner = inner_validation_split(part, 0.1, seed=1, fold=2)
    assert inner.groupby("label").size().to_dict() == {"a": 2, "b": 2, "c": 1}  # d: its one clip trains
    assert set(inner[inner["label"] != "c"]["manually_verified"]) == {1}  # verified clips where a class has them
    assert sorted(train_part["fname"].tolist() + inner["fname"].tolist()) == sorted(part["fname"])
    assert inner_validation_split(part, 0.1, seed=1, fold=2)[1].equals(inner)
    assert not inner_validation_split(part, 0.1, seed=1, fold=3)[1].equals(inner)  # each fold its own draw


def test_stage_records_the_rule_and_refuses_an_unknown_one():
    settings = model_settings(load_model_file("models/vgg_gap_cpu.py"))
    stage = resolve_stage(settings, False)
    assert (stage.stop_rule, stage.epochs, stage.patience) == ("converged", settings["epochs"], settings["patience"])
    assert resolve_stage(settings, True).epochs == settings["fine_tune_epochs"]
    assert resolve_stage(model_settings(load_model_file("models/vgg_gap_spec2.py")), False).stop_rule == "fixed"
    with pytest.raises(ValueError, match="unknown stop_rule 'soon'"):
        resolve_stage({**settings, "stop_rule": "soon"}, False)


# ---- a real run --------------------------------------------------------------------------------------------------

def converging_args(demo_root, exp_root, model, *extra):
    return ["--model", str(model), "--data_root", str(demo_root), "--exp_root", str(exp_root), "--device", "cpu",
            "--spec_dir", "specs_train_v1", "--max_len", "400", "--fold", "1", "--seed", "2", *extra]


@pytest.fixture
def converging_model(tmp_path):
    path = tmp_path / "converging.py"
    path.write_text(CONVERGING)
    return path


def test_converged_rule_stops_before_its_cap_and_resumes_exactly(demo_root, tmp_path, converging_model, monkeypatch,
                                                                   capsys):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    train.main(train.parse_args(converging_args(demo_root, whole, converging_model)))
    out = capsys.readouterr().out
    log = json.loads(paths.log_path(whole, converging_model, 1, "it0").read_text())
    history, config = log["history"], log["config"]
    assert log["finished"] and len(history) < 40, len(history)  # stopped by the rule, not the cap
    assert config["stop_rule"] == "converged" and config["n_inner"] > 0
    folds = load_folds(demo_root)
    assert config["n_train"] + config["n_inner"] == (folds["fold"] != 1).sum()  # the fold's training part, split
    # the plateau: the best inner loss was `patience` epochs before the decay began; then 2 epochs of decay
    inner = [r["inner_loss"] for r in history]
    plateau = log["plateau_at"]
    assert plateau == len(history) - 2 and int(np.argmin(inner[:plateau])) == plateau - 2
    assert [r["lr"] for r in history[-3:]] == pytest.approx([2e-3, 2e-3, 1e-3])  # lr_at's linear decay over 2
    assert "inner validation loss stopped improving" in log["stop_reason"]
    assert "training stopped: inner validation loss stopped improving" in out
    # the result is the last model, in both files; the reported fold chose nothing
    final = torch.load(paths.final_params_path(whole, converging_model, 1, "it0"), weights_only=True)
    params = torch.load(paths.params_path(whole, converging_model, 1, "it0"), weights_only=True)
    assert final["config"]["epoch"] == params["config"]["epoch"] == len(history)

    # interrupted after the plateau was seen (in the final decay), then resumed: the same run
    interrupt_before_epoch(monkeypatch, plateau + 1)
    with pytest.raises(Interrupted):
        train.main(train.parse_args(converging_args(demo_root, broken, converging_model)))
    monkeypatch.undo()
    assert checkpoint(broken, model=converging_model)["plateau_at"] == plateau
    train.main(train.parse_args(converging_args(demo_root, broken, converging_model)))
    a, b = checkpoint(whole, model=converging_model), checkpoint(broken, model=converging_model)
    assert_same_training(a, b)
    assert b["finished"] and b["stop_reason"] == a["stop_reason"]
    # started again when finished: nothing more is trained
    train.main(train.parse_args(converging_args(demo_root, broken, converging_model)))
    assert "already finished (inner validation loss stopped improving" in capsys.readouterr().out
    assert checkpoint(broken, model=converging_model)["epoch"] == len(history)

    # a changed rule is a changed setting: the checkpoint refuses it
    converging_model.write_text(CONVERGING.replace('"patience": 1', '"patience": 3'))
    with pytest.raises(ValueError, match="other settings.*patience"):
        train.main(train.parse_args(converging_args(demo_root, broken, converging_model, "--tag", "it0")))


def test_converged_rule_with_a_cap_shorter_than_its_decay(demo_root, tmp_path, converging_model):
    train.main(train.parse_args(converging_args(demo_root, tmp_path, converging_model, "--epochs", "1")))
    log = json.loads(paths.log_path(tmp_path, converging_model, 1, "it0").read_text())
    assert log["finished"] and len(log["history"]) == 1
    assert "reached the cap of 1 epochs" in log["stop_reason"]


# ---- the augmentations -----------------------------------------------------------------------------------------

def test_augmentations_are_off_in_the_writeups_recipe_and_draw_nothing():
    assert not augments(SHARED_SETTINGS)
    rng = np.random.default_rng(3)
    draws = draw_augment(rng, 4, 5, 64, SHARED_SETTINGS)
    assert rng.integers(1 << 30) == np.random.default_rng(3).integers(1 << 30)  # the batch's stream untouched
    x = torch.randn(4, 1, 5, 64)
    assert torch.equal(apply_augment(x, draws, None), x)


def test_masks_and_gain_do_what_they_say():
    settings = {**SHARED_SETTINGS, "freq_masks": 1, "freq_mask_bins": 3, "time_masks": 2, "time_mask_frames": 10,
                "gain_db": 6.0}
    draws = draw_augment(np.random.default_rng(0), 8, 20, 64, settings)
    x = torch.randn(8, 1, 20, 64)
    band = torch.linspace(0.5, 1.5, 20)
    y = apply_augment(x, draws, band)
    for i in range(8):
        masked = torch.zeros(20, 64, dtype=torch.bool)
        fs, fw = draws.freq[0][i, 0], draws.freq[1][i, 0]
        masked[fs:fs + fw] = True
        for ts, tw in zip(draws.time[0][i], draws.time[1][i], strict=True):
            assert 0 <= tw <= 10 and ts + tw <= 64
            masked[:, ts:ts + tw] = True
        expected = torch.where(masked, x[i, 0].mean(), x[i, 0]) + float(draws.gain_db[i]) * band[:, None]
        torch.testing.assert_close(y[i, 0], expected)
        assert abs(draws.gain_db[i]) <= 6.0


def test_augmented_batches_are_the_same_on_the_host_and_device_paths():
    settings = {**SHARED_SETTINGS, "freq_masks": 2, "freq_mask_bins": 2, "time_masks": 1, "time_mask_frames": 20}
    specs = clips(np.random.default_rng(5))
    host, device = HostExcerpts(specs, torch.device("cpu")), DeviceExcerpts(specs, torch.device("cpu"))
    for idx, batch_rng in EpochBatches(seed=1, epoch=0, n_items=len(specs), batch_size=4, world_size=1, rank=0):
        starts = draw_starts(batch_rng, len(idx), 100, 64)
        draws = draw_augment(batch_rng, len(idx), 5, 64, settings)
        assert torch.equal(apply_augment(host.cut(idx, starts, 64), draws, None),
                           apply_augment(device.cut(idx, starts, 64), draws, None))


def test_bad_augmentation_settings_are_refused():
    with pytest.raises(ValueError, match="gain_db needs spectrogram version 1"):
        check_augment({**SHARED_SETTINGS, "spec_version": 2, "gain_db": 3.0})
    with pytest.raises(ValueError, match="time_masks and time_mask_frames must be at least 0"):
        check_augment({**SHARED_SETTINGS, "time_masks": -1})


# ---- the iteration each report scores ----------------------------------------------------------------------------

def write_log(exp_root, model, fold, tag, rule, valid_losses, valid_accs, inner_losses=None):
    history = [{"valid_loss": v, "valid_acc": a, **({"inner_loss": i} if inner_losses else {})}
               for v, a, i in zip(valid_losses, valid_accs, inner_losses or valid_losses, strict=True)]
    path = paths.log_path(exp_root, model, fold, tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"config": {"stop_rule": rule}, "history": history, "finished": True}))


def test_iterations_are_chosen_without_the_reported_folds_under_the_converged_rule(tmp_path):
    model = "models/vgg_gap_cpu.py"
    preset = Preset(models=((model, "specs_train_v1"),), max_len=400, iterations=1, top_probs_thresh=0.3,
                    k_per_class=4, n_excerpts=2)
    for k in (1, 2):  # it1 is better on the reported folds' validation loss, it0 on the inner clips
        write_log(tmp_path, model, k, "it0", "converged", [0.9, 0.8], [0.6, 0.7], [0.5, 0.4])
        write_log(tmp_path, model, k, "it1", "converged", [0.5, 0.6], [0.8, 0.75], [0.6, 0.7])
    best = select_best_iterations(preset, tmp_path, 1, [1, 2])["vgg_gap_cpu"]
    assert (best["tag"], best["honest_tag"], best["writeup_tag"]) == ("it0", "it0", "it1")
    assert best["valid_acc"] == pytest.approx(0.7)  # it0's final models on the reported folds
    assert best["writeup_valid_acc"] == pytest.approx(0.8)  # it1's best epoch, chosen on those folds

    fixed = tmp_path / "fixed"  # the writeup's schedule: chosen on the reported folds; honest: the last iteration
    for k in (1, 2):
        write_log(fixed, model, k, "it0", "fixed", [0.5, 0.6], [0.8, 0.75])
        write_log(fixed, model, k, "it1", "fixed", [0.9, 0.8], [0.6, 0.7])
    best = select_best_iterations(preset, fixed, 1, [1, 2])["vgg_gap_cpu"]
    assert (best["tag"], best["honest_tag"], best["writeup_tag"]) == ("it0", "it1", "it0")


def test_the_recipe_benchmark_reports_each_arm_against_the_linear_baseline(tmp_path):
    from benchmarks import cpu_recipe

    model = cpu_recipe.arm_model(tmp_path, "no_masks")
    settings = model_settings(load_model_file(model))
    assert settings["freq_masks"] == settings["time_masks"] == 0 and settings["stop_rule"] == "converged"
    assert model_settings(load_model_file(cpu_recipe.arm_model(tmp_path, "fixed")))["stop_rule"] == "fixed"
    run = {"acc": 0.9, "fold_accs": [0.9], "epochs": [30], "seconds": 60.0}
    results = {"data_root": "d", "n_folds": 1, "seeds": [1, 2], "linear": {"acc": 0.7, "seconds": 2.0},
               "arms": {"recipe": {"1": run, "2": {**run, "acc": 0.8}}}}
    lines = cpu_recipe.report(results).splitlines()
    assert lines[2].split() == ["recipe", "0.850", "0.050", "30.0", "60"]
    assert lines[3].split()[:2] == ["linear", "0.700"]
