"""The schedule's choice of each model's best iteration, read from training logs written by hand."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from utils import paths
from utils.launch.schedule import PRESETS, select_best_iterations

A, B, UNTRAINED = "models/vgg_gap_demo.py", "models/vgg_gap_demo_v2.py", "models/vgg_gap_spec2.py"
PRESET = dataclasses.replace(PRESETS["demo"], models=((A, "specs_train_v1"), (B, "specs_train_v2"),
                                                      (UNTRAINED, "specs_train_v2")))


def write_log(exp: Path, model: str, fold: int, tag: str, losses: list[float], accs: list[float],
              finished: bool = True) -> None:
    """A results_<fold>_<tag>.json as train.py writes it: one history row per epoch."""
    history = [{"epoch": i + 1, "train_loss": 1.0, "train_acc": 0.5, "valid_loss": loss, "valid_acc": acc,
                "lr": 1e-3, "seconds": 1.0} for i, (loss, acc) in enumerate(zip(losses, accs, strict=True))]
    path = paths.log_path(exp, model, fold, tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"config": {"fold": fold, "tag": tag}, "history": history, "finished": finished,
                                "best_valid_loss": min(losses)}))


def write_iteration(exp: Path, model: str, tag: str, best: list[float], last: float, best_accs: list[float],
                    unfinished_fold: int | None = None) -> None:
    """Four folds of one iteration: fold k's lowest valid loss is best[k-1] (epoch 2, accuracy best_accs[k-1]),
    and every fold ends at `last`."""
    assert last >= max(best)
    for k in range(1, 5):
        write_log(exp, model, k, tag, [best[k - 1] + 0.3, best[k - 1], last], [0.1, best_accs[k - 1], 0.2],
                  finished=k != unfinished_fold)


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    # A: it2 has the lowest mean of the folds' best losses (0.7), though it1 holds the single best fold (0.4) and
    # ends lower (0.92 against 0.95); it3 would win (0.1) but its fold 4 has not finished
    write_iteration(tmp_path, A, "it0", [1.0, 1.0, 1.0, 1.0], 1.2, [0.4, 0.4, 0.4, 0.4])
    write_iteration(tmp_path, A, "it1", [0.4, 0.9, 0.9, 0.9], 0.92, [0.9, 0.5, 0.5, 0.5])
    write_iteration(tmp_path, A, "it2", [0.7, 0.7, 0.7, 0.7], 0.95, [0.5, 0.6, 0.7, 0.8])
    write_iteration(tmp_path, A, "it3", [0.1, 0.1, 0.1, 0.1], 0.1, [1.0, 1.0, 1.0, 1.0], unfinished_fold=4)
    # B: it0 and it1 tie on the mean (0.5, exactly in binary) through different folds: the earlier one is kept
    write_iteration(tmp_path, B, "it0", [0.5, 0.5, 0.5, 0.5], 0.9, [0.6, 0.6, 0.6, 0.6])
    write_iteration(tmp_path, B, "it1", [0.25, 0.75, 0.5, 0.5], 0.9, [0.7, 0.7, 0.7, 0.7])
    return tmp_path


def test_best_iteration_is_the_lowest_mean_of_the_folds_best_losses(logs: Path) -> None:
    choice = select_best_iterations(PRESET, logs, iterations=3, folds=[1, 2, 3, 4])
    a = choice["vgg_gap_demo"]
    assert a["tag"] == "it2" and a["model"] == A and a["spec_dir"] == "specs_train_v1"
    assert sorted(a["iterations"]) == ["it0", "it1", "it2"]  # it3 is unfinished
    assert a["valid_loss"] == pytest.approx(0.7)
    assert a["iterations"]["it1"]["valid_loss"] == pytest.approx(0.775)
    # the accuracy reported is that of each fold's best-loss epoch, not of its last epoch
    assert a["valid_acc"] == pytest.approx(0.65)
    assert a["valid_acc_std"] == pytest.approx(np.std([0.5, 0.6, 0.7, 0.8]))
    # the file evaluation and fusion read holds the same choice
    assert json.loads((logs / "best_iterations.json").read_text()) == choice


def test_a_tie_keeps_the_earlier_iteration(logs: Path) -> None:
    b = select_best_iterations(PRESET, logs, iterations=3, folds=[1, 2, 3, 4])["vgg_gap_demo_v2"]
    assert b["iterations"]["it0"]["valid_loss"] == b["iterations"]["it1"]["valid_loss"] == 0.5
    assert b["tag"] == "it0"


def test_iterations_beyond_the_schedule_and_untrained_models_are_left_out(logs: Path) -> None:
    choice = select_best_iterations(PRESET, logs, iterations=1, folds=[1, 2, 3, 4])
    assert set(choice) == {"vgg_gap_demo", "vgg_gap_demo_v2"}  # no log of the third model at all
    assert choice["vgg_gap_demo"]["tag"] == "it1" and sorted(choice["vgg_gap_demo"]["iterations"]) == ["it0", "it1"]
