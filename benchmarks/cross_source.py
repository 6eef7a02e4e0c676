"""Does a model trained on the default generalise to a sound source it never heard? Leave-one-source-out.

python -m benchmarks.cross_source [--data_root data] [--exp_root experiments/cross_source] [--folds 1 2]

Needs a built default (make_demo_dataset.py, which writes sources.csv) with its v2 spectrograms (run_demo.sh
step 2). For each source family F (each GM soundfont, avldrums, the Hydrogen kits): train the demo model on the
train clips of every other family (run_experiment.sh, train.py --train_file), average the folds' posteriors on
the test clips (scored and Ignored padding: sources.csv knows every clip's true class), and score MAP@3 on
  cross-source: the test clips played by F,
  in-source:    the test clips of the same classes played by the other families,
in one run. Results go to <exp_root>/cross_source.json; finished folds are reused when run again."""

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.special

from utils import paths
from utils.dataset_csv import read_train_csv
from utils.device import pick_device
from utils.errors import StepFailed
from utils.metrics import map_at_k
from utils.paths import REPO
from utils.predict import load_trained_model, predict_logits
from utils.spec_store import open_store

MODEL, SPEC_DIR, MAX_LEN = "models/vgg_gap_demo_v2.py", "specs_train_v2", 1500


def train_without(family: str, sources: pd.DataFrame, data_root: Path, exp: Path, folds: list[int],
                  epochs: int | None) -> list[Path]:
    """Train the model on every family but `family`, one run per fold; returns the params files."""
    train = read_train_csv(data_root / paths.TRAIN_CSV)
    own = set(sources.loc[(sources["split"] == "train") & (sources["family"] == family), "fname"])
    train_file = exp / f"train_without_{family}.csv"
    if not train_file.is_file():
        exp.mkdir(parents=True, exist_ok=True)
        train[~train["fname"].isin(own)].to_csv(train_file, index=False)
    todo = [k for k in folds if not paths.params_path(exp, MODEL, k, "it0").is_file()]
    if todo:
        # run_experiment.sh runs the folds as every schedule step does: side by side on a CPU, one per GPU
        cmd = shlex.join([sys.executable, "train.py", "--model", MODEL, "--spec_dir", SPEC_DIR, "--max_len",
                          str(MAX_LEN), "--data_root", str(data_root), "--exp_root", str(exp), "--train_file",
                          str(train_file)] + (["--epochs", str(epochs)] if epochs else []))
        print(f"  {family}: folds {todo} on {len(train) - len(own)} of {len(train)} train clips", flush=True)
        env = {**os.environ, "FSDTAG_EXP_ROOT": str(exp), "FSDTAG_FOLDS": " ".join(map(str, todo))}
        done = subprocess.run(["./run_experiment.sh", f"without_{family}", cmd], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL)
        if done.returncode != 0:
            raise StepFailed(f"training without {family} failed; see {exp / 'logs'}")
    return [paths.params_path(exp, MODEL, k, "it0") for k in folds]


def ensemble_posteriors(params: list[Path], specs: list[np.ndarray]) -> tuple[np.ndarray, list[str]]:
    device = pick_device()
    probs, classes = [], []
    for path in params:
        model, config = load_trained_model(MODEL, path)
        logits = predict_logits(model, specs, MAX_LEN, config["settings"]["valid_batch_size"], device)
        probs.append(scipy.special.softmax(logits, axis=1))
        classes = config["classes"]
    return np.mean(probs, axis=0), classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", default=None, help="a built default; default $FSDTAG_DATA_ROOT or data/")
    parser.add_argument("--exp_root", default="experiments/cross_source")
    parser.add_argument("--folds", type=int, nargs="+", default=[1, 2], help="folds per left-out family "
                        "(their posteriors are averaged); default 1 2")
    parser.add_argument("--epochs", type=int, default=None, help="override the model file's epochs")
    args = parser.parse_args()
    data_root, exp_root = paths.data_root(args.data_root).resolve(), Path(args.exp_root).resolve()
    sources = pd.read_csv(data_root / "sources.csv", dtype=str, keep_default_na=False)
    store = open_store(data_root / "specs_test_v2")
    has_spec = np.array([f in store for f in sources["fname"]], dtype=bool)  # not the broken wavs
    test = sources[(sources["split"] == "test").to_numpy() & has_spec].reset_index(drop=True)
    specs = [store.get(f, MAX_LEN) for f in test["fname"]]

    results = {}
    for family in sorted(test["family"].unique()):
        params = train_without(family, sources, data_root, exp_root / f"without_{family}", args.folds, args.epochs)
        probs, classes = ensemble_posteriors(params, specs)
        y = np.array([classes.index(c) for c in test["true_label"]])
        cross = (test["family"] == family).to_numpy()
        same_classes = test["true_label"].isin(set(test.loc[cross, "true_label"])).to_numpy()
        inside = ~cross & same_classes
        results[family] = {"cross_map3": map_at_k(y[cross], probs[cross]),
                           "in_map3": map_at_k(y[inside], probs[inside]),
                           "n_cross": int(cross.sum()), "n_in": int(inside.sum()),
                           "classes": sorted(set(test.loc[cross, "true_label"]))}
        r = results[family]
        print(f"{family}: in-source {r['in_map3']:.3f} ({r['n_in']} clips), cross-source {r['cross_map3']:.3f} "
              f"({r['n_cross']} clips), gap {r['in_map3'] - r['cross_map3']:+.3f}", flush=True)

    print(f"\n{'left out':>10s} {'classes':>7s} {'in-source':>9s} {'cross':>7s} {'gap':>7s}   (MAP@3, test clips)")
    for family, r in results.items():
        print(f"{family:>10s} {len(r['classes']):7d} {r['in_map3']:9.3f} {r['cross_map3']:7.3f} "
              f"{r['in_map3'] - r['cross_map3']:+7.3f}   ({r['n_in']} / {r['n_cross']})")
    gaps = [r["in_map3"] - r["cross_map3"] for r in results.values()]
    print(f"mean gap {np.mean(gaps):+.3f}, largest {max(gaps):+.3f} (goal: within 0.05)")
    exp_root.mkdir(parents=True, exist_ok=True)
    (exp_root / "cross_source.json").write_text(json.dumps({"folds": args.folds, "epochs": args.epochs,
                                                            "results": results}, indent=1))


if __name__ == "__main__":
    main()
