"""Import a data set, as it is distributed, into a new data root in the project's layout (audio linked, not copied).

    python import_dataset.py fsdkaggle2018 downloads/FSDKaggle2018 --data_root data/fsdkaggle2018
    python import_dataset.py fsdnoisy18k downloads/FSDnoisy18k --data_root data/fsdnoisy18k
    python import_dataset.py esc50 downloads/ESC-50-master --data_root data/esc50
    python import_dataset.py folders downloads/speech_commands --exclude _background_noise_ --data_root data/speech
    python import_dataset.py folders my_sounds/train --test my_sounds/test --data_root data/my_sounds
    python import_dataset.py csv downloads/UrbanSound8K --csv metadata/UrbanSound8K.csv \\
        --audio_path "audio/fold{fold}/{slice_file_name}" --label_column class --fold_column fold \\
        --data_root data/urbansound8k
    python import_dataset.py csv field_survey --csv labels.csv --audio_path "recordings/{site}/{file_id}.flac" \\
        --label_column species --verified_column checked --split_column split --skip_missing --data_root data/survey
    python import_dataset.py names ../shared/data/fsdd --pattern "recordings/{label}_{fold}_{index}.wav" \\
        --data_root data/fsdd

Layouts, each as its data set is distributed (SOURCE holds):
  fsdkaggle2018  audio_train/, audio_test/, train.csv, test_post_competition.csv (Kaggle's, copied as it is)
  fsdnoisy18k    FSDnoisy18k.meta/{train,test}.csv, FSDnoisy18k.audio_{train,test}/ (noisy labels, a verified part)
  esc50          meta/esc50.csv, audio/: label = category, all verified, its 5 folds kept
  folders        one folder per class, named as the class, searched recursively; --test DIR: a test split alike
  csv            --csv FILE with a row per clip; --audio_path formats {column} fields from the row
  names          audio files below SOURCE, label (fold, split) in the path: --pattern matches each relative path,
                 {label} required, {fold} and {split} (train/test) kept, any other {name} ignored; all verified

The data root gets audio_train/ (and audio_test/), train.csv (fname,label,manually_verified), folds.csv where the
source brings folds (numbered 1..K; otherwise the project makes its 4 stratified folds on first use) and test.csv
(fname,label; scored whole) where it has a test split. A names --pattern field matches within one folder or file
name, as little as lets the rest match (FSDD's "7_jackson_32.wav": label 7, fold jackson;
"001 - Dog bark/1-100032-A.ogg" with "{index} - {label}/{fold}-{clip}.ogg": label "Dog bark"). fnames are the
audio's file names; where those repeat (Speech Commands: yes/0a7c2a8d_nohash_0.wav, no/0a7c2a8d_nohash_0.wav), the
relative paths, folders joined with '__'. Audio files are hard links to the source's (a symbolic link across file
systems, a copy where neither works): an edit in one is an edit in the other. The data root is built beside
--data_root and renamed into place, so a failed import leaves nothing behind; --data_root must not exist yet, or be
an empty folder (for folders and names, not inside SOURCE). Bad input (a missing column or file, a label listing
several classes, a class too small for the folds, an audio file the names pattern does not match) ends with one line
naming the file and line."""

import argparse
import time
from pathlib import Path

from utils import dataset_import as di
from utils import paths
from utils.cli import run_cli
from utils.errors import DataError, InputError

