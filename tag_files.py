"""Tag audio files with a bundled ensemble (export_bundle.py): the top classes of each file, as a CSV.

    python tag_files.py --bundle bundle.pt recordings/ extra.flac list.txt --out tags.csv
    python tag_files.py --bundle bundle.pt long_recording.wav --segment 5 --plot --out timeline.csv

PATH is an audio file, a folder (searched recursively for wav, flac, ogg, opus, mp3, aiff) or a text file
(.txt/.lst) naming one path per line (relative to the list's folder; # starts a comment). Each member computes
its spectrogram exactly as prepare_spectrograms.py does and predicts the whole clip as eval.py does (tiled or
clipped to the max_len it was trained with); members are averaged as fusion.py does.

The CSV has a row per file (path, then label_i,prob_i for the --top_k most likely classes), in the order the
paths were given (folders sorted); a file that several paths name (F, ./F, a link to F, F and its folder) is
tagged once, under the first, and the summary counts the others. With --segment S, a file is cut into
consecutive S-second clips, each tagged as a clip of its own (a last piece shorter than S/2 joins the one
before), and the CSV gets a row per segment with its start and end in seconds. --plot saves per file a PNG of its
spectrogram with the top classes' probability over time under it. --posteriors writes every class's probability
(.npz, or .jsonl: one JSON object per row).

Every file is decoded by what it holds, not by its extension (a .wav holding MP3 is read as MP3). Files that
cannot be tagged (missing, empty, too short for one spectrogram frame, corrupt, not audio, a folder, a broken
link) are listed with the reason at the end; the others finish, and the exit status is 1."""

import argparse
import csv
import io
import json
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from utils.atomic import save_npz, save_text
from utils.audio import AUDIO_EXTENSIONS, TARGET_SR, min_samples
from utils.cli import check_threads, cpu_cores, run_cli, set_threads
from utils.errors import InputError, MissingFile
from utils.tagging import Failure, FileTags, Tagger, init_worker, tag_one, worker_tag

LIST_EXTENSIONS = {".txt", ".lst"}
TABLE_ROWS = 20  # rows printed; the CSV has them all
FILES_PER_WORKER = 8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="audio files, folders or .txt file lists")
    parser.add_argument("--bundle", required=True, help="the ensemble, from export_bundle.py")
    parser.add_argument("--out", required=True, help="CSV to write")
    out = parser.add_argument_group("outputs")
    out.add_argument("--top_k", type=int, default=3, help="classes per row (default 3)")
    out.add_argument("--posteriors", default=None, help="also write every class's probability (.npz or .jsonl)")
    out.add_argument("--segment", type=float, default=None, metavar="S",
                     help="tag consecutive S-second segments (a row each) instead of the whole file")
    out.add_argument("--plot", action="store_true", help="save a spectrogram + probability-over-time PNG per file")
    out.add_argument("--plot_dir", default=None, help="where the PNGs go (default: <out>_plots/)")
    run = parser.add_argument_group("running")
    run.add_argument("--jobs", type=int, default=cpu_cores(),
                     help=f"worker processes (default: all cores; at most one per {FILES_PER_WORKER} files; "
                          "1 runs in this process)")
    run.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    run.add_argument("--threads", type=int, default=None,
                     help=f"torch threads per process (default: the {cpu_cores()} cores shared out among the "
                          "workers, so they never oversubscribe them; every core with one process)")
    run.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


# ---- inputs ----------------------------------------------------------------------------------------------------

def collect_inputs(paths: list[str]) -> tuple[list[str], int]:
    """Every file to tag, in the order given (folders sorted), and how many paths named a file already listed:
    paths that resolve to the same file (F, ./F, a link to F, F inside a folder also given) are one file, tagged
    once under its first spelling. Bad entries stay in the list (a missing path, a folder named x.wav, a broken
    link) so that tagging reports them."""
    found: list[str] = []
    for arg in paths:
        p = Path(arg)
        if p.is_dir() and p.suffix.lower() not in AUDIO_EXTENSIONS:
            found += walk_folder(p)
        elif p.suffix.lower() in LIST_EXTENSIONS and p.is_file():
            found += read_list(p)
        else:
            found.append(arg)
    first: dict[object, str] = {}
    for path in found:
        first.setdefault(same_file_key(path), path)
    return list(first.values()), len(found) - len(first)


