"""The spectrogram cache behind prepare_spectrograms.py: listing clips, computing them in parallel worker
processes, the manifest that keeps folders of different settings apart, the failure report and plots."""

import json
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utils.atomic import WriteError, save_json, save_npy, save_text
from utils.audio import AudioError, sox_version
from utils.plots import has_display, pyplot, save_figure
from utils.spectrogram import spectrogram_from_file, spectrogram_params

AUDIO_EXTENSIONS = {".wav"}
MANIFEST_NAME = "manifest.json"
FAILED_NAME = "failed.txt"


class ManifestMismatch(Exception):
    """The spec folder holds spectrograms made with other settings."""


@dataclass
class FileResult:
    audio: str
    status: str  # "written", "computed" (no --dump), "skipped" or "failed"
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    n_frames: int = 0


# ---- inputs and outputs ---------------------------------------------------------------------------------

def list_audio(audio_path: str | Path, file_list: str | Path | None = None) -> list[Path]:
    """Audio files to process: those named in file_list (kept even if missing, so they get reported), else
    every non-hidden .wav in audio_path."""
    audio_path = Path(audio_path)
    if file_list is not None:
        return [audio_path / name for name in _read_file_list(Path(file_list))]
    if not audio_path.is_dir():
        raise FileNotFoundError(f"--audio_path {audio_path} is not a folder")
    return sorted(p for p in audio_path.iterdir()
                  if p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith("."))


def _read_file_list(path: Path) -> list[str]:
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if lines and "fname" in lines[0].split(","):
        import pandas as pd  # DCASE's train.csv / test.csv layout

        return [str(name) for name in pd.read_csv(path)["fname"]]
    return lines


def spec_file(spec_path: str | Path, audio: str | Path) -> Path:
    return Path(spec_path) / f"{Path(audio).stem}.npy"


def build_manifest(version: int, preprocess: bool) -> dict:
    """Everything that decides the outputs; two folders with equal manifests hold comparable arrays."""
    import librosa
    import scipy
    import soundfile
    import soxr

    return {
        "spec_version": version,
        "preprocessing": {"sox_silence_clipping": preprocess},
        "params": spectrogram_params(version),
        "output": {"dtype": "float32", "layout": "(n_bins, n_frames)", "name": "<audio stem>.npy"},
        "library_versions": {
            "numpy": np.__version__, "scipy": scipy.__version__, "librosa": librosa.__version__,
            "soxr": soxr.__version__, "soundfile": soundfile.__version__,
            "sox": sox_version() if preprocess else "unused",
        },
    }


def check_or_write_manifest(spec_path: Path, manifest: dict) -> None:
    """Write the manifest into a fresh folder; raise ManifestMismatch if the folder's differs."""
    path = spec_path / MANIFEST_NAME
    # json round trip so tuples and lists, ints and floats compare as they will once saved
    manifest = json.loads(json.dumps(manifest))
    if path.exists():
        existing = json.loads(path.read_text())
        if existing != manifest:
            diff = _diff_keys(existing, manifest)
            shown = ", ".join(diff[:3]) + (f" and {len(diff) - 3} more" if len(diff) > 3 else "")
            raise ManifestMismatch(
                f"{spec_path} holds spectrograms made with other settings ({shown}); "
                f"pick another --out_dir or delete that folder")
        return
    if spec_path.is_dir() and any(spec_path.glob("*.npy")):
        raise ManifestMismatch(f"{spec_path} holds .npy files but no {MANIFEST_NAME}, so their settings are "
                               f"unknown; pick another --out_dir or delete that folder")
    save_json(path, manifest)


def _diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in [*a, *(k for k in b if k not in a)]:  # manifest order: spec_version first
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff_keys(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} -> {vb!r}")
    return out


def is_up_to_date(npy: Path, audio: Path) -> bool:
    try:
        return npy.stat().st_mtime >= audio.stat().st_mtime
    except OSError:
        return False


# ---- the work ---------------------------------------------------------------------------------------------

