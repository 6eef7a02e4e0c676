"""Plot training and validation curves from train.py's logs, like the writeup's figures.

python plot_log.py experiments/vgg_gap_spec1_1/results_[1,2,3,4]_it0.json --acc --folds_avg --out curves.png
Without a display (or with --out) the figure is saved as PNG."""

import argparse
import json
from pathlib import Path

from utils.cli import run_cli
from utils.errors import InputError, MissingFile
from utils.plots import has_display, plot_curves, pyplot, save_figure


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs", nargs="+", help="results_<fold>_<tag>.json files")
    parser.add_argument("--acc", action="store_true", help="plot accuracy instead of loss")
    parser.add_argument("--folds_avg", action="store_true", help="mean and std over the given runs")
    parser.add_argument("--out", default=None, help="PNG to write (default curves.png when headless)")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    histories, labels = [], []
    for name in args.logs:
        path = Path(name)
        if not path.is_file():
            raise MissingFile(f"log {path} not found")
        histories.append(read_history(path, "acc" if args.acc else "loss"))
        labels.append(path.stem)
    fig = plot_curves(histories, labels, "acc" if args.acc else "loss", args.folds_avg)
    if args.out or not has_display():
        out = args.out or "curves.png"
        save_figure(fig, out)
        print(f"saved {out}")
    else:
        pyplot(interactive=True).show()


def read_history(path: Path, metric: str) -> list[dict]:
    """The per-epoch rows of a train.py log, each with train_/valid_<metric>; any other file is a ValueError
    naming it (json's own errors name no file, and a missing key would end in a traceback)."""
    hint = "give a results_<fold>_<tag>.json written by train.py"
    try:
        log = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not a JSON training log ({e}); {hint}") from None
    history = log.get("history") if isinstance(log, dict) else None
    if not isinstance(history, list):
        raise InputError(f"{path}: no \"history\" list of epochs, so not a training log; {hint}")
    if not history:
        raise InputError(f"{path} has no completed epoch yet")
    keys = ("epoch", f"train_{metric}", f"valid_{metric}")
    for n, row in enumerate(history, start=1):
        if not isinstance(row, dict) or any(not isinstance(row.get(k), int | float) for k in keys):
            raise InputError(f"{path}: epoch entry {n} of \"history\" lacks a number for one of "
                             f"{', '.join(keys)}; {hint}")
    return history


if __name__ == "__main__":
    run_cli(main, parse_args())
