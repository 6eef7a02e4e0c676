"""benchmarks/self_verification.py's parts: the linear baseline, the threshold rule, the table and the figure."""

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from benchmarks import self_verification as bench
from benchmarks.linear_baseline import cross_validate
from utils import paths
from utils.folds import fold_numbers, load_folds
from utils.linear_baseline import clip_features


def test_clip_features_are_band_statistics():
    spec = np.arange(12, dtype=np.float32).reshape(2, 6)  # 2 bands, 6 frames
    features = clip_features([spec, spec + 1])
    assert features.shape == (2, 6)
    assert np.allclose(features[0], [2.5, 8.5, spec[0].std(), spec[1].std(), 4.5, 10.5])
    assert np.allclose(features[1, :2], [3.5, 9.5])


def test_linear_baseline_learns_on_the_default(demo_root):
    results = cross_validate(demo_root, ["specs_train_v1", "specs_train_v2"])
    n_folds, n_classes = len(fold_numbers(load_folds(demo_root))), 5
    for arm in ("all_labels", "verified_only"):
        r = results[arm]
        assert len(r["valid_accs"]) == n_folds and r["valid_acc"] == pytest.approx(np.mean(r["valid_accs"]))
        assert r["valid_acc"] > 2 / n_classes  # well above chance on 5 classes
        assert r["valid_acc"] <= r["valid_map"] <= 1
    assert cross_validate(demo_root, ["specs_train_v1", "specs_train_v2"]) == results  # seeded, repeatable


def probe(exp_root: Path, sweep: list[dict], candidates: int = 100) -> None:
    model = bench.PRESETS[bench.PRESET].models[0][0]
    summary = paths.run_dir(exp_root, model) / "threshold_probe.summary.json"
    summary.parent.mkdir(parents=True)
    summary.write_text(json.dumps({"totals": {"candidates": candidates}, "thresholds": sweep}))


def test_threshold_rule(tmp_path):
    # 0.95 accepts a real share: kept
    probe(tmp_path / "a", [{"threshold": 0.5, "accepted": 60, "precision": 0.97},
                           {"threshold": 0.95, "accepted": 20, "precision": 1.0}])
    assert bench.choose_threshold(tmp_path, tmp_path / "a", 1, 0.1, 0.95)["threshold"] == 0.95
    # 0.95 accepts almost nothing: the lowest threshold that is still precise enough
    sweep = [{"threshold": t, "accepted": n, "precision": p}
             for t, n, p in ((0.3, 80, 0.9), (0.5, 50, 0.96), (0.7, 30, 0.99), (0.95, 2, 1.0))]
    probe(tmp_path / "b", sweep)
    chosen = bench.choose_threshold(tmp_path, tmp_path / "b", 1, 0.1, 0.95)
    assert chosen["threshold"] == 0.5 and "accepts 2 of 100" in chosen["why"] and chosen["sweep"] == sweep


def fake_results() -> dict:
    curves = {"self-verified": [[0.60, 0.70, 0.72], [0.62, 0.71, 0.75], [0.61, 0.69, 0.70]],
              "all labels": [[0.60, 0.65, 0.66], [0.62, 0.66, 0.67], [0.61, 0.64, 0.65]],
              "verified only": [[0.60, 0.62, 0.63], [0.62, 0.63, 0.64], [0.61, 0.62, 0.62]]}
    totals = {"candidates": 300, "accepted": 120, "acceptance_precision": 0.97, "candidate_precision": 0.7,
              "noisy_rejected": 86, "noisy_candidates": 90}
    return {"seeds": [1, 2, 3], "iterations": 2, "wall_s": 600.0,
            "arms": {arm: {str(s): {"valid_acc": c, "valid_loss": [1.0, 0.8, 0.9], "best_round": 1}
                           for s, c in zip((1, 2, 3), cs, strict=True)} for arm, cs in curves.items()},
            "acceptance": {str(s): [totals, {**totals, "accepted": 150}] for s in (1, 2, 3)},
            "threshold": {"threshold": 0.95, "why": "the writeup's", "candidates": 300, "seed": 1,
                          "sweep": [{"threshold": 0.95, "accepted": 120, "precision": 0.97}]},
            "linear": {"all_labels": {"valid_acc": 0.5, "valid_map": 0.6},
                       "verified_only": {"valid_acc": 0.45, "valid_map": 0.55}}}


def test_report_and_figure(tmp_path, capsys):
    results = fake_results()
    bench.report(results)
    out = capsys.readouterr().out
    # round 1 of the self-verified arm: 0.70 0.71 0.69 -> 0.700 +- 0.010; the writeup's 95.56% beside it
    assert "self-verified, round 1   0.700   0.710   0.690   0.700 +- 0.010   0.9556" in out
    # paired with the all-labels arm at round 1: +0.05 each seed, larger than either arm's spread (0.010)
    assert "self-verified - all labels, round 1: +0.050 +0.050 +0.050; mean 0.050 +- 0.000; larger" in out
    assert "round 2: 150 of 300, precision 0.970 (0.700), noisy kept out 86 of 90" in out
    assert "self-verified - pretrained, round 1: +0.100 +0.090 +0.080; mean 0.090 +- 0.010; larger" in out
    assert "all_labels: accuracy 0.500" in out
    bench.markdown(results)
    table = capsys.readouterr().out
    assert "| self-verified | best round | 0.700 (r1) | 0.710 (r1) | 0.690 (r1) | 0.700 +- 0.010 | 0.9601 |" in table
    assert "| self-verified - verified only | round 1 | +0.080 | +0.080 | +0.070 | **+0.077 +- 0.006** | |" in table
    # against the same seed's pretrained it0: 0.70 - 0.60, 0.71 - 0.62, 0.69 - 0.61
    assert "| self-verified - pretrained | round 1 | +0.100 | +0.090 | +0.080 | **+0.090 +- 0.010** | |" in table
    assert "| 2 | 150 / 150 / 150 of 300 | 0.970 / 0.970 / 0.970 | 86 / 86 / 86 of 90 |" in table
    bench.plot(results, tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 0


def test_another_demo_build_is_not_replaced(tmp_path):
    # the embedded default (other parameters) would be rebuilt as the medium one: refused, naming the folder
    small = tmp_path / "small"
    small.mkdir()
    (small / bench.PARAMS_FILE).write_text(json.dumps({"params": asdict(bench.make_params())}))
    assert "holds another demo build" in bench.other_build(small)
    assert bench.other_build(tmp_path / "absent") is None
    medium = tmp_path / "medium"  # a medium build begun and interrupted: resumed, not refused
    medium.mkdir()
    (medium / bench.PARAMS_FILE).write_text(json.dumps({"params": asdict(bench.make_params(size="medium"))}))
    assert bench.other_build(medium) is None
    (medium / bench.PARAMS_FILE).write_text("not json")
    assert "is unreadable" in bench.other_build(medium)
