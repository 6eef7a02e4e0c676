"""Average the posteriors of several result files (eval.py --dump_results) into one result file.

    python fusion.py --set test 'experiments/vgg_gap_spec1_1/probs_test_specs_train_v1_[1234]_it3.npz' \\
        'experiments/vgg_gap_spec2/probs_test_specs_train_v2_*_it10.npz' --out fused.npz

The seed's spelling, the set as the first positional argument (fusion.py test FILES...), is accepted too.

Glob patterns are expanded here too, so quoted patterns work. All files must hold the given set and list
the same clips and classes in the same order; otherwise nothing is written. With --weights, give one
weight per RESULTS argument: every file that argument matches gets it (so a model's folds share its
weight); the weights are normalised to sum to 1 over all files."""

import argparse
import glob
from pathlib import Path

from utils.cli import run_cli
from utils.errors import InputError, MissingFile
from utils.results import SETS, fuse, load_results, save_results

GLOB_CHARS = set("*?[")


def expand(patterns: list[str]) -> list[list[str]]:
    """The files of each argument: a glob's matches (sorted), or the path itself."""
    groups = []
    for pattern in patterns:
        if GLOB_CHARS & set(pattern):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise MissingFile(f"no file matches {pattern}")
            groups.append(matches)
        else:
            groups.append([pattern])
    return groups


def check_out(out: str) -> None:
    """Refuse an --out that cannot become the fused file before any result file is read."""
    path = Path(out)
    if path.is_dir():
        raise InputError(f"--out {out} is a folder; give the fused file's name, e.g. {path / 'fused.npz'}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=SETS, default=None,
                        help="the set the result files hold (test for a submission)")
    parser.add_argument("results", nargs="+", metavar="RESULTS", help="result files (.npz) or glob patterns")
    parser.add_argument("--out", required=True, help="fused result file to write (.npz)")
    parser.add_argument("--weights", type=float, nargs="+", default=None,
                        help="one weight per RESULTS argument (default: every file weighs the same)")
    args = parser.parse_args(argv)
    if args.set is None and args.results[0] in SETS:  # the seed's positional spelling
        args.set = args.results.pop(0)
    if args.set is None:
        parser.error(f"--set is required (one of {', '.join(SETS)})")
    if not args.results:
        parser.error("give at least one result file")
    return args


def main(args: argparse.Namespace) -> None:
    check_out(args.out)
    groups = expand(args.results)
    if args.weights is not None and len(args.weights) != len(groups):
        raise InputError(f"--weights needs one weight per RESULTS argument ({len(groups)}), got {len(args.weights)}")
    files = [f for g in groups for f in g]
    weights = [w for g, w in zip(groups, args.weights or [1.0] * len(groups), strict=True) for _ in g]
    if len(set(map(str, map(Path.resolve, map(Path, files))))) != len(files):
        raise InputError("a result file is given twice (check overlapping patterns)")
    results = [load_results(f) for f in files]
    for f, r in zip(files, results, strict=True):
        if r.set_name != args.set:
            raise InputError(f"{f} holds set '{r.set_name}', not '{args.set}'")
    fused = fuse(results, files, weights)
    total = sum(weights)
    for f, w in zip(files, weights, strict=True):
        print(f"{w / total:.4f}  {f}")
    save_results(args.out, fused)
    prior = f"; {fused.missing.sum()} clips carry the class prior of a member" if fused.missing.any() else ""
    print(f"fused {len(files)} files ({len(fused.fnames)} clips, {len(fused.classes)} classes) into {args.out}"
          f"{prior}")


if __name__ == "__main__":
    run_cli(main, parse_args())