def process_file(audio: str, version: int, preprocess: bool, out: str | None) -> FileResult:
    """One clip: the result says what happened. Runs in a worker process. Raises only a WriteError (full disk,
    no permission), which every later clip would hit as well."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            spec = spectrogram_from_file(audio, version, preprocess=preprocess)
            if out is not None:
                save_npy(out, spec)
            status, message, n_frames = ("written" if out else "computed"), "", spec.shape[1]
        except AudioError as e:
            status, message, n_frames = "failed", str(e), 0
        except WriteError:  # a full disk (or a read-only folder) fails every clip after this one: stop the run
            raise
        except Exception as e:  # one odd file must not end a 9,500-file run
            status, message, n_frames = "failed", f"{audio}: {type(e).__name__}: {e}", 0
    return FileResult(audio, status, message.replace("\n", " "), [str(w.message) for w in caught], n_frames)


def _limit_threads() -> None:
    # Each worker is one core's worth of work; BLAS threads on top would only oversubscribe the cores.
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1)


def prepare(files: list[Path], version: int, preprocess: bool = True, spec_path: Path | None = None,
            jobs: int = 1, progress: bool = True) -> list[FileResult]:
    """Spectrograms for files, written to spec_path (skipping up-to-date ones) unless it is None."""
    from tqdm import tqdm

    results, todo = [], []
    for audio in files:
        out = spec_file(spec_path, audio) if spec_path is not None else None
        if out is not None and out.exists() and is_up_to_date(out, audio):
            results.append(FileResult(str(audio), "skipped"))
        else:
            todo.append((str(audio), version, preprocess, str(out) if out else None))
    bar = dict(total=len(todo), disable=not progress or not todo, unit="file", desc=f"spectrograms v{version}")
    if jobs <= 1 or len(todo) <= 1:
        results += [process_file(*task) for task in tqdm(todo, **bar)]
        return results
    with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), initializer=_limit_threads) as pool:
        futures = [pool.submit(process_file, *task) for task in todo]
        try:
            # The bar (and its monitor thread) starts after the workers are forked.
            for future in tqdm(as_completed(futures), **bar):
                results.append(future.result())
        except BaseException:
            # leaving the with block would wait for every queued clip; a failed write or ^C stops them now
            pool.shutdown(cancel_futures=True)
            raise
    return results


def report(results: list[FileResult], spec_path: Path | None) -> int:
    """Print a summary; write failed.txt next to the outputs; the exit status."""
    counts = {s: sum(r.status == s for r in results) for s in ("written", "computed", "skipped", "failed")}
    failed = sorted((r for r in results if r.status == "failed"), key=lambda r: r.audio)
    warned = sorted((r for r in results if r.warnings), key=lambda r: r.audio)
    for r in warned[:20]:
        for w in r.warnings:
            print(f"warning: {w}", file=sys.stderr)
    if len(warned) > 20:
        print(f"... and warnings for {len(warned) - 20} more files", file=sys.stderr)
    print(", ".join(f"{n} {s}" for s, n in counts.items() if n) + f", {len(warned)} with warnings")
    failed_file = spec_path / FAILED_NAME if spec_path is not None else None
    if failed:
        print(f"{len(failed)} file(s) failed:", file=sys.stderr)
        for r in failed[:20]:
            print(f"  {r.message}", file=sys.stderr)
        if len(failed) > 20:
            print(f"  ... and {len(failed) - 20} more", file=sys.stderr)
        if failed_file is not None:
            save_text(failed_file, "".join(f"{r.message}\n" for r in failed))
            print(f"list of failures: {failed_file}", file=sys.stderr)
        return 1
    if failed_file is not None and failed_file.exists():
        failed_file.unlink()  # stale: this run had no failures
    return 0


# ---- plotting -----------------------------------------------------------------------------------------------

def show(files: list[Path], n: int, version: int, preprocess: bool, spec_path: Path | None,
         png_dir: Path | None = None) -> Path | None:
    """Plot the first n spectrograms that can be made (read from spec_path when there and up to date);
    without a display, save <png_dir or cwd>/spectrograms_v<version>.png and return its path."""
    headless = not has_display()
    plt = pyplot(interactive=True)

    shown = []
    for audio in files:
        if len(shown) >= n:
            break
        out = spec_file(spec_path, audio) if spec_path is not None else None
        try:
            spec = (np.load(out) if out is not None and out.exists() and is_up_to_date(out, audio)
                    else spectrogram_from_file(audio, version, preprocess=preprocess))
        except AudioError as e:
            print(f"not shown: {e}", file=sys.stderr)
            continue
        shown.append((audio, spec))
    if not shown:
        print("nothing to show", file=sys.stderr)
        return None
    fig, axes = plt.subplots(len(shown), 1, figsize=(10, 2.5 * len(shown)), squeeze=False)
    for ax, (audio, spec) in zip(axes[:, 0], shown, strict=True):
        ax.imshow(spec, origin="lower", aspect="auto", interpolation="nearest", cmap="viridis")
        ax.set_title(f"{Path(audio).name}  (v{version}, {spec.shape[0]} bins x {spec.shape[1]} frames)")
        ax.set_ylabel("bin")
    axes[-1, 0].set_xlabel("frame")
    fig.tight_layout()
    if not headless:
        plt.show()
        return None
    png = (png_dir or Path.cwd()) / f"spectrograms_v{version}.png"
    save_figure(fig, png)
    plt.close(fig)
    print(f"no display: saved the plot to {png}")
    return png
