"""Turn a result file (eval.py --dump_results or fusion.py) into a Kaggle submission.

    python prepare_submission.py --prediction_file fused.npz --out_file submission.csv

The submission has the header fname,label and one row per clip with its 3 most likely labels,
most likely first, separated by spaces. It is written atomically."""

import argparse

from utils.cli import run_cli
from utils.evaluation import load_results, write_submission


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prediction_file", required=True, help="result file (.npz), usually fusion.py's output")
    parser.add_argument("--out_file", required=True, help="submission CSV to write")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    results = load_results(args.prediction_file)
    if results.set_name != "test":
        # still useful for scoring one leaderboard part, but Kaggle expects every test clip
        print(f"note: {args.prediction_file} holds set '{results.set_name}', not the whole test set")
    write_submission(args.out_file, results)
    print(f"wrote {args.out_file}: {len(results.fnames)} clips, top 3 of {len(results.classes)} classes")


if __name__ == "__main__":
    run_cli(main, parse_args())
