"""Score a submission against the released test labels (test_post_competition.csv), as Kaggle did.

    python evaluate_leaderboard.py --submission_file submission.csv --set private

Sets: public, private or private_public; Ignored rows are never scored. Prints the per-class table, the
overall accuracy and, last, MAP@3; saves cmatrix_leaderboard_<set>_<submission>.png and
pr_re_f_leaderboard_<set>_<submission>.png. A malformed submission (wrong header, missing or duplicated
clips, not exactly 3 labels a row) is an error, never a score. A label that is not a class name (Kaggle's
sample_submission.csv has 'Hi-Hat' for 'Hi-hat') is scored as a miss, as Kaggle did, with one warning line."""

import argparse
import sys
from pathlib import Path

from utils import paths
from utils.cli import run_cli
from utils.evaluation import report_and_plot
from utils.submission import read_submission, score_submission, submission_classes, unknown_labels


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submission_file", required=True, help="CSV written by prepare_submission.py")
    parser.add_argument("--set", required=True, choices=["public", "private", "private_public"],
                        help="leaderboard part to score")
    parser.add_argument("--data_root", default=None,
                        help=f"dataset folder holding test_post_competition.csv; default ${paths.DATA_ROOT_ENV} "
                             "or data/")
    parser.add_argument("--out_dir", default=None, help="where the figures go (default: the submission's folder)")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    submission = Path(args.submission_file)
    sub = read_submission(submission)
    data_root = paths.data_root(args.data_root)
    unknown = unknown_labels(sub, submission_classes(data_root))
    if unknown:
        shown = ", ".join(f"{label!r} x{n}" for label, n in sorted(unknown.items())[:5])
        print(f"warning: {submission} names {len(unknown)} label(s) that are not class names ({shown}"
              f"{', ...' if len(unknown) > 5 else ''}); each scores as a miss, as on Kaggle", file=sys.stderr)
    y_true, ranked, classes = score_submission(sub, data_root, args.set)
    out_dir = Path(args.out_dir) if args.out_dir else submission.parent
    report, figures = report_and_plot(y_true, ranked, classes, out_dir,
                                      f"leaderboard_{args.set}_{submission.stem}")
    print(f"saved {', '.join(str(f) for f in figures)}")
    print(f"\n{submission.name} on the {args.set} leaderboard ({len(y_true)} clips)\n")
    print(report)


if __name__ == "__main__":
    run_cli(main, parse_args())
