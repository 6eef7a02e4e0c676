"""Time import_dataset.py on a synthetic folders-layout data set against copying the same files.

    python -m benchmarks.import_dataset [--clips 20000] [--classes 20] [--seconds 0.1] [--tmp_dir /tmp]

The data set (tiny wav files; the same file names in every class folder, as in Speech Commands) is written once
into a temporary folder, then imported (hard links, train.csv, the fold check) and, as the baseline, copied file
by file with shutil.copy2 into a plain folder, in the same run and from the same warm page cache. The fold check's
sklearn import (once per process, however many clips) is timed apart. Everything is removed at the end."""

import argparse
import contextlib
import io
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

import import_dataset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=20000)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=0.1, help="length of every clip (32 kHz, 16 bit)")
    parser.add_argument("--tmp_dir", default=None, help="where the data set is written (default: the system's)")
    return parser.parse_args(argv)


def write_source(root: Path, clips: int, classes: int, seconds: float) -> int:
    """clips wav files in `classes` class folders; returns their total size in bytes. One wav is encoded and its
    bytes written to every file: the benchmark is about files, not about encoding."""
    buf = io.BytesIO()
    t = np.arange(int(seconds * 32000)) / 32000
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 32000, format="WAV", subtype="PCM_16")
    data = buf.getvalue()
    per_class = -(-clips // classes)
    for k in range(classes):
        folder = root / f"class {k:02d}"
        folder.mkdir(parents=True)
        for i in range(min(per_class, clips - k * per_class)):
            (folder / f"{i:08x}_nohash_0.wav").write_bytes(data)
    return clips * len(data)


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=args.tmp_dir, prefix="import_bench.") as tmp:
        tmp = Path(tmp)
        size = write_source(tmp / "source", args.clips, args.classes, args.seconds)
        files = sorted((tmp / "source").rglob("*.wav"))

        # make_folds' sklearn import (about a second, once per process) timed apart: it is not per clip
        start = time.perf_counter()
        import sklearn.model_selection  # noqa: F401

        sklearn_s = time.perf_counter() - start
        start = time.perf_counter()
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            import_dataset.main(import_dataset.parse_args(["folders", str(tmp / "source"),
                                                           "--data_root", str(tmp / "imported")]))
        linked = time.perf_counter() - start

        start = time.perf_counter()
        (tmp / "copied").mkdir()
        for n, path in enumerate(files):
            shutil.copy2(path, tmp / "copied" / f"{n}.wav")
        copied = time.perf_counter() - start

    print(printed.getvalue().strip().splitlines()[-1])
    print(f"{len(files)} clips, {size / 2**20:.0f} MiB")
    print(f"{'':28s} {'seconds':>8s} {'clips/s':>9s}")
    print(f"{'import_dataset (links)':28s} {linked:8.2f} {len(files) / linked:9.0f}")
    print(f"{'  + sklearn import, once':28s} {linked + sklearn_s:8.2f} {len(files) / (linked + sklearn_s):9.0f}")
    print(f"{'shutil.copy2 of each file':28s} {copied:8.2f} {len(files) / copied:9.0f}")
    print(f"copying takes {copied / linked:.1f}x the import's time ({copied / (linked + sklearn_s):.1f}x with "
          "the sklearn import)")


if __name__ == "__main__":
    main(parse_args())