def same_file_key(path: str) -> object:
    """Equal for two paths to one file: its device and inode (which also join hard links), or, for a path that
    names nothing, the path with links and ./.. resolved."""
    try:
        st = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return st.st_dev, st.st_ino


def walk_folder(folder: Path) -> list[str]:
    """Audio files under folder, sorted; a folder whose name looks like audio is listed, not entered, so that it
    is reported rather than silently skipped. Hidden files and folders are skipped."""
    out = []
    for root, dirs, files in os.walk(folder):
        audio_dirs = [d for d in dirs if Path(d).suffix.lower() in AUDIO_EXTENSIONS]
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in audio_dirs)
        names = [f for f in files if Path(f).suffix.lower() in AUDIO_EXTENSIONS] + audio_dirs
        out += [str(Path(root) / n) for n in sorted(names) if not n.startswith(".")]
    return sorted(out, key=lambda s: Path(s).parts)


def read_list(path: Path) -> list[str]:
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return [str(Path(line) if Path(line).is_absolute() else path.parent / line) for line in lines if line]


def plot_names(files: list[str], plot_dir: Path) -> list[str]:
    """A PNG name per file: its stem, numbered when two files share one."""
    used: dict[str, int] = {}
    names = []
    for f in files:
        stem = Path(f).stem or "file"
        used[stem] = used.get(stem, 0) + 1
        names.append(str(plot_dir / (f"{stem}.png" if used[stem] == 1 else f"{stem}_{used[stem]}.png")))
    return names


# ---- running -----------------------------------------------------------------------------------------------------

