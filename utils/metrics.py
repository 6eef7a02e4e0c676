"""Scores for single-label audio tagging: MAP@k (the Kaggle metric) as a small numpy function, accuracy,
per-class precision/recall/F1 and the confusion matrix from sklearn.metrics, and the seed's text report.

Labels are class indices 0..n_classes-1. A ranking is an (N, k) integer array of class indices, most
likely first: either a submission's labels or the top k of a score matrix."""

from collections.abc import Sequence

import numpy as np
from sklearn import metrics

from utils.errors import InputError


def top_k(scores: np.ndarray, k: int = 3) -> np.ndarray:
    """(N, k) class indices of the k highest scores per row, highest first. Ties go to the lower class
    index (stable sort), so the same scores always give the same ranking and the same submission."""
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise InputError(f"scores must be (N, n_classes), got shape {scores.shape}")
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def map_at_k_ranked(y_true: np.ndarray, ranked: np.ndarray, k: int = 3) -> float:
    """Kaggle's MAP@k for one true label per clip: 1/r if the true label first appears at rank r <= k,
    else 0, averaged over clips. Only the first occurrence of a label counts (as in Kaggle's apk)."""
    y_true = np.asarray(y_true)
    ranked = np.asarray(ranked)
    if ranked.ndim != 2 or len(ranked) != len(y_true):
        raise InputError(f"ranked must be (N, >=1) for {len(y_true)} labels, got shape {ranked.shape}")
    if len(y_true) == 0:
        raise InputError("MAP@k of an empty set is undefined")
    hits = ranked[:, :k] == y_true[:, None]
    # argmax finds the first hit; rows without a hit score 0
    first = hits.argmax(axis=1)
    return float(np.where(hits.any(axis=1), 1.0 / (first + 1), 0.0).mean())


def map_at_k(y_true: np.ndarray, scores: np.ndarray, k: int = 3) -> float:
    """MAP@k of an (N, n_classes) score (or probability) matrix."""
    return map_at_k_ranked(y_true, top_k(scores, k), k)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of clips whose prediction is the true label; empty or unequal inputs are a ValueError."""
    return float(metrics.accuracy_score(y_true, y_pred))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts; row = true class, column = predicted class."""
    return metrics.confusion_matrix(y_true, y_pred, labels=_labels(y_true, y_pred, n_classes))


def per_class_scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, np.ndarray]:
    """Per class: count (true clips), precision, recall, f1. Undefined ratios (no clips, no predictions)
    are 0 (zero_division=0). Per-class accuracy is the recall, as in the seed's table."""
    precision, recall, f1, count = metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=_labels(y_true, y_pred, n_classes), zero_division=0)
    # sklearn counts in floats when no prediction is right at all
    return {"count": count.astype(np.int64), "precision": precision, "recall": recall, "f1": f1}


def _labels(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """All n_classes labels, so absent classes get their row and column. sklearn drops a label outside
    `labels` without a word; here it is a ValueError."""
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        y = np.asarray(y)
        if len(y) and (y.min() < 0 or y.max() >= n_classes):
            raise InputError(f"{name} holds labels outside 0..{n_classes - 1}: {y.min()}..{y.max()}")
    return np.arange(n_classes)


def format_report(y_true: np.ndarray, ranked: np.ndarray, classes: Sequence[str], k: int = 3) -> str:
    """The seed's evaluation table: LABEL | CNT | ACC | PR | RE | F1 per class with clips in y_true, an
    unweighted average over those classes, then the overall accuracy and, last, MAP@k.

    ranked: (N, >=1) class indices, most likely first; its first column is the prediction."""
    y_true, ranked = np.asarray(y_true), np.asarray(ranked)
    y_pred = ranked[:, 0]
    s = per_class_scores(y_true, y_pred, len(classes))
    present = np.flatnonzero(s["count"] > 0)
    line = "-" * 78
    rows = [f"{'LABEL':>30}  |  CNT  |   ACC   |   PR   |   RE   |    F1    |", line]
    for c in present:
        rows.append(f"{classes[c]:>30}  |  {s['count'][c]:03d}  |  {s['recall'][c]:.3f}  |  "
                    f"{s['precision'][c]:.2f}  |  {s['recall'][c]:.2f}  |  {s['f1'][c]:.3f}   |")
    rows.append(line)
    mean = {key: float(s[key][present].mean()) for key in ("precision", "recall", "f1")}
    rows.append(f"{'average':>30}  |  {len(y_true):03d}  |  {mean['recall']:.3f}  |  {mean['precision']:.2f}  |  "
                f"{mean['recall']:.2f}  |  {mean['f1']:.3f}   |")
    rows.append("=" * 78)
    rows.append(f"Overall Accuracy: {100 * accuracy(y_true, y_pred):.3f} %")
    rows.append("=" * 78)
    rows.append(f"MAP@{k}: {map_at_k_ranked(y_true, ranked, k):.4f}")
    return "\n".join(rows)
