"""Build the embedded default dataset (FSDKaggle2018 layout) from Debian-packaged soundfonts.

    python make_demo_dataset.py --data_root data --clips_per_class 24 --test_clips_per_class 8 --seed 0
"""

import argparse
import time

from utils.cli import run_cli
from utils.demo_dataset import build_demo_dataset, default_jobs
from utils.demo_synth import CLASSES
from utils.paths import DATA_ROOT_ENV, data_root


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", default=None,
                        help=f"where audio_train/, audio_test/ and the CSVs go; default ${DATA_ROOT_ENV} or data/")
    size = parser.add_argument_group("size")
    size.add_argument("--clips_per_class", type=int, default=24, help="train clips per class")
    size.add_argument("--test_clips_per_class", type=int, default=None,
                      help="test clips per class; default a third of --clips_per_class (at least 1)")
    size.add_argument("--classes", nargs="+", default=None, metavar="CLASS",
                      help=f"restrict to these classes (default all {len(CLASSES)}): {' '.join(CLASSES)}")
    run = parser.add_argument_group("run")
    run.add_argument("--seed", type=int, default=0, help="same seed, same CSVs and byte-identical wavs")
    run.add_argument("--jobs", type=int, default=default_jobs(), help="parallel rendering processes")
    args = parser.parse_args(argv)
    if args.test_clips_per_class is None:
        args.test_clips_per_class = max(1, args.clips_per_class // 3)
    if args.clips_per_class < 1 or args.test_clips_per_class < 1:
        parser.error("--clips_per_class and --test_clips_per_class must be at least 1")
    return args


def main(args: argparse.Namespace) -> None:
    root = data_root(args.data_root)
    start = time.time()
    built = build_demo_dataset(root, args.clips_per_class, args.test_clips_per_class, args.seed,
                               classes=args.classes, jobs=args.jobs, progress=True)
    if built:
        print(f"demo dataset written to {root} in {time.time() - start:.1f} s")
    else:
        print(f"demo dataset in {root} is already complete with these parameters; nothing to do")


if __name__ == "__main__":
    run_cli(main, parse_args())