def run(tagger: Tagger, bundle: str, files: list[str], segment: float | None, pngs: list[str | None], jobs: int,
        device: str | None, progress: bool, threads: int | None = None) -> list[FileTags | Failure]:
    """Tag the files, in parallel worker processes when there are enough files to pay for their start-up; results
    come back in the files' order."""
    from tqdm import tqdm

    bar = dict(total=len(files), disable=not progress, unit="file", desc="tagging")
    # a worker's start-up (torch, the bundle) costs a few files' worth of work: below FILES_PER_WORKER files per
    # worker one process is as fast (benchmarks/tagging.py: 8 files, 1 vs 2 workers, no gain)
    jobs = min(jobs, len(files) // FILES_PER_WORKER)
    if jobs <= 1 or tagger.device.type == "cuda":  # one process keeps a GPU busy; workers would each load it
        set_threads(threads or cpu_cores())
        return [tag_one(tagger, f, segment, png) for f, png in tqdm(list(zip(files, pngs, strict=True)), **bar)]
    threads = threads or max(1, cpu_cores() // jobs)
    # spawn, not fork: a forked child of a process that has run torch can hang in its thread pool
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=init_worker,
                             initargs=(bundle, device, threads, os.getpid())) as pool:
        futures = [pool.submit(worker_tag, f, segment, png) for f, png in zip(files, pngs, strict=True)]
        try:
            for future in tqdm(futures, **bar):
                future.result()
        except BaseException:
            pool.shutdown(cancel_futures=True)  # ^C: do not wait for the queued files
            raise
        return [future.result() for future in futures]


# ---- outputs -------------------------------------------------------------------------------------------------------

def rows_of(results: list[FileTags | Failure]) -> list[tuple[str, float, float, np.ndarray]]:
    """(path, start, end, posteriors) per CSV row: a file's segments in time order, files in input order."""
    return [(r.path, float(s), float(e), p) for r in results if isinstance(r, FileTags)
            for s, e, p in zip(r.starts, r.ends, r.probs, strict=True)]


def csv_text(rows: list, classes: list[str], top_k: int, segments: bool) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    k = min(top_k, len(classes))
    writer.writerow(["path", *(["start", "end"] if segments else []),
                     *[f"{what}_{i}" for i in range(1, k + 1) for what in ("label", "prob")]])
    for path, start, end, probs in rows:
        top = np.argsort(-probs, kind="stable")[:k]
        writer.writerow([path, *([f"{start:.3f}", f"{end:.3f}"] if segments else []),
                         *[v for c in top for v in (classes[c], f"{probs[c]:.4f}")]])
    return buf.getvalue()


def save_posteriors(path: str, rows: list, classes: list[str]) -> None:
    """Every class's probability per row: .npz (paths, start, end, classes, probs) or .jsonl."""
    if path.endswith(".jsonl"):
        save_text(path, "".join(json.dumps({"path": p, "start": s, "end": e,
                                            "probs": dict(zip(classes, map(float, pr), strict=True))}) + "\n"
                                for p, s, e, pr in rows))
        return
    if not path.endswith(".npz"):
        raise InputError(f"--posteriors {path}: give a .npz or .jsonl file name")
    arrays = {"paths": np.array([r[0] for r in rows], dtype=str), "start": np.array([r[1] for r in rows]),
              "end": np.array([r[2] for r in rows]), "classes": np.array(classes, dtype=str),
              "probs": np.array([r[3] for r in rows], dtype=np.float32).reshape(len(rows), len(classes))}
    save_npz(path, **arrays)


def print_table(rows: list, classes: list[str], segments: bool) -> None:
    for path, start, end, probs in rows[:TABLE_ROWS]:
        top = np.argsort(-probs, kind="stable")[:3]
        when = f" {start:8.1f}-{end:<8.1f}" if segments else ""
        name = path if len(path) <= 40 else "..." + path[-37:]
        print(f"{name:40s}{when} " + "  ".join(f"{classes[c]} {probs[c]:.2f}" for c in top))
    if len(rows) > TABLE_ROWS:
        print(f"... and {len(rows) - TABLE_ROWS} more rows")


def report_problems(results: list[FileTags | Failure], max_seconds: float, segments: bool) -> int:
    """Warnings, files clipped to max_len, and the failures with their reasons; the exit status."""
    tagged = [r for r in results if isinstance(r, FileTags)]
    for r in tagged:
        for w in r.warnings:
            print(f"warning: {w}", file=sys.stderr)
    long = [r for r in tagged if r.duration > max_seconds]
    if long and not segments:
        print(f"note: {len(long)} file(s) are longer than {max_seconds:.1f} s, of which the networks see the first "
              f"{max_seconds:.1f} s; --segment tags them piece by piece", file=sys.stderr)
    failed = [r for r in results if isinstance(r, Failure)]
    if failed:
        print(f"{len(failed)} of {len(results)} file(s) could not be tagged:", file=sys.stderr)
        for r in failed:
            print(f"  {r.path}: {r.reason}", file=sys.stderr)
    return 1 if failed else 0


def main(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise InputError(f"--top_k must be at least 1, got {args.top_k}")
    shortest = min_samples(TARGET_SR) / TARGET_SR  # one spectrogram frame
    if args.segment is not None and not (math.isfinite(args.segment) and args.segment >= shortest):
        raise InputError(f"--segment must be a number of seconds of at least {shortest:.3f} (one spectrogram frame), "
                         f"got {args.segment}")
    if args.jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {args.jobs}")
    if Path(args.out).is_dir():
        raise InputError(f"--out {args.out} is a folder; give the CSV's file name")
    check_threads(args.threads)
    tagger = Tagger.from_bundle(args.bundle, args.device)
    files, repeated = collect_inputs(args.paths)
    if not files:
        raise MissingFile(f"no audio files in {' '.join(args.paths)}")
    plot_dir = Path(args.plot_dir or f"{Path(args.out).with_suffix('')}_plots")
    pngs = plot_names(files, plot_dir) if args.plot else [None] * len(files)
    if args.plot:
        plot_dir.mkdir(parents=True, exist_ok=True)
    results = run(tagger, args.bundle, files, args.segment, pngs, args.jobs, args.device, not args.no_progress,
                  args.threads)

    rows = rows_of(results)
    segments = args.segment is not None
    save_text(args.out, csv_text(rows, tagger.classes, args.top_k, segments))
    if args.posteriors:
        save_posteriors(args.posteriors, rows, tagger.classes)
    print_table(rows, tagger.classes, segments)
    n_ok = sum(isinstance(r, FileTags) for r in results)
    saved = [args.out, *([args.posteriors] if args.posteriors else []), *([f"{plot_dir}/"] if args.plot else [])]
    again = f"; {repeated} path(s) named a file already listed, tagged once" if repeated else ""
    print(f"tagged {n_ok} of {len(files)} file(s) ({len(rows)} rows) with {len(tagger.members)} member(s): "
          f"{', '.join(saved)}{again}")
    return report_problems(results, tagger.max_seconds, segments)


if __name__ == "__main__":
    run_cli(main, parse_args())