CSV_FLAGS = ("csv", "audio_path", "label_column", "fold_column", "verified_column", "split_column")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("layout", metavar="LAYOUT", choices=di.LAYOUTS,
                        help=f"how SOURCE is laid out: {', '.join(di.LAYOUTS)} (see above)")
    parser.add_argument("source", metavar="SOURCE", help="the data set's folder, as downloaded")
    parser.add_argument("--data_root", metavar="OUT", default=None,
                        help=f"the data root to create; default ${paths.DATA_ROOT_ENV} or data/ (it must not exist "
                             "yet, or be empty)")
    parser.add_argument("--skip_missing", action="store_true",
                        help="import the clips whose audio exists and say how many were left out (default: a "
                             "clip without its audio file is an error)")
    group = parser.add_argument_group("csv layout")
    group.add_argument("--csv", metavar="FILE", help="the CSV, relative to SOURCE (.tsv: tab-separated)")
    group.add_argument("--audio_path", metavar="TEMPLATE",
                       help="each row's audio file relative to SOURCE, {column} fields formatted from the row, "
                            "e.g. 'recordings/{site}/{file_id}.flac'")
    group.add_argument("--label_column", metavar="NAME", help="the column holding each clip's (one) class")
    group.add_argument("--fold_column", metavar="NAME",
                       help="predefined folds, kept (values numbered 1..K in sorted order)")
    group.add_argument("--verified_column", metavar="NAME",
                       help="0/1, true/false or yes/no (default: every clip verified)")
    group.add_argument("--split_column", metavar="NAME", help="train or test; test rows become the test split")
    group = parser.add_argument_group("names layout")
    group.add_argument("--pattern", metavar="PATTERN",
                       help="each audio file's path relative to SOURCE, e.g. 'recordings/{label}_{fold}_{index}.wav': "
                            "{label} required, {fold} (values numbered 1..K in sorted order) and {split} (train or "
                            "test) optional, any other {name} matched and ignored")
    group.add_argument("--skip_unmatched", action="store_true",
                       help="leave out the audio files the pattern does not match and say how many (default: one is "
                            "an error)")
    group = parser.add_argument_group("folders layout")
    group.add_argument("--test", metavar="DIR",
                       help="a folder of the same shape holding the test split (a path, like SOURCE)")
    group.add_argument("--exclude", metavar="FOLDER", action="append", default=[],
                       help="a class folder to leave out, e.g. _background_noise_ (repeatable)")
    return parser.parse_args(argv)


def check_flags(args: argparse.Namespace) -> None:
    """Each layout's flags with that layout only: a flag another layout would use is a mistake, not a no-op."""
    given = [f"--{flag}" for flag in CSV_FLAGS if getattr(args, flag) is not None]
    if args.layout == "csv":
        needed = [f"--{flag}" for flag in ("csv", "audio_path", "label_column") if getattr(args, flag) is None]
        if needed:
            raise InputError(f"the csv layout needs {', '.join(needed)}")
    elif given:
        raise InputError(f"{given[0]} is for the csv layout, not {args.layout}")
    if args.layout != "folders" and (args.test or args.exclude):
        raise InputError(f"{'--test' if args.test else '--exclude'} is for the folders layout, not {args.layout}")
    if args.layout == "names" and args.pattern is None:
        raise InputError("the names layout needs --pattern, e.g. 'recordings/{label}_{fold}_{index}.wav'")
    if args.layout != "names" and (args.pattern is not None or args.skip_unmatched):
        flag = "--pattern" if args.pattern is not None else "--skip_unmatched"
        raise InputError(f"{flag} is for the names layout, not {args.layout}")


def read_source(args: argparse.Namespace, root: Path) -> di.Source:
    if args.layout == "csv":
        return di.read_csv_layout(root, args.csv, args.audio_path, args.label_column, args.fold_column,
                                  args.verified_column, args.split_column)
    if args.layout == "folders":
        return di.read_folders(root, Path(args.test) if args.test else None, args.exclude)
    if args.layout == "names":
        return di.read_names(root, args.pattern, skip_unmatched=args.skip_unmatched)
    return {"fsdkaggle2018": di.read_fsdkaggle2018, "fsdnoisy18k": di.read_fsdnoisy18k,
            "esc50": di.read_esc50}[args.layout](root)


def main(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    check_flags(args)
    root = Path(args.source)
    if not root.is_dir():
        raise DataError(f"SOURCE {root} is not a folder; give the data set's folder, as downloaded")
    out = di.check_data_root(paths.data_root(args.data_root))
    if args.layout in di.WALKED_LAYOUTS:
        di.check_outside(out, {"SOURCE": root, "--test": Path(args.test) if args.test else None})
    plan = di.plan_import(read_source(args, root), skip_missing=args.skip_missing)
    for note in plan.notes:
        print(note)
    methods = di.write_data_root(plan, out)
    if methods["symbolic link"]:
        print(f"note: symbolic links into {root.resolve()} (another file system): keep SOURCE where it is")
    print(f"{out}: {di.summary(plan, methods, time.perf_counter() - start)}")


if __name__ == "__main__":
    run_cli(main, parse_args())
