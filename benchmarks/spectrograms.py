"""Time preparing version-1 spectrograms for a folder: the seed's serial loop against prepare_spectrograms.

    python -m benchmarks.spectrograms [--audio_path data/audio_train] [--limit 300] [--jobs N]

The seed's loop, per file: SoX into a temporary wav, librosa.load, the writeup's v1 code. Ours: SoX piped
into memory, mel basis built once, files spread over worker processes. Both run SoX with -R so its dither
is repeatable and the outputs can be compared.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from utils import spectrogram_cache
from utils.audio import SOX_EFFECTS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio_path", default="data/audio_train")
    parser.add_argument("--limit", type=int, default=300, help="use the first N files (0: all)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    return parser.parse_args(argv)


def seed_v1(path: Path, tmp_dir: Path) -> np.ndarray:
    """The writeup's per-file code."""
    import librosa

    tmp = tmp_dir / "clipped.wav"
    subprocess.run(["sox", "-R", str(path), str(tmp), *SOX_EFFECTS], check=True, capture_output=True)
    sig, sr = librosa.load(tmp, sr=32000, mono=True)
    stft = np.abs(librosa.stft(sig, n_fft=1024, hop_length=192, win_length=None, window="hann", center=True,
                               pad_mode="reflect"))
    freqs = librosa.fft_frequencies(sr=sr, n_fft=1024)
    stft = librosa.perceptual_weighting(stft ** 2, freqs, ref=1.0, amin=1e-10, top_db=99.0)
    return librosa.feature.melspectrogram(S=stft, sr=sr, n_mels=128).astype(np.float32)


def main(args: argparse.Namespace) -> int:
    import warnings

    warnings.filterwarnings("ignore")  # librosa's A-weighting log10(0) warning, once per file
    files = spectrogram_cache.list_audio(args.audio_path)[:args.limit or None]
    if not files:
        print(f"no .wav files in {args.audio_path}", file=sys.stderr)
        return 2
    print(f"{len(files)} files from {args.audio_path}, {args.jobs} jobs, {os.cpu_count()} cores")
    seed_v1(files[0], Path(tempfile.mkdtemp()))  # librosa's lazy imports, outside both timings

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        seed = {f.stem: seed_v1(f, tmp) for f in files}
        t_seed = time.perf_counter() - start

        spec_path = tmp / "specs"
        start = time.perf_counter()
        results = spectrogram_cache.prepare(files, 1, preprocess=True, spec_path=spec_path, jobs=args.jobs,
                                               progress=False)
        t_ours = time.perf_counter() - start
        failed = [r.message for r in results if r.status == "failed"]

        max_diff, n_equal = 0.0, 0
        for stem, expected in seed.items():
            ours = np.load(spec_path / f"{stem}.npy")
            if ours.shape != expected.shape:
                print(f"{stem}: shape {ours.shape} != seed's {expected.shape}", file=sys.stderr)
                return 1
            n_equal += np.array_equal(ours, expected)
            max_diff = max(max_diff, float(np.max(np.abs(ours - expected) / (1 + np.abs(expected)))))

    n = len(files)
    print(f"seed serial loop:      {t_seed:7.2f} s  {n / t_seed:7.1f} files/s")
    print(f"prepare_spectrograms:  {t_ours:7.2f} s  {n / t_ours:7.1f} files/s  ({args.jobs} jobs)")
    print(f"speed-up: {t_seed / t_ours:.2f}x")
    print(f"outputs: {n_equal}/{n} bit-identical, max relative difference {max_diff:.2e}")
    if failed:
        print(f"{len(failed)} failed: {failed[:3]}", file=sys.stderr)
    return 0 if max_diff <= 1e-5 and not failed else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
