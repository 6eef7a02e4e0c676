"""What a resumed run must agree on with its checkpoint, by content and settings, and the lock that gives one
process a fold's outputs."""

import fcntl
import hashlib
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from utils.errors import StepFailed

# Where files are and how the step is run (device, threads, data path, compilation, memory layout, validation batch)
# change a run's numbers by rounding (and compiled code draws its dropout masks otherwise), not what it learns: a
# checkpoint resumes whatever they are. Mixed precision is substance.
WHERE_KEYS = ("data_root", "exp_root", "device", "threads", "data_on", "compile", "channels_last",
              "valid_batch_size", "folds_in_process")
PATH_KEYS = ("model", "train_file", "ini_params")  # compared by file name: a respelled path is the same file


def resume_differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The settings of substance in which a checkpoint's run and this one differ, as 'key: saved -> now'."""
    def substance(cfg: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in cfg.items() if k not in WHERE_KEYS}
        for key in PATH_KEYS:
            if out.get(key) is not None:
                out[key] = Path(out[key]).name
        return out

    a, b = substance(saved), substance(now)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]


def data_fingerprint(*files: Path) -> str:
    """What the run learns from, by content: the train file and the folds (not where they are)."""
    digest = hashlib.sha1()
    for f in files:
        digest.update(f.read_bytes())
    return digest.hexdigest()


@contextmanager
def fold_lock(path: Path) -> Iterator[None]:
    """One process owns a fold's outputs: a second identical command stops at once, naming the first. The OS
    drops the lock when its process dies, so a killed run never leaves a stale one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            owner = f.read().strip() or "another process"
            raise StepFailed(f"{owner} is already training these outputs ({path.with_suffix('')}); wait for it "
                               "to finish, or use another --exp_root or --tag") from None
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()} on {socket.gethostname()}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
