"""The shared spectrogram store: same arrays as the .npy cache, rebuilt when the cache changes, built once and
mapped (not copied) by several processes at a time."""

import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from utils.dataset_csv import DataError
from utils.paths import REPO
from utils.spec_data import load_spectrograms
from utils.spec_store import STORE_DIR, open_store


def make_folder(path: Path, n: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    specs = {}
    for i in range(n):
        spec = rng.normal(size=(16, int(rng.integers(5, 300)))).astype(np.float32)
        np.save(path / f"{i:08x}.npy", spec)
        specs[f"{i:08x}.wav"] = spec
    return specs


def frames_file(folder: Path) -> Path:
    (path,) = (folder / STORE_DIR).glob("frames-*.npy")
    return path


def test_store_gives_the_cached_arrays_clipped_without_copies(tmp_path):
    specs = make_folder(tmp_path / "specs")
    got = load_spectrograms(tmp_path / "specs", list(specs), max_len=100)
    store = open_store(tmp_path / "specs")
    for fname, spec, loaded in zip(specs, specs.values(), got, strict=True):
        np.testing.assert_array_equal(loaded, spec[:, :100])
        view = store.get(fname, max_len=100)
        np.testing.assert_array_equal(view, spec[:, :100])
        assert np.shares_memory(view, store.frames) and not view.flags.writeable  # a view of the mapped file
    assert len(store) == 12 and "00000000.wav" in store and "nothere.wav" not in store
    with pytest.raises(DataError, match="nothere.npy: spectrogram missing"):
        store.get("nothere.wav")


def test_store_follows_the_cache(tmp_path):
    folder = tmp_path / "specs"
    specs = make_folder(folder)
    open_store(folder)
    first = frames_file(folder)
    open_store(folder)
    assert frames_file(folder) == first  # unchanged cache: the same file, no rebuild

    new = np.full((16, 7), 3.0, np.float32)
    np.save(folder / "00000003.npy", new)  # rewritten (as prepare_spectrograms does after the audio changed)
    os.utime(folder / "00000003.npy", ns=(1, 1))  # even with an old mtime: the size differs
    np.save(folder / "0000ffff.npy", new)  # added
    (folder / "00000004.npy").unlink()  # removed
    store = open_store(folder)
    assert frames_file(folder) != first and not first.exists()  # rebuilt, the old file gone
    np.testing.assert_array_equal(store.get("00000003.wav"), new)
    np.testing.assert_array_equal(store.get("0000ffff.wav"), new)
    np.testing.assert_array_equal(store.get("00000005.wav"), specs["00000005.wav"])
    assert "00000004.wav" not in store


@pytest.mark.parametrize("in_place", [False, True])
def test_store_follows_a_rewrite_that_keeps_size_and_mtime(tmp_path, in_place):
    """Other frames of the same shape under the old mtime to the nanosecond (cp -p, rsync -a, tar x of another
    copy): only the inode or the ctime tells, and the store is rebuilt."""
    folder = tmp_path / "specs"
    specs = make_folder(folder, n=3)
    open_store(folder)
    path = folder / "00000001.npy"
    before = path.stat()
    other = (specs["00000001.wav"] + 1).astype(np.float32)
    if in_place:  # same inode, as cp onto an existing file writes it
        with open(path, "r+b") as f:
            np.save(f, other)
    else:  # a new file moved over the old one, as rsync and atomic writers do
        np.save(tmp_path / "new.npy", other)
        os.replace(tmp_path / "new.npy", path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    np.testing.assert_array_equal(open_store(folder).get("00000001.wav"), other)


def test_store_index_without_identities_is_rebuilt(tmp_path):
    folder = tmp_path / "specs"
    make_folder(folder, n=2)
    open_store(folder)
    index = folder / STORE_DIR / "index.npz"
    with np.load(index) as z:
        old_layout = {k: z[k] for k in z.files if k not in ("inodes", "ctimes")}  # sizes and mtimes only
    np.savez(index, **old_layout)
    first = frames_file(folder)
    open_store(folder)
    assert frames_file(folder) != first


@pytest.mark.parametrize("content,message", [(b"not an npy", "not a readable .npy"),
                                             (None, "expected a float32 \\(bins, frames\\)")])
def test_a_bad_cache_file_is_named(tmp_path, content, message):
    folder = tmp_path / "specs"
    make_folder(folder, n=3)
    if content is None:
        np.save(folder / "bad.npy", np.zeros((16, 0), np.float32))
    else:
        (folder / "bad.npy").write_bytes(content)
    with pytest.raises(DataError, match=f"bad.npy: {message}"):
        open_store(folder)


READER = """
import sys, zlib
import numpy as np
from utils.spec_data import load_spectrograms
fnames = sys.argv[2:]
specs = load_spectrograms(sys.argv[1], fnames, max_len=250)
crc = 0
for s in specs:
    crc = zlib.crc32(np.ascontiguousarray(s).tobytes(), crc)
maps = {line.split()[-1] for line in open("/proc/self/maps") if "frames-" in line}
print(crc, *sorted(maps))
"""


@pytest.mark.slow
def test_four_processes_share_one_store(tmp_path):
    """Four fold-like processes start together on a folder without a store: it is built once, and every
    process maps that one file (the OS shares its pages) and reads the cache's arrays from it."""
    folder = tmp_path / "specs"
    specs = make_folder(folder, n=40)
    procs = [subprocess.Popen([sys.executable, "-c", READER, str(folder), *specs], cwd=REPO, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    crc = 0
    for spec in specs.values():
        crc = zlib.crc32(np.ascontiguousarray(spec[:, :250]).tobytes(), crc)
    frame_files = list((folder / STORE_DIR).glob("frames-*.npy"))
    assert len(frame_files) == 1  # built once, not once per process
    for out, _ in outs:
        got_crc, *mapped = out.split()
        assert int(got_crc) == crc
        assert mapped == [str(frame_files[0])]
