"""The bar the nets must clear: a logistic regression on summary statistics of the same spectrograms.

python -m benchmarks.linear_baseline --data_root data_medium [--spec_dirs specs_train_v1 specs_train_v2]

Each clip becomes each band's mean, standard deviation and 90th percentile over time, of every spectrogram version
given (the whole clip, as the nets' validation sees it up to max_len). Per fold it is trained on the fold's training
part, once on all labels (noisy ones included) and once on the verified clips alone, and scored on the fold's
verified validation clips: the same split and measure as the nets' mean verified validation accuracy."""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from utils import paths
from utils.dataset_csv import read_train_csv
from utils.folds import fold_numbers, load_folds, split_fold
from utils.metrics import accuracy, map_at_k
from utils.spec_data import load_spectrograms

MAX_LEN = 1500  # frames, as the medium preset's nets
ARMS = ("all_labels", "verified_only")


def clip_features(specs: list[np.ndarray]) -> np.ndarray:
    """(N, 3 * bands): per band the mean, standard deviation and 90th percentile over the clip's frames."""
    return np.stack([np.concatenate([s.mean(1), s.std(1), np.percentile(s, 90, axis=1)]) for s in specs])


def cross_validate(data_root: Path, spec_dirs: list[str], seed: int = 0) -> dict[str, dict]:
    """arm -> {"valid_accs", "valid_maps": per fold; "valid_acc", "valid_map": their means}."""
    train = read_train_csv(data_root / paths.TRAIN_CSV)
    folds = load_folds(data_root)
    features = np.concatenate([clip_features(load_spectrograms(data_root / d, train["fname"], MAX_LEN))
                               for d in spec_dirs], axis=1)
    row = pd.Series(np.arange(len(train)), index=train["fname"])
    classes = sorted(train["label"].unique())
    index = {c: i for i, c in enumerate(classes)}
    results: dict[str, dict] = {arm: {"valid_accs": [], "valid_maps": []} for arm in ARMS}
    for fold in fold_numbers(folds):
        for arm in ARMS:
            part, valid, _ = split_fold(train, folds, fold, verified_only=arm == "verified_only")
            model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000, random_state=seed))
            model.fit(features[row[part["fname"]].to_numpy()], part["label"].map(index).to_numpy())
            scores = np.zeros((len(valid), len(classes)))
            scores[:, model.classes_] = model.predict_proba(features[row[valid["fname"]].to_numpy()])
            truth = valid["label"].map(index).to_numpy()
            results[arm]["valid_accs"].append(accuracy(truth, scores.argmax(1)))
            results[arm]["valid_maps"].append(map_at_k(truth, scores))
    for arm in ARMS:
        results[arm]["valid_acc"] = float(np.mean(results[arm]["valid_accs"]))
        results[arm]["valid_map"] = float(np.mean(results[arm]["valid_maps"]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", default=None, help="a data root with train.csv, folds and spectrograms")
    parser.add_argument("--spec_dirs", nargs="+", default=["specs_train_v1", "specs_train_v2"])
    args = parser.parse_args()
    results = cross_validate(paths.data_root(args.data_root), args.spec_dirs)
    for arm, r in results.items():
        print(f"{arm:>13s}: verified validation accuracy {r['valid_acc']:.3f} (folds "
              f"{' '.join(f'{a:.3f}' for a in r['valid_accs'])}), MAP@3 {r['valid_map']:.3f}")


if __name__ == "__main__":
    main()
