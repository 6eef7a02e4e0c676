"""The spectrogram cache behind prepare_spectrograms.py: listing clips, computing them in parallel worker
processes, the manifest that keeps folders of different settings apart, the record of what each spectrogram was
made from, the failure report and plots."""

import ctypes
import hashlib
import json
import os
import signal
import sys
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utils.atomic import WriteError, save_json, save_npy, save_text
from utils.audio import AUDIO_EXTENSIONS, AudioError, sox_version
from utils.errors import FsdtagError, MissingFile
from utils.paths import MANIFEST_NAME
from utils.plots import has_display, pyplot, save_figure
from utils.spec_store import file_identity
from utils.spectrogram import spectrogram_from_file, spectrogram_params

FAILED_NAME = "failed.txt"
SOURCES_NAME = "sources.json"
# how often a run saves the record of its finished clips: a killed run loses at most this much work
SAVE_EVERY_S = 10.0


class ManifestMismatch(FsdtagError):
    """The spec folder holds spectrograms made with other settings."""


@dataclass
class FileResult:
    audio: str
    status: str  # "written", "computed" (no --dump), "skipped" or "failed"
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    n_frames: int = 0
    source: dict | None = None  # for "written": the record of its audio and its .npy (SourceRecords)


# ---- inputs and outputs ---------------------------------------------------------------------------------

def list_audio(audio_path: str | Path, file_list: str | Path | None = None) -> list[Path]:
    """Audio files to process: those named in file_list (kept even if missing, so they get reported), else
    every non-hidden .wav in audio_path."""
    audio_path = Path(audio_path)
    if file_list is not None:
        return [audio_path / name for name in _read_file_list(Path(file_list))]
    if not audio_path.is_dir():
        raise MissingFile(f"--audio_path {audio_path} is not a folder")
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


# ---- what each spectrogram was made from ------------------------------------------------------------------

def content_record(path: Path) -> dict:
    """A file's identity (spec_store.file_identity) and sha256, both of the one file opened. Hashing costs about
    0.5 ms per 5 s clip (840 MiB/s), under 1% of the clip's spectrogram; it is read back only where the identity
    moved."""
    with open(path, "rb") as f:
        identity = file_identity(os.fstat(f.fileno()))
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return {"identity": list(identity), "sha256": digest}


def _same_content(recorded: dict, path: Path) -> dict | None:
    """path's record if it still holds the recorded content, refreshed where only its identity moved (a copy, a
    chmod, a restored backup of the same bytes); None if it holds other content. OSError if it cannot be read."""
    st = path.stat()
    if list(file_identity(st)) == recorded["identity"]:
        return recorded
    if st.st_size != recorded["identity"][0]:
        return None
    fresh = content_record(path)
    return fresh if fresh["sha256"] == recorded["sha256"] else None


class SourceRecords:
    """<spec_path>/sources.json: for each <stem>.npy, the audio it was made from and the .npy as written (the
    content_record of each). A spectrogram is current while both files hold the recorded content, whatever their
    mtimes say; a folder without the file has no current spectrograms. Saved atomically at the end of a run and
    every SAVE_EVERY_S seconds during it."""

    def __init__(self, spec_path: Path):
        self.path = spec_path / SOURCES_NAME
        try:
            entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            entries = None
        self.entries: dict[str, dict] = entries if isinstance(entries, dict) else {}
        self._saved_at = time.monotonic()
        self._dirty = False

    def is_current(self, audio: Path, npy: Path) -> bool:
        entry = self.entries.get(npy.stem)
        if entry is None:
            return False
        try:
            now = {"audio": _same_content(entry["audio"], audio), "npy": _same_content(entry["npy"], npy)}
        except OSError:  # a file missing or unreadable
            return False
        if None in now.values():
            return False
        if now != entry:
            self._set(npy.stem, now)
        return True

    def add(self, result: FileResult, npy: Path) -> None:
        """Record a finished clip. A recorded clip that failed (it was redone because its audio or .npy changed)
        loses its record; if its audio is still there, its old .npy is removed too, so that no frames of other
        content stay in the folder (nor in the store built from it); the result's message says so."""
        if result.status == "written":
            self._set(npy.stem, result.source)
        elif result.status == "failed" and self.entries.get(npy.stem) is not None:
            self._set(npy.stem, None)
            if Path(result.audio).exists() and npy.exists():
                npy.unlink()
                result.message += f"; removed its old spectrogram {npy}, which no longer matched the audio"
        if self._dirty and time.monotonic() - self._saved_at >= SAVE_EVERY_S:
            self.save()

    def _set(self, stem: str, entry: dict | None) -> None:
        if entry is None:
            self.entries.pop(stem, None)
        else:
            self.entries[stem] = entry
        self._dirty = True

    def save(self) -> None:
        if self._dirty:
            save_text(self.path, json.dumps(self.entries) + "\n")
        self._saved_at, self._dirty = time.monotonic(), False


