"""The bar the nets must clear: a logistic regression on summary statistics of the same spectrograms
(utils/linear_baseline.py; evaluate_experiment_set.py reports it beside the nets).

python -m benchmarks.linear_baseline --data_root data_medium [--spec_dirs specs_train_v1 specs_train_v2]

Per fold it is trained on the fold's training part, once on all labels (noisy ones included) and once on the
verified clips alone, and scored on the fold's verified validation clips: the same split and measure as the nets'
mean verified validation accuracy."""

import argparse
from pathlib import Path

import numpy as np

from utils import paths
from utils.linear_baseline import cross_validate as cross_validate_folds

MAX_LEN = 1500  # frames, as the medium preset's nets
ARMS = ("all_labels", "verified_only")


def cross_validate(data_root: Path, spec_dirs: list[str], seed: int = 0, max_len: int = MAX_LEN) -> dict[str, dict]:
    """arm -> {"valid_accs", "valid_maps": per fold; "valid_acc", "valid_map": their means}."""
    results = {}
    for arm in ARMS:
        folds = cross_validate_folds(data_root, spec_dirs, max_len, verified_only=arm == "verified_only", seed=seed)
        accs, maps = [f["acc"] for f in folds], [f["map3"] for f in folds]
        results[arm] = {"valid_accs": accs, "valid_maps": maps, "valid_acc": float(np.mean(accs)),
                        "valid_map": float(np.mean(maps))}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", default=None, help="a data root with train.csv, folds and spectrograms")
    parser.add_argument("--spec_dirs", nargs="+", default=["specs_train_v1", "specs_train_v2"])
    parser.add_argument("--max_len", type=int, default=MAX_LEN, help="frames of each clip used (default 1500)")
    args = parser.parse_args()
    results = cross_validate(paths.data_root(args.data_root), args.spec_dirs, max_len=args.max_len)
    for arm, r in results.items():
        print(f"{arm:>13s}: verified validation accuracy {r['valid_acc']:.3f} (folds "
              f"{' '.join(f'{a:.3f}' for a in r['valid_accs'])}), MAP@3 {r['valid_map']:.3f}")


if __name__ == "__main__":
    main()
