"""Live views: a terminal line and a matplotlib figure of the rolling spectrogram and the top classes."""

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from utils.live.features import FRAMES_PER_SECOND
from utils.live.tagger import LiveTagger, Prediction
from utils.spectrogram import N_BINS


def top_classes(probs: np.ndarray, classes: Sequence[str], n: int) -> list[tuple[str, float]]:
    order = np.argsort(-probs, kind="stable")[:n]
    return [(classes[i], float(probs[i])) for i in order]


def status_line(tagger: LiveTagger, classes: Sequence[str], top: int = 3) -> str:
    """The headless line: the top classes and their probabilities, or how far the window has filled."""
    if tagger.last is None:
        return f"waiting for audio ({min(tagger.n_frames, tagger.window)}/{tagger.window} frames)"
    s = tagger.stats
    rate = s.predictions / max(time.perf_counter() - (s.started or time.perf_counter()), 1e-9)
    tops = "  ".join(f"{c} {p:.2f}" for c, p in top_classes(tagger.last.probs, classes, top))
    return (f"{s.audio_seconds:6.1f} s  {tops}  | {rate:4.1f} pred/s, {tagger.last.latency * 1000:4.0f} ms, "
            f"{s.skipped} skipped")


class TerminalView:
    """A line rewritten in place (carriage return), at most `fps` times per second."""

    def __init__(self, classes: Sequence[str], top: int = 3, fps: float = 10.0, stream=None):
        self.classes = list(classes)
        self.top = top
        self.interval = 1.0 / fps
        self.stream = stream if stream is not None else sys.stdout
        self._next = 0.0
        self._width = 0

    def __call__(self, tagger: LiveTagger, pred: Prediction | None) -> None:
        now = time.perf_counter()
        if now < self._next:
            return
        self._next = now + self.interval
        line = status_line(tagger, self.classes, self.top)
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)

    def close(self) -> None:
        if self._width:
            self.stream.write("\n")
            self.stream.flush()


class ViewFigure:
    """The view's axes and artists, made once; show() changes only their data. Rebuilding the figure for every
    frame (clear, new axes, tight_layout) took most of the live loop's time (benchmarks/tagger.py measures both)."""

    def __init__(self, fig, window: int, classes: Sequence[str], top: int = 5):
        self.classes, self.window, self.top = list(classes), window, min(top, len(classes))
        fig.clear()
        self.ax_spec, self.ax_bars = fig.subplots(2, 1, gridspec_kw={"height_ratios": [3, 2]})
        self.image = self.ax_spec.imshow(np.zeros((N_BINS, window), np.float32), origin="lower", aspect="auto",
                                         interpolation="nearest", cmap="magma", vmin=0, vmax=1e-3)
        self.ax_spec.set_title(f"spectrogram: last {window} frames ({window / FRAMES_PER_SECOND:.2f} s)")
        self.ax_spec.set_ylabel("band")
        self.ax_spec.set_xticks([])
        y = np.arange(self.top)
        self.bars = self.ax_bars.barh(y, np.zeros(self.top), color="tab:blue")
        # laid out once, with room for the longest class names, so no later label is clipped
        self.ax_bars.set_yticks(y, sorted(self.classes, key=len)[-self.top:])
        self.ax_bars.invert_yaxis()  # the most likely class on top
        self.ax_bars.set_xlim(0, 1)
        self.ax_bars.set_xlabel("probability")
        self.ax_bars.grid(axis="x", alpha=0.3)
        self.waiting = self.ax_bars.text(0.5, 0.5, "", ha="center", va="center", transform=self.ax_bars.transAxes)
        fig.tight_layout()

    def show(self, tagger: LiveTagger) -> None:
        spec = tagger.current_window()
        canvas = np.zeros((N_BINS, self.window), dtype=np.float32)
        canvas[:, self.window - spec.shape[1]:] = spec  # new frames enter on the right, as the window scrolls
        self.image.set_data(canvas)
        self.image.set_clim(0, max(float(canvas.max()), 1e-3))
        waiting = tagger.last is None
        self.waiting.set_text(f"waiting for audio ({min(tagger.n_frames, self.window)}/{self.window} frames)"
                              if waiting else "")
        tops = [] if waiting else top_classes(tagger.last.probs, self.classes, self.top)
        for bar, (_, p) in zip(self.bars, tops, strict=False):
            bar.set_width(p)
        for bar in self.bars:
            bar.set_visible(not waiting)
        self.ax_bars.set_yticklabels([c for c, _ in tops] if tops else [""] * self.top)


def draw_view(fig, tagger: LiveTagger, classes: Sequence[str], top: int = 5) -> ViewFigure:
    """The current spectrogram window and the top classes' probability bars, drawn into fig (cleared first)."""
    view = ViewFigure(fig, tagger.window, classes, top)
    view.show(tagger)
    return view


class PlotView:
    """The matplotlib live view, redrawn at most `fps` times per second (drawing is slower than predicting)."""

    def __init__(self, classes: Sequence[str], top: int = 5, fps: float = 8.0):
        from utils.plots import pyplot

        self.plt = pyplot(interactive=True)
        self.plt.ion()
        self.fig = self.plt.figure(figsize=(7, 6))
        self.classes = list(classes)
        self.top = top
        self.interval = 1.0 / fps
        self._next = 0.0
        self._view: ViewFigure | None = None

    def __call__(self, tagger: LiveTagger, pred: Prediction | None) -> None:
        now = time.perf_counter()
        if now < self._next:
            return
        self._next = now + self.interval
        if self._view is None:
            self._view = ViewFigure(self.fig, tagger.window, self.classes, self.top)
        self._view.show(tagger)
        self.plt.pause(0.001)

    def close(self) -> None:
        self.plt.close(self.fig)


def save_view(tagger: LiveTagger, classes: Sequence[str], path: str | Path, top: int = 5) -> Path:
    """Write the last view (spectrogram window and bars) as an image."""
    from utils.plots import pyplot, save_figure

    plt = pyplot()
    fig = plt.figure(figsize=(7, 6))
    try:
        draw_view(fig, tagger, classes, top)
        save_figure(fig, path)
    finally:
        plt.close(fig)
    return Path(path)