# ---- the work ---------------------------------------------------------------------------------------------

def process_file(audio: str, version: int, preprocess: bool, out: str | None) -> FileResult:
    """One clip: the result says what happened. Runs in a worker process. Raises only a WriteError (full disk,
    no permission), which every later clip would hit as well."""
    made_from = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if out is not None:
                # before decoding: audio replaced meanwhile then differs from the record, and is redone next run
                try:
                    made_from = content_record(Path(audio))
                except OSError:
                    pass  # missing or unreadable: decoding says why
            spec = spectrogram_from_file(audio, version, preprocess=preprocess)
            if out is not None:
                save_npy(out, spec)
            status, message, n_frames = ("written" if out else "computed"), "", spec.shape[1]
            source = {"audio": made_from, "npy": content_record(Path(out))} if made_from and out else None
        except AudioError as e:
            status, message, n_frames, source = "failed", str(e), 0, None
        except WriteError:  # a full disk (or a read-only folder) fails every clip after this one: stop the run
            raise
        except Exception as e:  # one odd file must not end a 9,500-file run
            status, message, n_frames, source = "failed", f"{audio}: {type(e).__name__}: {e}", 0, None
    shown = list(dict.fromkeys(str(w.message) for w in caught))  # a decoder's note comes once per read
    return FileResult(audio, status, message.replace("\n", " "), shown, n_frames, source)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def end_with_parent(parent: int) -> None:
    """Make this worker process end when its parent (the pid of the process that forked or spawned it) does, even
    on kill -9, which gives the parent no chance to stop its pool: its workers would go on as children of init.
    Linux sends SIGTERM on the parent's death (prctl PR_SET_PDEATHSIG); elsewhere a thread checks every second."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a handler inherited through fork could keep it alive
    if sys.platform.startswith("linux") and ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM)) == 0:
        if os.getppid() != parent:  # the parent died before the prctl: no signal will come
            os._exit(1)
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="end_with_parent").start()


def _init_worker(parent: int) -> None:
    end_with_parent(parent)
    # Each worker is one core's worth of work; BLAS threads on top would only oversubscribe the cores.
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1)


def prepare(files: list[Path], version: int, preprocess: bool = True, spec_path: Path | None = None,
            jobs: int = 1, progress: bool = True) -> list[FileResult]:
    """Spectrograms for files, written to spec_path (skipping current ones: SourceRecords) unless it is None."""
    from tqdm import tqdm

    records = SourceRecords(spec_path) if spec_path is not None else None
    results, todo = [], []
    for audio in files:
        out = spec_file(spec_path, audio) if spec_path is not None else None
        if records is not None and records.is_current(audio, out):
            results.append(FileResult(str(audio), "skipped"))
        else:
            todo.append((str(audio), version, preprocess, str(out) if out else None))

    def done(result: FileResult) -> None:
        results.append(result)
        if records is not None:
            records.add(result, spec_file(spec_path, result.audio))

    bar = dict(total=len(todo), disable=not progress or not todo, unit="file", desc=f"spectrograms v{version}")
    try:
        if jobs <= 1 or len(todo) <= 1:
            for task in tqdm(todo, **bar):
                done(process_file(*task))
            return results
        with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), initializer=_init_worker,
                                 initargs=(os.getpid(),)) as pool:
            futures = [pool.submit(process_file, *task) for task in todo]
            try:
                # The bar (and its monitor thread) starts after the workers are forked.
                for future in tqdm(as_completed(futures), **bar):
                    done(future.result())
            except BaseException:
                # leaving the with block would wait for every queued clip; a failed write or ^C stops them now
                pool.shutdown(cancel_futures=True)
                raise
        return results
    finally:  # an interrupted run keeps the record of what it finished, and so resumes
        if records is not None:
            records.save()


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
    """Plot the first n spectrograms that can be made (read from spec_path when there and current);
    without a display, save <png_dir or cwd>/spectrograms_v<version>.png and return its path."""
    headless = not has_display()
    plt = pyplot(interactive=True)

    records = SourceRecords(spec_path) if spec_path is not None else None
    shown = []
    for audio in files:
        if len(shown) >= n:
            break
        out = spec_file(spec_path, audio) if spec_path is not None else None
        try:
            spec = (np.load(out) if records is not None and records.is_current(audio, out)
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
