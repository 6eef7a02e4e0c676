"""One memory-mapped file per spectrogram folder, shared by every process that reads the folder.

The per-clip `<stem>.npy` files stay the readable cache; the store is built from them automatically:
    <spec_dir>/store/frames-<id>.npy  float32 (total_frames, n_bins), the clips one after another
    <spec_dir>/store/index.npz        stems, offsets, lengths, and each source .npy's identity (file_identity)

Frames are stored frame-major so the first max_len frames of a clip are one contiguous block: a process that
clips to max_len touches only those pages. The pages live in the OS page cache, so the four fold processes of
a node share one copy instead of holding four (each process's RSS counts the shared pages; PSS does not).

The index is checked against the folder on every open (a stat per file); any added, removed or rewritten
.npy rebuilds the store, under a lock so that fold processes starting together build it once."""

import fcntl
import mmap
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm import tqdm

from utils.atomic import atomic_write, save_npz
from utils.errors import DataError

STORE_DIR = "store"
INDEX_NAME = "index.npz"
LOCK_NAME = ".lock"


class SpecStore:
    """Read-only access to a folder's spectrograms as (n_bins, frames) views into the shared file."""

    def __init__(self, spec_dir: Path, frames: np.ndarray, stems: np.ndarray, offsets: np.ndarray,
                 lengths: np.ndarray):
        self.spec_dir = spec_dir
        self.frames = frames
        self.lengths = lengths  # frames per clip, in the order of the index
        self._where = {str(s): (int(o), int(n)) for s, o, n in zip(stems, offsets, lengths, strict=True)}

    def __contains__(self, fname: str) -> bool:
        return Path(fname).stem in self._where

    def __len__(self) -> int:
        return len(self._where)

    def get(self, fname: str, max_len: int | None = None) -> np.ndarray:
        """The clip's (n_bins, <=max_len frames) spectrogram: a view, no copy."""
        stem = Path(fname).stem
        if stem not in self._where:
            raise DataError(f"{self.spec_dir / (stem + '.npy')}: spectrogram missing (listed in the CSV); "
                            "run prepare_spectrograms.py")
        offset, length = self._where[stem]
        if max_len is not None:
            length = min(length, max_len)
        return self.frames[offset:offset + length].T


IDENTITY_KEYS = ("sizes", "mtimes", "inodes", "ctimes")  # the index's arrays of file_identity, in its order


def file_identity(st: os.stat_result) -> tuple[int, int, int, int]:
    """What tells a cache that a file is still the one it recorded; the one rule of both caches (this store and
    prepare_spectrograms.py's record of each clip's audio). Size and exact mtime change when a file is rewritten,
    but cp -p, rsync -a, tar x and restored backups put other bytes under an old mtime, and os.utime sets any;
    inode and ctime no copying tool can set: a new file gets a new inode and a ctime of now, a rewrite in place
    (or a utime) moves the ctime to now. So all four must match."""
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns


def _sources(spec_dir: Path) -> dict[str, tuple[int, int, int, int]]:
    return {p.stem: file_identity(p.stat()) for p in spec_dir.glob("*.npy")}


def _is_current(index: dict[str, np.ndarray], sources: dict[str, tuple[int, int, int, int]]) -> bool:
    if len(index["stems"]) != len(sources) or any(k not in index for k in IDENTITY_KEYS):
        return False  # an index without the identities (an older layout) is rebuilt
    recorded = zip(*(index[k].tolist() for k in IDENTITY_KEYS), strict=True)
    return all(sources.get(str(stem)) == tuple(ident) for stem, ident in zip(index["stems"], recorded, strict=True))


