"""Figures: training curves, and (for evaluation) confusion matrices and per-class scores.

matplotlib's Agg backend is used when there is no display, so every figure can be saved headless."""

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def pyplot(interactive: bool = False):
    """matplotlib.pyplot with an interactive backend only when asked for and a display exists."""
    import matplotlib

    if not (interactive and os.environ.get("DISPLAY")):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY"))


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
