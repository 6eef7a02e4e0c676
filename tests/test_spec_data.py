"""How the network sees a clip: tiled when short, clipped when long, and excerpts cut from that view with
wrap-around instead of a materialised tiling. Small hand-made spectrograms whose frame k holds the value k."""

import numpy as np
import pytest

from utils.spec_data import batch_excerpts, batch_whole, fix_length, random_excerpt


def frames(n: int, bins: int = 2) -> np.ndarray:
    """(bins, n) float32: every bin of frame k is k, so a result's frame indices can be read off its values."""
    return np.tile(np.arange(n, dtype=np.float32), (bins, 1))


class FixedStart:
    """Stands in for the generator: every excerpt starts at `start`; the range asked for is recorded."""

    def __init__(self, start: int):
        self.start = start
        self.asked: list[tuple[int, int]] = []

    def integers(self, low: int, high: int) -> int:
        self.asked.append((low, high))
        return self.start


@pytest.mark.parametrize("n, length, expected", [
    (3, 7, [0, 1, 2, 0, 1, 2, 0]),  # short: tiled, the last repeat cut
    (3, 6, [0, 1, 2, 0, 1, 2]),     # an exact multiple
    (3, 3, [0, 1, 2]),              # already the length
    (5, 2, [0, 1]),                 # long: clipped, the start kept
    (1, 4, [0, 0, 0, 0]),           # a single frame
])
def test_fix_length_tiles_short_and_clips_long(n, length, expected):
    out = fix_length(frames(n), length)
    assert out.shape == (2, length)
    np.testing.assert_array_equal(out, np.tile(np.array(expected, np.float32), (2, 1)))


def test_fix_length_refuses_an_empty_spectrogram():
    with pytest.raises(ValueError, match="empty"):
        fix_length(np.zeros((2, 0), np.float32), 4)


@pytest.mark.parametrize("start, expected", [(0, [0, 1, 2, 3]), (3, [3, 4, 0, 1]), (8, [3, 4, 0, 1])])
def test_excerpt_wraps_around_a_short_clip(start, expected):
    # a 5-frame clip seen as 12 frames (0 1 2 3 4 0 1 2 3 4 0 1): an excerpt of 4 may start at 0..8
    rng = FixedStart(start)
    out = random_excerpt(frames(5), 12, 4, rng)
    assert rng.asked == [(0, 9)]  # never past the end of the max_len view
    np.testing.assert_array_equal(out[0], expected)
    np.testing.assert_array_equal(out, fix_length(frames(5), 12)[:, start:start + 4])


def test_excerpts_of_a_long_clip_stay_in_its_first_max_len_frames():
    rng = FixedStart(4)
    out = random_excerpt(frames(20), 8, 4, rng)
    assert rng.asked == [(0, 5)]
    np.testing.assert_array_equal(out[0], [4, 5, 6, 7])  # the last excerpt the 8-frame view holds


def test_every_excerpt_is_a_window_of_the_tiled_view():
    rng = np.random.default_rng(0)
    view = fix_length(frames(7), 30)
    windows = [view[:, s:s + 10] for s in range(21)]
    starts = set()
    for _ in range(200):
        out = random_excerpt(frames(7), 30, 10, rng)
        starts.update(s for s, w in enumerate(windows) if np.array_equal(out, w))
        assert any(np.array_equal(out, w) for w in windows)
    assert starts == set(range(21))  # every phase of the tiling is drawn (windows 7 apart are equal)


def test_batch_excerpts_draws_clip_by_clip():
    specs = [frames(3), frames(9), frames(5)]
    batch = batch_excerpts(specs, 9, 4, np.random.default_rng(2))
    assert batch.shape == (3, 1, 2, 4) and batch.dtype == np.float32
    twin = np.random.default_rng(2)
    for got, spec in zip(batch, specs, strict=True):
        np.testing.assert_array_equal(got[0], random_excerpt(spec, 9, 4, twin))


def test_batch_whole_is_every_clip_at_max_len():
    batch = batch_whole([frames(3), frames(6), frames(4)], 5)
    assert batch.shape == (3, 1, 2, 5)
    np.testing.assert_array_equal(batch[:, 0, 0], [[0, 1, 2, 0, 1], [0, 1, 2, 3, 4], [0, 1, 2, 3, 0]])
