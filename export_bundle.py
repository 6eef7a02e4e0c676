"""Pack a trained ensemble into one bundle file for tag_files.py (or utils.tagging.Tagger).

    python export_bundle.py --exp_root experiments --out bundle.pt
    python export_bundle.py --model models/vgg_gap_spec2.py --params P1.pt P2.pt \\
        --model models/vgg_gap_spec1_1.py --params P3.pt --out bundle.pt

With --exp_root alone: every model x fold of the schedule's best iterations (<exp_root>/best_iterations.json,
written by run_experiment_set.py), the members evaluate_experiment_set.py fuses, in the same order. Otherwise
each --model takes the --params files that follow it. The bundle holds the class names and, per member, its
model file's name, spectrogram version and preprocessing, max_len and weights; it loads with
torch.load(weights_only=True) (no pickled code). The network code stays in models/, so the bundle works in any
checkout that has the named model files."""

import argparse
from pathlib import Path

from utils import paths
from utils.cli import run_cli
from utils.errors import InputError
from utils.launch.schedule import read_best_iterations
from utils.tagging import bundle_member, make_bundle, save_bundle


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="bundle file to write (.pt)")
    parser.add_argument("--exp_root", default=None,
                        help=f"a finished schedule's outputs (default ${paths.EXP_ROOT_ENV} or experiments/)")
    parser.add_argument("--model", action="append", default=None, help="a model file (repeatable)")
    parser.add_argument("--params", action="append", nargs="+", default=None,
                        help="params files of the --model before it (repeatable, one group per --model)")
    return parser.parse_args(argv)


def schedule_members(exp_root: Path) -> list[tuple[str, Path]]:
    """(model file, params file) for every model x fold of best_iterations.json, in its order."""
    best = read_best_iterations(exp_root)
    return [(choice["model"], paths.params_path(exp_root, choice["model"], fold, choice["tag"]))
            for choice in best.values() for fold in choice["folds"]]


def given_members(models: list[str], params: list[list[str]] | None) -> list[tuple[str, Path]]:
    if not params or len(params) != len(models):
        raise InputError(f"give one --params group after each --model ({len(models)} --model, "
                         f"{len(params or [])} --params)")
    return [(model, Path(p)) for model, group in zip(models, params, strict=True) for p in group]


def main(args: argparse.Namespace) -> None:
    if Path(args.out).is_dir():
        raise InputError(f"--out {args.out} is a folder; give the bundle's file name, e.g. "
                         f"{Path(args.out) / 'bundle.pt'}")
    if args.model and args.exp_root:
        raise InputError("give --exp_root (the schedule's best iterations) or --model/--params, not both")
    if args.params and not args.model:
        raise InputError("--params needs a --model before it")
    pairs = given_members(args.model, args.params) if args.model else schedule_members(paths.exp_root(args.exp_root))
    members = [bundle_member(model, params) for model, params in pairs]
    bundle = make_bundle(members)
    save_bundle(args.out, bundle)
    for m in bundle["members"]:
        print(f"  {m['model']:32s} v{m['spec_version']} {'SoX' if m['preprocessing'] else 'no SoX':6s} "
              f"max_len {m['max_len']:5d}  {m['source']}")
    size = Path(args.out).stat().st_size / 2**20
    print(f"bundled {len(members)} members ({len(bundle['classes'])} classes) into {args.out} ({size:.1f} MiB)")


if __name__ == "__main__":
    run_cli(main, parse_args())
