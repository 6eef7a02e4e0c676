"""Does self-verification beat training on all labels? The demo schedule against its control, per seed.

python -m benchmarks.self_verification [--seeds 1 2 3] [--exp_root experiments/evidence] [--data_root data]

For each seed: the demo schedule (pretrain, then self-verify + fine-tune iterations) and the control
(the same pretrained it0, then the same fine-tuning epochs on all labels of train.csv, noisy ones included).
Prints the mean verified validation accuracy over the four folds per iteration, the acceptance precision
of each self-verification round, and saves a plot (self_verification.png in the exp root)."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from utils import paths
from utils.folds import fold_numbers, load_folds
from utils.launch.schedule import PRESETS, fold_summary
from utils.paths import REPO
from utils.plots import pyplot, save_figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--data_root", default=None)
    parser.add_argument("--exp_root", default="experiments/evidence")
    args = parser.parse_args()
    preset = PRESETS["demo"]
    iterations = args.iterations or preset.iterations
    data_root, exp_root = paths.data_root(args.data_root).resolve(), Path(args.exp_root).resolve()
    folds = fold_numbers(load_folds(data_root))

    for seed in args.seeds:
        for baseline in (False, True):
            cmd = [sys.executable, "run_experiment_set.py", "--experiment_set", "all", "--preset", "demo",
                   "--iterations", str(iterations), "--seed", str(seed), "--data_root", str(data_root),
                   "--exp_root", str(exp_root / f"seed{seed}")] + (["--baseline"] if baseline else [])
            print("$", " ".join(cmd), flush=True)
            subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)

    tags = ["it0"] + [f"it{i}" for i in range(1, iterations + 1)]
    base_tags = ["it0"] + [f"base{i}" for i in range(1, iterations + 1)]
    plt = pyplot()
    fig, axes = plt.subplots(1, len(preset.models), figsize=(6 * len(preset.models), 4), squeeze=False)
    for ax, (model, _) in zip(axes[0], preset.models, strict=True):
        name = paths.model_name(model)
        print(f"\n{name}: mean verified validation accuracy over folds (best-loss epoch), per seed")
        print(f"{'iteration':>9s} " + " ".join(f"{'self-ver s' + str(s):>12s} {'all-lab s' + str(s):>11s} "
                                               f"{'acc.prec s' + str(s):>11s}" for s in args.seeds))
        sv_curves, base_curves = [], []
        for i, (tag, btag) in enumerate(zip(tags, base_tags, strict=True)):
            cells, sv_row, base_row = [], [], []
            for seed in args.seeds:
                root = exp_root / f"seed{seed}"
                sv, base = fold_summary(root, model, tag, folds), fold_summary(root, model, btag, folds)
                precision = float("nan")
                if i > 0:
                    summary = paths.run_dir(root, model) / f"train_self_verified_it{i - 1}.summary.json"
                    precision = json.loads(summary.read_text())["totals"]["acceptance_precision"]
                sv_row.append(sv["valid_acc"])
                base_row.append(base["valid_acc"])
                cells.append(f"{sv['valid_acc']:12.3f} {base['valid_acc']:11.3f} {precision:11.3f}")
            sv_curves.append(sv_row)
            base_curves.append(base_row)
            print(f"{tag:>9s} " + " ".join(cells))
        sv_curves, base_curves = np.array(sv_curves), np.array(base_curves)
        x = np.arange(len(tags))
        ax.errorbar(x, sv_curves.mean(1), sv_curves.std(1), marker="o", capsize=3, label="self-verified")
        ax.errorbar(x, base_curves.mean(1), base_curves.std(1), marker="s", capsize=3, label="all labels")
        ax.set_xticks(x, ["pretrain"] + [f"ft {i}" for i in range(1, iterations + 1)])
        ax.set_ylabel("verified validation accuracy")
        ax.set_title(f"{name}, mean +- std over seeds {args.seeds}")
        ax.grid(alpha=0.3)
        ax.legend()
        sv_last, base_last = sv_curves[-1], base_curves[-1]
        diff = sv_last - base_last  # paired: the same seed's pretrained it0 and folds in both arms
        spread = max(sv_last.std(ddof=1), base_last.std(ddof=1)) if len(args.seeds) > 1 else float("nan")
        print(f"last iteration over seeds {args.seeds}: self-verified {sv_last.mean():.3f} +- "
              f"{sv_last.std(ddof=1):.3f}, "
              f"all labels {base_last.mean():.3f} +- {base_last.std(ddof=1):.3f} (mean +- std)")
        print(f"paired difference per seed: {' '.join(f'{d:+.3f}' for d in diff)}; mean {diff.mean():+.3f} "
              f"+- {diff.std(ddof=1):.3f}; the gain is {'larger' if diff.mean() > spread else 'not larger'} than "
              f"the seed-to-seed spread of either arm ({spread:.3f})")
    fig.tight_layout()
    save_figure(fig, exp_root / "self_verification.png")
    print(f"saved {exp_root / 'self_verification.png'}")


if __name__ == "__main__":
    main()
