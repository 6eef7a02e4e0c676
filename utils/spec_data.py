"""Spectrograms as the network sees them: a clip's frames from the shared store, its length fixed, training
excerpts drawn.

Clips are kept at their own length (clipped at max_len) and tiled only when an excerpt or a whole
max_len view is cut, so memory holds each clip once rather than 3000 frames of repeats."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from utils.errors import InputError
from utils.spec_store import open_store


def fix_length(spec: np.ndarray, length: int) -> np.ndarray:
    """Tile a short (bins, frames) spectrogram, clip a long one, to exactly `length` frames."""
    n = spec.shape[1]
    if n == 0:
        raise InputError("empty spectrogram")
    if n < length:
        spec = np.tile(spec, (1, -(-length // n)))
    return spec[:, :length]


def load_spectrograms(spec_dir: str | Path, fnames: Sequence[str], max_len: int) -> list[np.ndarray]:
    """One float32 (bins, <=max_len frames) view per fname into the folder's shared store (utils.spec_store)."""
    store = open_store(spec_dir)
    return [store.get(fname, max_len) for fname in fnames]


def excerpt_at(spec: np.ndarray, start: int, length: int) -> np.ndarray:
    """`length` frames of the tiled clip from frame `start`, cut without materialising the tiling."""
    return spec[:, (start + np.arange(length)) % spec.shape[1]]


def random_excerpt(spec: np.ndarray, max_len: int, excerpt_len: int, rng: np.random.Generator) -> np.ndarray:
    """A random excerpt of the clip tiled/clipped to max_len frames."""
    return excerpt_at(spec, int(rng.integers(0, max_len - excerpt_len + 1)), excerpt_len)


def batch_excerpts(specs: Sequence[np.ndarray], max_len: int, excerpt_len: int,
                   rng: np.random.Generator) -> np.ndarray:
    """(N, 1, bins, excerpt_len) float32."""
    return np.stack([random_excerpt(s, max_len, excerpt_len, rng) for s in specs])[:, None]


def batch_whole(specs: Sequence[np.ndarray], max_len: int) -> np.ndarray:
    """(N, 1, bins, max_len) float32: every clip tiled/clipped to max_len, the network's whole-clip view."""
    return np.stack([fix_length(s, max_len) for s in specs])[:, None]