def _read_index(store_dir: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(store_dir / INDEX_NAME, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError):
        return None  # absent or unreadable: rebuilt


@contextmanager
def _locked(store_dir: Path) -> Iterator[None]:
    store_dir.mkdir(exist_ok=True)
    with open(store_dir / LOCK_NAME, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build(spec_dir: Path, store_dir: Path, sources: dict[str, tuple[int, int, int, int]], progress: bool) -> None:
    stems = sorted(sources)
    shapes = []
    for stem in stems:  # headers only (a memory map reads nothing more): validate before writing anything
        path = spec_dir / f"{stem}.npy"
        try:
            head = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: not a readable .npy spectrogram ({e}); delete it and run "
                            "prepare_spectrograms.py again") from None
        shape, dtype = head.shape, head.dtype
        del head
        if len(shape) != 2 or shape[1] == 0 or dtype != np.float32:
            raise DataError(f"{path}: expected a float32 (bins, frames) spectrogram, got {dtype} {shape}")
        shapes.append(shape)
    bins = {s[0] for s in shapes}
    if len(bins) > 1:
        raise DataError(f"{spec_dir}: spectrograms with different numbers of bins {sorted(bins)}")
    lengths = np.array([s[1] for s in shapes], dtype=np.int64)
    offsets = np.cumsum(lengths) - lengths
    n_bins = bins.pop() if bins else 0

    frames_name = f"frames-{uuid.uuid4().hex[:12]}.npy"

    def write_frames(tmp: str) -> None:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(int(lengths.sum()), n_bins))
        for stem, offset, length in tqdm(list(zip(stems, offsets, lengths, strict=True)), disable=not progress,
                                         desc=f"store {spec_dir.name}", unit="clip"):
            out[offset:offset + length] = np.load(spec_dir / f"{stem}.npy").T
        out.flush()
        del out
    atomic_write(store_dir / frames_name, write_frames)

    # inode numbers can pass 2**63 (NFS, overlayfs): unsigned; times before 1970 are negative: signed
    identities = {k: np.array([sources[s][i] for s in stems], dtype=np.uint64 if k == "inodes" else np.int64)
                  for i, k in enumerate(IDENTITY_KEYS)}
    save_npz(store_dir / INDEX_NAME, frames=np.asarray(frames_name), stems=np.asarray(stems, dtype=str),
             offsets=offsets, lengths=lengths, **identities)
    # Old frame files go; a process still mapping one keeps reading it until it exits (POSIX unlink).
    for old in store_dir.glob("frames-*.npy"):
        if old.name != frames_name:
            old.unlink()


def map_frames(path: Path) -> np.ndarray:
    """The frames file mapped read-only, advised for random access. By default a page fault also maps the
    neighbouring pages (read-ahead, fault-around): frames past max_len and the clips of other folds, which then
    count in every process's memory. MADV_RANDOM maps just what is read."""
    with open(path, "rb") as f:
        major, _ = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(f)
        offset = f.tell()
        if fortran_order or dtype != np.float32 or len(shape) != 2:
            raise DataError(f"{path}: not a store frames file; delete {path.parent} to rebuild it")
        if shape[0] == 0:
            return np.zeros(shape, np.float32)
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    mapped.madvise(mmap.MADV_RANDOM)
    return np.ndarray(shape, dtype, buffer=mapped, offset=offset)


def open_store(spec_dir: str | Path, progress: bool = False, retry: bool = True) -> SpecStore:
    """The folder's store, (re)built first if any .npy was added, removed or rewritten since it was made."""
    spec_dir = Path(spec_dir)
    if not spec_dir.is_dir():
        raise DataError(f"spectrogram folder {spec_dir} not found; run prepare_spectrograms.py first")
    store_dir = spec_dir / STORE_DIR
    sources = _sources(spec_dir)
    index = _read_index(store_dir)
    if index is None or not _is_current(index, sources):
        with _locked(store_dir):
            index = _read_index(store_dir)  # another process may have built it while we waited
            sources = _sources(spec_dir)
            if index is None or not _is_current(index, sources):
                _build(spec_dir, store_dir, sources, progress)
                index = _read_index(store_dir)
    if len(index["stems"]) == 0:
        return SpecStore(spec_dir, np.zeros((0, 0), np.float32), index["stems"], index["offsets"],
                         index["lengths"])
    try:
        frames = map_frames(store_dir / str(index["frames"]))
    except FileNotFoundError:
        if retry:  # rebuilt by another process between reading the index and mapping its frames
            return open_store(spec_dir, progress, retry=False)
        raise
    return SpecStore(spec_dir, frames, index["stems"], index["offsets"], index["lengths"])
