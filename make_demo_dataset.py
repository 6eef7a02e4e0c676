"""Build the embedded default dataset (FSDKaggle2018 layout) from Debian-packaged soundfonts and drum kits,
each clip recorded through a simulated room and microphone; sources.csv says which source and chain.

    python make_demo_dataset.py --data_root data --clips_per_class 24 --test_clips_per_class 8 --seed 0
    python make_demo_dataset.py --size medium --data_root data_medium
    python make_demo_dataset.py --size full --data_root /big/disk/fsd_full --jobs 2

Like the real test_post_competition.csv, the test CSV holds Kaggle's padding too: 'Ignored' rows labelled
'None' whose audio is a rendered clip of a random class, and a few broken wavs (0 samples, or random bytes),
Ignored ones and (by default) one scored one. Train clips and scored test clips do not depend on them.

--size full builds FSDKaggle2018's size and shares over the 21 classes: 9,473 train clips (3,710 verified),
9,400 test clips (301 Public, 1,299 Private, 7,800 Ignored of which 3 are empty wavs), 0.3-30 s (median ~4 s);
about 12 GB and hours of rendering. --size medium keeps those shares at 2,100 train clips (822 verified; 30% of
the unverified labels wrong) and 2,084 test clips (67 Public, 288 Private, 1,729 Ignored of which 1 is an empty
wav), the default's clip lengths: the setting of benchmarks/self_verification.py.
"""

import argparse
import time

from utils.cli import run_cli
from utils.demo.dataset import (
    SIZES,
    build_from_params,
    default_jobs,
    estimate_bytes,
    free_bytes,
    make_params,
    plan_dataset,
)
from utils.demo.synth import CLASSES
from utils.paths import DATA_ROOT_ENV, data_root


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", default=None,
                        help=f"where audio_train/, audio_test/ and the CSVs go; default ${DATA_ROOT_ENV} or data/")
    size = parser.add_argument_group("size")
    size.add_argument("--size", choices=SIZES, default="small",
                      help="small: the embedded default (per-class counts below); medium: 2,100 train clips in "
                           "FSDKaggle2018's shares; full: FSDKaggle2018's counts and shares (the per-class counts "
                           "are not used by medium and full)")
    size.add_argument("--clips_per_class", type=int, default=24, help="train clips per class (small)")
    size.add_argument("--test_clips_per_class", type=int, default=None,
                      help="scored test clips per class (small); default a third of --clips_per_class (at least 1)")
    size.add_argument("--classes", nargs="+", default=None, metavar="CLASS",
                      help=f"restrict to these classes (default all {len(CLASSES)}): {' '.join(CLASSES)}")
    extra = parser.add_argument_group("test padding and broken wavs (defaults: small / full)")
    extra.add_argument("--padding_clips", type=int, default=None,
                       help="Ignored test rows labelled None, rendered from a random class "
                            "(default: as many as scored test clips / 7,797)")
    extra.add_argument("--empty_clips", type=int, default=None,
                       help="Ignored test rows whose wav has 0 samples (default 2 / 3)")
    extra.add_argument("--unreadable_clips", type=int, default=None,
                       help="Ignored test rows whose wav is random bytes (default 1 / 0)")
    extra.add_argument("--broken_scored", type=int, default=None,
                       help="extra scored (Public/Private, labelled) test rows with a broken wav, alternately "
                            "empty and unreadable (default 1 / 0)")
    run = parser.add_argument_group("run")
    run.add_argument("--seed", type=int, default=0, help="same seed, same CSVs and byte-identical wavs")
    run.add_argument("--jobs", type=int, default=default_jobs(), help="parallel rendering processes")
    args = parser.parse_args(argv)
    if args.test_clips_per_class is None:
        args.test_clips_per_class = max(1, args.clips_per_class // 3)
    if args.clips_per_class < 1 or args.test_clips_per_class < 1:
        parser.error("--clips_per_class and --test_clips_per_class must be at least 1")
    for name in ("padding_clips", "empty_clips", "unreadable_clips", "broken_scored"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            parser.error(f"--{name} must not be negative")
    return args


def main(args: argparse.Namespace) -> None:
    root = data_root(args.data_root)
    params = make_params(args.clips_per_class, args.test_clips_per_class, args.seed, args.classes, size=args.size,
                         padding_clips=args.padding_clips, empty_clips=args.empty_clips,
                         unreadable_clips=args.unreadable_clips, broken_scored=args.broken_scored)
    rows = plan_dataset(params)
    test = [r for r in rows if r.split == "test"]
    usage = {u: sum(r.usage == u for r in test) for u in ("Public", "Private", "Ignored")}
    hours = sum(r.spec.duration for r in rows) / 3600
    print(f"plan ({args.size}): {len(rows) - len(test)} train clips, {len(test)} test clips "
          f"({', '.join(f'{n} {u}' for u, n in usage.items())}; {sum(r.broken is not None for r in test)} broken "
          f"wavs), {hours:.1f} h of audio, about {estimate_bytes(rows) / 1e9:.2f} GB on disk "
          f"({free_bytes(root) / 1e9:.0f} GB free)")
    start = time.time()
    built = build_from_params(root, params, jobs=args.jobs, progress=True, rows=rows)
    if built:
        print(f"demo dataset written to {root} in {time.time() - start:.1f} s")
    else:
        print(f"demo dataset in {root} is already complete with these parameters; nothing to do")


if __name__ == "__main__":
    run_cli(main, parse_args())
