"""Turn a result file (eval.py --dump_results or fusion.py) into a Kaggle submission.

    python prepare_submission.py --prediction_file fused.npz --out submission.csv

The submission has the header fname,label and one row per clip with its 3 most likely labels,
most likely first, separated by spaces, in the order of the result file, which is the test CSV's order. A
result file of set 'test' must hold exactly the rows of the data root's test_post_competition.csv, in its
order (Kaggle wants every fname); clips predicted from the class prior (no spectrogram) are counted. The
file is written atomically."""

import argparse
from pathlib import Path

from utils import paths
from utils.cli import run_cli
from utils.dataset_csv import read_test_csv
from utils.errors import DataError
from utils.results import Results, load_results
from utils.submission import write_submission


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prediction_file", required=True, help="result file (.npz), usually fusion.py's output")
    parser.add_argument("--out", "--out_file", dest="out", required=True,
                        help="submission CSV to write (--out_file is the seed's spelling)")
    parser.add_argument("--data_root", default=None,
                        help=f"dataset folder whose {paths.KAGGLE_TEST_CSV} the rows are checked against; "
                             f"default ${paths.DATA_ROOT_ENV} or data/")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    results = load_results(args.prediction_file)
    if results.set_name == "test":
        check_rows(results, paths.data_root(args.data_root) / paths.KAGGLE_TEST_CSV, args.prediction_file)
    else:
        # still useful for scoring one leaderboard part, but Kaggle expects every test clip
        print(f"note: {args.prediction_file} holds set '{results.set_name}', not the whole test set")
    write_submission(args.out, results)
    prior = f"; {results.missing.sum()} of them from the class prior (no spectrogram)" if results.missing.any() else ""
    print(f"wrote {args.out}: {len(results.fnames)} clips, top 3 of {len(results.classes)} classes{prior}")


def check_rows(results: Results, test_csv: Path, prediction_file: str) -> None:
    """A submission lists the test CSV's fnames, all of them, in its order."""
    if not test_csv.is_file():
        print(f"note: {test_csv} not found; the rows are not checked against the test CSV (see --data_root)")
        return
    expected = read_test_csv(test_csv)["fname"].tolist()
    got = [str(f) for f in results.fnames]
    if got != expected:
        got_set, expected_set = set(got), set(expected)
        absent = [f for f in expected if f not in got_set]
        extra = [f for f in got if f not in expected_set]
        how = (f"misses {len(absent)} of its {len(expected)} rows (e.g. {absent[0]!r})" if absent else
               f"lists {len(extra)} clips it does not (e.g. {extra[0]!r})" if extra else "lists them in another order")
        raise DataError(f"{prediction_file} does not match {test_csv}: it {how}")


if __name__ == "__main__":
    run_cli(main, parse_args())
