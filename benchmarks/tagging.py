"""How fast tag_files.py tags a folder: files/s and seconds of audio per second, one process against parallel
worker processes, for the demo ensemble and for one full model.

    python -m benchmarks.tagging [--audio DIR] [--n_files 8] [--seconds 4] [--jobs 1 2] [--bundle B.pt]

Without --audio, n_files synthetic clips (tones and noise, 44.1 kHz 16-bit, so resampling and SoX are on the
path) are written to a temporary folder. The demo ensemble is 8 members (models/vgg_gap_demo.py x 4 on v1,
models/vgg_gap_demo_v2.py x 4 on v2, max_len 1500, 21 classes) and the full model models/vgg_gap_spec2.py
(max_len 3000, 41 classes); weights are random (speed does not depend on them) unless --bundle replaces the
demo ensemble with a trained one. Each configuration runs the whole command (bundle loading, worker start-up
included) once after a warm-up of the same files."""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from utils.errors import StepFailed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", default=None, help="folder of audio to tag (default: synthetic clips)")
    parser.add_argument("--n_files", type=int, default=8, help="synthetic clips (default 8)")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each synthetic clip (default 4)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="worker counts to compare; 1 first")
    parser.add_argument("--bundle", default=None, help="a trained bundle instead of the random demo ensemble")
    parser.add_argument("--skip_full", action="store_true", help="only the demo ensemble")
    return parser.parse_args(argv)


def synthetic_clips(folder: Path, n: int, seconds: float, sr: int = 44100) -> list[Path]:
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    files = []
    for i in range(n):
        tone = np.sin(2 * np.pi * rng.uniform(80, 2000) * t) * np.exp(-rng.uniform(0, 2) * (t % 1.0))
        signal = (0.5 * tone + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
        files.append(folder / f"clip_{i:03d}.wav")
        sf.write(files[-1], signal, sr, subtype="PCM_16")
    return files


def random_bundle(path: Path, members: list[tuple[str, int, int]], n_classes: int) -> Path:
    """A bundle of randomly initialised networks: (model file, spectrogram version, max_len) per member."""
    import torch

    from utils.model_files import load_model_file
    from utils.tagging import make_bundle, save_bundle

    torch.manual_seed(0)
    entries = [{"model": model, "spec_version": version, "preprocessing": True, "max_len": max_len,
                "batch_size": 8, "classes": [f"class_{c}" for c in range(n_classes)], "source": "random",
                "state_dict": load_model_file(model).build_model(n_classes).state_dict()}
               for model, version, max_len in members]
    save_bundle(path, make_bundle(entries))
    return path


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (SoX, worker processes)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_tagging(bundle: Path, folder: Path, jobs: int, out: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds): on a busy machine the CPU time is the figure that does not depend on the load."""
    import tag_files

    start, cpu = time.perf_counter(), cpu_seconds()
    code = tag_files.main(tag_files.parse_args(["--bundle", str(bundle), str(folder), "--out", str(out),
                                                "--jobs", str(jobs), "--no_progress"]))
    if code != 0:
        raise StepFailed(f"tag_files.py failed on {folder}")
    return time.perf_counter() - start, cpu_seconds() - cpu


def main(args: argparse.Namespace) -> None:
    import contextlib
    import io

    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.audio:
            folder = Path(args.audio)
        else:
            folder = tmp / "audio"
            folder.mkdir()
            synthetic_clips(folder, args.n_files, args.seconds)
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".wav", ".flac", ".ogg", ".mp3"))
        audio_s = sum(sf.info(str(f)).duration for f in files)
        demo = [("models/vgg_gap_demo.py", 1, 1500)] * 4 + [("models/vgg_gap_demo_v2.py", 2, 1500)] * 4
        bundles = {"demo ensemble (8 members)": Path(args.bundle) if args.bundle else
                   random_bundle(tmp / "demo.pt", demo, 21)}
        if not args.skip_full:
            bundles["full model (vgg_gap_spec2)"] = random_bundle(tmp / "full.pt", [("models/vgg_gap_spec2.py", 2,
                                                                                      3000)], 41)
        print(f"{len(files)} files, {audio_s:.1f} s of audio, {os.cpu_count()} cores")
        print(f"{'bundle':30s} {'jobs':>4s} {'seconds':>8s} {'files/s':>8s} {'audio s/s':>9s} {'CPU s':>7s} "
              f"{'audio s/CPU s':>13s}")
        for name, bundle in bundles.items():
            with contextlib.redirect_stdout(io.StringIO()):  # warm-up: imports, page cache
                time_tagging(bundle, folder, 1, tmp / "warm.csv")
            for jobs in args.jobs:
                with contextlib.redirect_stdout(io.StringIO()):
                    seconds, cpu = time_tagging(bundle, folder, jobs, tmp / "tags.csv")
                print(f"{name:30s} {jobs:4d} {seconds:8.1f} {len(files) / seconds:8.2f} {audio_s / seconds:9.1f} "
                      f"{cpu:7.1f} {audio_s / cpu:13.1f}")


if __name__ == "__main__":
    main(parse_args())
