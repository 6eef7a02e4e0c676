"""Compute spectrograms (version 1 or 2) for a folder of audio clips: one <stem>.npy (128, frames) each.

    python prepare_spectrograms.py --audio_path data/audio_train --out_dir data/specs_train_v1 \\
        --spec_version 1 --dump

Files run in parallel (--jobs); each is decoded by what it holds, not by its extension (a .wav holding MP3 or
FLAC is read as such). A file that fails (unreadable, empty, too short for one spectrogram frame, ...) is reported
at the end and in <out_dir>/failed.txt; the others finish, and the exit status is 1. <out_dir>/sources.json
records what each spectrogram was made from (its audio's size, mtime, inode, ctime and sha256, and the .npy's):
a clip is skipped while both still hold that content, whatever their mtimes, so an interrupted run resumes and
audio replaced by other content is redone even under an older mtime (cp -p, rsync -a, tar x, a restored
backup). <out_dir>/manifest.json records the settings; a folder made with other settings is refused.
With --dump, the spectrograms are also gathered into <out_dir>/store/, one memory-mapped file that the
processes reading this folder share (utils/spec_store.py; rebuilt automatically when a .npy changes).
Without --dump nothing is written: the clips are only computed, as a check (--out_dir alone is refused).
"""

import argparse
import sys
from pathlib import Path

from utils.cli import cpu_cores, run_cli
from utils.spec_store import open_store
from utils.spectrogram_cache import (
    ManifestMismatch,
    build_manifest,
    check_or_write_manifest,
    list_audio,
    prepare,
    report,
    show,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    io = parser.add_argument_group("input and output")
    io.add_argument("--audio_path", required=True, help="folder of .wav clips")
    io.add_argument("--file_list", default=None,
                    help="optional CSV with an 'fname' column (or one name per line) naming the clips to use; "
                         "listed files that are missing are reported as failures")
    io.add_argument("--out_dir", "--spec_path", dest="out_dir", default=None,
                    help="output folder (required with --dump; with --show alone, where the PNG goes); "
                         "--spec_path is the seed's spelling")
    io.add_argument("--dump", action="store_true", help="write the spectrograms (otherwise only check)")
    io.add_argument("--show", type=int, default=0, metavar="N",
                    help="plot N spectrograms; without a display, save a PNG to --out_dir (or the cwd)")
    feat = parser.add_argument_group("features")
    feat.add_argument("--spec_version", type=int, choices=(1, 2), default=1)
    feat.add_argument("--no_preprocessing", action="store_true", help="skip the SoX silence clipping")
    run = parser.add_argument_group("running")
    run.add_argument("--jobs", type=int, default=cpu_cores(),
                     help=f"worker processes of one thread each, so jobs x 1 thread fill the cores without "
                          f"oversubscribing them (default {cpu_cores()}: every core)")
    run.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    preprocess = not args.no_preprocessing
    spec_path = Path(args.out_dir) if args.out_dir else None
    if args.dump and spec_path is None:
        print("error: --dump needs --out_dir", file=sys.stderr)
        return 2
    if spec_path is not None and not args.dump and not args.show:
        # an output folder without --dump used to compute every clip, then write nothing to it
        print(f"error: --out_dir {spec_path} without --dump would write nothing there; add --dump to write the "
              "spectrograms (or leave out --out_dir to only check that the clips can be computed)",
              file=sys.stderr)
        return 2
    try:
        files = list_audio(args.audio_path, args.file_list)
    except (FileNotFoundError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not files:
        print(f"error: no audio files in {args.audio_path}", file=sys.stderr)
        return 2
    status = 0
    if args.dump or not args.show:
        if args.dump:
            try:
                check_or_write_manifest(spec_path, build_manifest(args.spec_version, preprocess))
            except ManifestMismatch as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
        results = prepare(files, args.spec_version, preprocess, spec_path if args.dump else None,
                          jobs=args.jobs, progress=not args.no_progress)
        status = report(results, spec_path if args.dump else None)
        if not args.dump:  # "420 computed" alone could read as if spectrograms had been saved
            print("nothing was written: without --dump the clips are only computed, as a check; "
                  "add --dump --out_dir DIR to write them")
        if args.dump:  # the shared store every consumer reads; built now so fold processes find it ready
            open_store(spec_path, progress=not args.no_progress)
    if args.show:
        # Read back only outputs whose manifest was checked (--dump); the PNG goes to --out_dir anyway.
        show(files, args.show, args.spec_version, preprocess, spec_path if args.dump else None, spec_path)
    return status


if __name__ == "__main__":
    run_cli(main, parse_args())
