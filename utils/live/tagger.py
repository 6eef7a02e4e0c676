"""The live tagger: a rolling window of the newest `window` frames, and the scheduling rule: a prediction is
due every k frames; when the model is slower than the stream, only the newest window is predicted and the due
predictions in between are counted as skipped (never queued, so the tagger never falls behind the audio)."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from utils.errors import InputError
from utils.live.features import SAMPLE_RATE, OnlineV2
from utils.live.predictors import check_window
from utils.live.sources import Block
from utils.spec_data import fix_length
from utils.spectrogram import N_BINS


@dataclass
class Prediction:
    end_frame: int           # the window is frames [end_frame - window, end_frame) of the stream (all of
                             # them, tiled, when the stream is shorter than the window)
    probs: np.ndarray        # (n_classes,) float64
    latency: float           # seconds from the arrival of the window's newest audio to the posterior
    compute: float           # seconds the model took
    skipped: int             # due predictions dropped just before this one because the model was behind


@dataclass
class TaggerStats:
    predictions: int = 0
    skipped: int = 0
    frames: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    started: float | None = None  # perf_counter() of the first audio, for the live predictions-per-second
    latencies: list[float] = field(default_factory=list)
    computes: list[float] = field(default_factory=list)
    tiled_from: int = 0  # frames of a stream shorter than the window, tiled to fill it for its one prediction

    def summary(self) -> str:
        rate = self.predictions / self.wall_seconds if self.wall_seconds > 0 else 0.0
        due = self.predictions + self.skipped
        parts = [f"{self.predictions} predictions in {self.wall_seconds:.1f} s ({rate:.1f}/s) over "
                 f"{self.audio_seconds:.1f} s of audio", f"{self.skipped} skipped of {due} due"]
        if self.tiled_from:
            parts.append(f"the audio gave only {self.tiled_from} frames, tiled to fill the window as offline "
                         f"evaluation tiles short clips")
        if self.latencies:
            lat = np.array(self.latencies) * 1000
            comp = np.array(self.computes) * 1000
            parts.append(f"latency mean {lat.mean():.0f} ms, p95 {np.percentile(lat, 95):.0f} ms, "
                         f"max {lat.max():.0f} ms; model {comp.mean():.1f} ms per prediction")
        return "; ".join(parts)


class LiveTagger:
    """Rolling window over OnlineV2 frames and the every-k-frames prediction rule.

    A prediction is due whenever the stream passes a multiple of k frames (once the window is full). feed() makes
    at most one prediction, on the newest window; due points it passed without predicting count as skipped.
    A stream that ends before filling one window gets one prediction at finish() on its frames tiled to the
    window (utils.spec_data.fix_length), as offline evaluation tiles a short clip, instead of none at all.
    """

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], window: int = 256, predict_every_k: int = 10):
        check_window(window)
        if predict_every_k < 1:
            raise InputError("--predict_every_k must be at least 1")
        self.predict = predict
        self.window = window
        self.k = predict_every_k
        self.features = OnlineV2()
        # twice the window so appending is a copy only every `window` frames, not a roll per frame
        self._ring = np.zeros((2 * window, N_BINS), dtype=np.float32)
        self._fill = 0
        self._last_point = (window - 1) // self.k  # index of the last due point handled; the first is >= window
        self.last: Prediction | None = None
        self.stats = TaggerStats()

    @property
    def n_frames(self) -> int:
        return self.features.n_frames

    def current_window(self) -> np.ndarray:
        """The newest min(frames, window) frames, (128, n)."""
        n = min(self._fill, self.window)
        return self._ring[self._fill - n:self._fill].T

    def _append(self, frames: np.ndarray) -> None:
        if len(frames) >= self.window:
            frames = frames[-self.window:]
            self._ring[:self.window] = frames
            self._fill = self.window
            return
        if self._fill + len(frames) > len(self._ring):
            keep = self.window - len(frames)
            self._ring[:keep] = self._ring[self._fill - keep:self._fill]
            self._fill = keep
        self._ring[self._fill:self._fill + len(frames)] = frames
        self._fill += len(frames)

    def feed(self, block: Block) -> Prediction | None:
        """Take a block of audio; returns a prediction when one was due."""
        if self.stats.started is None:
            self.stats.started = time.perf_counter()
        self._append(self.features.push(block.samples))
        self.stats.audio_seconds += len(block.samples) / SAMPLE_RATE
        return self._maybe_predict(block.arrival)

    def finish(self, arrival: float | None = None) -> Prediction | None:
        """End of the stream: the zero-padded tail frames, and a last prediction if one is due (or, for a stream
        shorter than the window, its only prediction, on its frames tiled to the window)."""
        self._append(self.features.flush())
        arrival = time.perf_counter() if arrival is None else arrival
        n = self.n_frames
        if 0 < n < self.window:
            self.stats.frames = n
            self.stats.tiled_from = n
            return self._predict(fix_length(self.current_window(), self.window), arrival, 0)
        return self._maybe_predict(arrival)

    def _maybe_predict(self, arrival: float) -> Prediction | None:
        n = self.n_frames
        self.stats.frames = n
        point = n // self.k
        if n < self.window or point <= self._last_point:
            return None
        skipped = point - self._last_point - 1
        self._last_point = point
        return self._predict(self.current_window(), arrival, skipped)

    def _predict(self, window: np.ndarray, arrival: float, skipped: int) -> Prediction:
        n = self.n_frames
        start = time.perf_counter()
        probs = self.predict(window)
        done = time.perf_counter()
        pred = Prediction(n, probs, done - arrival, done - start, skipped)
        self.stats.predictions += 1
        self.stats.skipped += skipped
        self.stats.latencies.append(pred.latency)
        self.stats.computes.append(pred.compute)
        self.last = pred
        return pred


def run_stream(tagger: LiveTagger, source, on_update: Callable[[LiveTagger, Prediction | None], None] | None = None,
               max_seconds: float | None = None) -> TaggerStats:
    """Feed a source to the tagger until it ends (or max_seconds of audio, or Ctrl-C); returns the stats.
    KeyboardInterrupt is caught here so the caller can still print the summary."""
    start = time.perf_counter()
    source.start()
    try:
        while True:
            block = source.read()
            if block is None:
                pred = tagger.finish()
                if on_update is not None:
                    on_update(tagger, pred)
                break
            pred = tagger.feed(block)
            if on_update is not None:
                on_update(tagger, pred)
            if max_seconds is not None and tagger.stats.audio_seconds >= max_seconds:
                break
    except KeyboardInterrupt:
        pass
    finally:
        source.stop()
        tagger.stats.wall_seconds = time.perf_counter() - start
    return tagger.stats
