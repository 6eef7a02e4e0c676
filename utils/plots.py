"""Figures: training curves, and (for evaluation) confusion matrices and per-class scores.

matplotlib's Agg backend is used when there is no display, so every figure can be saved headless."""

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def pyplot(interactive: bool = False):
    """matplotlib.pyplot with an interactive backend only when asked for and a display exists."""
    import matplotlib

    if not (interactive and has_display()):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def save_figure(fig, path: str | Path) -> None:
    """Save atomically (a PNG is written whole or not at all)."""
    from utils.atomic import atomic_write

    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=120,
                                               bbox_inches="tight"))


def plot_curves(histories: Sequence[Sequence[dict]], labels: Sequence[str], metric: str, folds_avg: bool):
    """Train and validation `metric` ('loss' or 'acc') per epoch; with folds_avg, mean +- std over runs."""
    plt = pyplot(interactive=True)
    fig, ax = plt.subplots(figsize=(8, 5))
    colors = {"train": "tab:blue", "valid": "tab:orange"}
    if folds_avg:
        n = min(len(h) for h in histories)
        epochs = np.arange(1, n + 1)
        for split, color in colors.items():
            values = np.array([[row[f"{split}_{metric}"] for row in h[:n]] for h in histories])
            mean, std = values.mean(0), values.std(0)
            best = mean.max() if metric == "acc" else mean.min()
            ax.plot(epochs, mean, color=color, label=f"{split} (mean of {len(histories)}; best {best:.4f})")
            ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.25)
    else:
        for h, label in zip(histories, labels, strict=True):
            epochs = [row["epoch"] for row in h]
            for split, color in colors.items():
                ax.plot(epochs, [row[f"{split}_{metric}"] for row in h], color=color, alpha=0.7,
                        linestyle="-" if split == "valid" else "--", label=f"{label} {split}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy" if metric == "acc" else "loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def tick_labels(classes: Sequence[str], width: int = 24) -> list[str]:
    """Class names as tick labels: long ones (a data set's own, e.g. 'Vehicle horn, car horn, honking') wrapped onto
    two lines and, beyond that, cut in the middle, so that a figure of many classes keeps every label readable."""
    labels = []
    for name in classes:
        lines = textwrap.wrap(name, width) or [name]
        if len(lines) > 2:
            tail = name[-(width - 1):]
            lines = [lines[0], "…" + tail]
        labels.append("\n".join(lines))
    return labels


def plot_confusion_matrix(cm: np.ndarray, classes: Sequence[str]):
    """Row-normalised confusion matrix (true class per row), raw counts written in non-empty cells when the
    matrix is small enough to read them."""
    plt = pyplot()
    cm = np.asarray(cm)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    n = len(classes)
    size = max(4.0, 0.25 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks(range(n), tick_labels(classes), rotation=90, fontsize=7)
    ax.set_yticks(range(n), tick_labels(classes), fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 15:
        for i, j in zip(*np.nonzero(cm), strict=True):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="black" if norm[i, j] > 0.5 else "white")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def plot_class_scores(classes: Sequence[str], precision: np.ndarray, recall: np.ndarray, f1: np.ndarray):
    """Precision, recall and F-score per class as horizontal bars, like the writeup's Pr_Re_F figure."""
    plt = pyplot()
    n = len(classes)
    fig, ax = plt.subplots(figsize=(5, max(3.0, 0.3 * n + 1)))
    y = np.arange(n)
    h = 0.27
    ax.barh(y - h, precision, height=h, label="precision")
    ax.barh(y, recall, height=h, label="recall")
    ax.barh(y + h, f1, height=h, label="F-score")
    ax.set_yticks(y, tick_labels(classes), fontsize=7)
    ax.invert_yaxis()  # first class on top, as in the table
    ax.set_xlim(0, 1.05)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)  # off the bars
    fig.tight_layout()
    return fig
