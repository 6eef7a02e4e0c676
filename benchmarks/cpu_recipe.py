"""What each part of the cpu preset's recipe earns: its first net (models/vgg_gap_cpu.py), and the same net with each
addition removed in turn, over seeds, against the linear baseline on the same folds.

python -m benchmarks.cpu_recipe --data_root data/fsdd --exp_root experiments/cpu_recipe [--seeds 1 2 3]
python -m benchmarks.cpu_recipe --exp_root experiments/cpu_recipe --report     # print a saved run again

Arms (each a model file written into <exp_root>/models/, the cpu net's settings with one change):
  recipe       the cpu preset's net as it is: trained until converged, masks, a random gain
  no_masks     without the frequency and time masks
  no_gain      without the random gain
  fixed        without the converged rule: the demo nets' fixed 14 epochs, the epoch of lowest validation loss
               kept as the writeup did (so this arm's figure is chosen on the reported fold: optimistic)
Each arm trains every fold as the schedule does (run_experiment.sh, folds side by side) and is scored by each
fold's final model on that fold's verified validation clips (the accuracy its log records for its last epoch):
nothing chosen on the reported fold, but for the fixed arm, whose best epoch is. Rows: mean +- spread (standard
deviation over seeds of the mean over folds), and each arm's wall time per seed. A run interrupted goes on where
it stopped (train.py resumes)."""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from utils import paths
from utils.atomic import save_json
from utils.cli import run_cli
from utils.errors import MissingFile
from utils.folds import fold_numbers, load_folds
from utils.linear_baseline import cross_validate as linear_cross_validate
from utils.model_files import DEMO_SETTINGS
from utils.paths import REPO

BASE = "models/vgg_gap_cpu.py"
MAX_LEN = 1000  # the cpu preset's
ARMS = {
    "recipe": {},
    "no_masks": {"freq_masks": 0, "time_masks": 0},
    "no_gain": {"gain_db": 0.0},
    "fixed": {"stop_rule": "fixed", "epochs": DEMO_SETTINGS["epochs"], "decay_from": DEMO_SETTINGS["decay_from"]},
}
RESULTS = "cpu_recipe.json"


def arm_model(exp_root: Path, arm: str) -> Path:
    """A model file: the cpu net with the arm's change."""
    path = exp_root / "models" / f"cpu_{arm}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'"""The cpu net, arm {arm} of benchmarks/cpu_recipe.py."""\n\nimport importlib.util\n\n'
                    f'_spec = importlib.util.spec_from_file_location("cpu_base", {str(REPO / BASE)!r})\n'
                    '_base = importlib.util.module_from_spec(_spec)\n_spec.loader.exec_module(_base)\n'
                    f'SETTINGS = {{**_base.SETTINGS, **{ARMS[arm]!r}}}\nbuild_model = _base.build_model\n')
    return path


def run_arm(data_root: Path, exp_root: Path, arm: str, seed: int, folds: list[int]) -> dict:
    model, exp = arm_model(exp_root, arm), exp_root / f"seed{seed}"
    t0 = time.time()
    # run_experiment.sh, as the schedule runs a step: the folds side by side, one per core
    command = shlex.join([sys.executable, "train.py", "--model", str(model), "--spec_dir", "specs_train_v1",
                          "--data_root", str(data_root), "--exp_root", str(exp), "--max_len", str(MAX_LEN),
                          "--seed", str(seed), "--channels_last"])
    subprocess.run(["./run_experiment.sh", f"cpu_{arm}", command, "0"], cwd=REPO, check=True,
                   env={**os.environ, "FSDTAG_EXP_ROOT": str(exp)})
    seconds = time.time() - t0
    accs, epochs = [], []
    for k in folds:
        log = json.loads(paths.log_path(exp, model, k, "it0").read_text())
        history = log["history"]
        row = min(history, key=lambda r: r["valid_loss"]) if arm == "fixed" else history[-1]
        accs.append(row["valid_acc"])
        epochs.append(len(history))
    return {"acc": float(np.mean(accs)), "fold_accs": accs, "epochs": epochs, "seconds": seconds}


def report(results: dict) -> str:
    lines = [f"{results['data_root']}: {results['n_folds']} folds, seeds {' '.join(map(str, results['seeds']))}",
             f"{'arm':10s} {'mean acc':>8s} {'+-':>6s} {'epochs (mean)':>14s} {'wall s / seed':>14s}"]
    for arm, runs in results["arms"].items():
        accs = [r["acc"] for r in runs.values()]
        epochs = np.mean([np.mean(r["epochs"]) for r in runs.values()])
        seconds = np.mean([r["seconds"] for r in runs.values()])
        lines.append(f"{arm:10s} {np.mean(accs):8.3f} {np.std(accs):6.3f} {epochs:14.1f} {seconds:14.0f}")
    linear = results["linear"]
    lines.append(f"{'linear':10s} {linear['acc']:8.3f} {0:6.3f} {'':>14s} {linear['seconds']:14.0f}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> None:
    exp_root = Path(args.exp_root)
    out = exp_root / RESULTS
    if args.report:
        if not out.is_file():
            raise MissingFile(f"{out} not found; run the benchmark first")
        print(report(json.loads(out.read_text())))
        return
    data_root = paths.data_root(args.data_root).resolve()
    exp_root = exp_root.resolve()
    folds = fold_numbers(load_folds(data_root))
    t0 = time.time()
    linear = linear_cross_validate(data_root, ["specs_train_v1"], MAX_LEN)
    results = {"data_root": str(data_root), "n_folds": len(folds), "seeds": args.seeds, "arms": {},
               "linear": {"acc": float(np.mean([f["acc"] for f in linear])), "seconds": time.time() - t0}}
    for arm in args.arms:
        results["arms"][arm] = {}
        for seed in args.seeds:
            results["arms"][arm][str(seed)] = run_arm(data_root, exp_root, arm, seed, folds)
            save_json(out, results)
    print(report(results))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", default=None, help="a data root with folds and specs_train_v1")
    parser.add_argument("--exp_root", required=True, help="where the arms train and the results are saved")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--report", action="store_true", help="print the saved results again")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run_cli(main, parse_args())
