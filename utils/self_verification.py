"""Iterative self-verification: each fold's model judges the unverified clips it never trained on.

A clip's given label is accepted when (1) the model's averaged prediction agrees with it, (2) the averaged
posterior of that class exceeds a threshold, and (3) its class has not yet reached the per-class cap
(clips taken highest posterior first, over all folds, so the cap keeps the label distribution)."""


import numpy as np
import pandas as pd

from utils.errors import InputError

# Excerpts of several clips per forward pass on a GPU (5 clips of 25): one clip's 25 leave a GPU mostly idle, and
# 128 excerpts of 384 frames of the full network fit a small GPU's memory. On a CPU one clip per pass: wider
# batches gained nothing there (measured: 1.01x for the demo net, 0.63x for the full one; benchmarks/full_size.py).
EXCERPTS_PER_PASS = 128


def accept(labels: np.ndarray, probs: np.ndarray, top_probs_thresh: float, k_per_class: int) -> np.ndarray:
    """Boolean mask of accepted clips. labels: (N,) given class indices; probs: (N, C) averaged posteriors.

    top_probs_thresh=0 reproduces the seed's published code, which skipped condition (2): a softmax
    posterior is always above 0."""
    n = len(labels)
    target_prob = probs[np.arange(n), labels]
    candidate = (probs.argmax(axis=1) == labels) & (target_prob > top_probs_thresh)
    accepted = np.zeros(n, dtype=bool)
    taken: dict[int, int] = {}
    for i in np.argsort(-target_prob, kind="stable"):
        if candidate[i] and taken.get(int(labels[i]), 0) < k_per_class:
            accepted[i] = True
            taken[int(labels[i])] = taken.get(int(labels[i]), 0) + 1
    return accepted


def check_threshold(top_probs_thresh: float) -> None:
    if not 0 <= top_probs_thresh < 1:
        raise InputError(f"--top_probs_thresh must be in [0, 1) (a posterior), got {top_probs_thresh}")


def check_flags(top_probs_thresh: float, k_per_class: int, n_excerpts: int, max_len: int | None) -> None:
    """Flags that would otherwise reach numpy or torch as an empty batch or a meaningless threshold."""
    check_threshold(top_probs_thresh)
    if k_per_class < 1:
        raise InputError(f"--k_per_class must be at least 1, got {k_per_class}")
    if n_excerpts < 1:
        raise InputError(f"--n_excerpts must be at least 1, got {n_excerpts}")
    if max_len is not None and max_len < 1:
        raise InputError(f"--max_len must be at least 1, got {max_len}")


def summarize(held_out: pd.DataFrame, classes: list[str]) -> tuple[pd.DataFrame, dict]:
    """Per-class candidates / accepted / mean posterior, and, where a true_label column exists, how
    precise the acceptance was and how many noisy labels it kept out."""
    rows = []
    for c in classes:
        part = held_out[held_out["label"] == c]
        acc = part[part["accepted"]]
        rows.append({"class": c, "candidates": len(part), "accepted": len(acc),
                     "mean_posterior": float(part["posterior"].mean()) if len(part) else float("nan"),
                     "mean_posterior_accepted": float(acc["posterior"].mean()) if len(acc) else float("nan")})
    table = pd.DataFrame(rows)
    totals = {"candidates": len(held_out), "accepted": int(held_out["accepted"].sum())}
    if "true_label" in held_out.columns:
        correct = held_out["label"] == held_out["true_label"]
        accepted = held_out["accepted"]
        totals.update({
            "noisy_candidates": int((~correct).sum()),
            "accepted_correct": int((accepted & correct).sum()),
            "acceptance_precision": float(correct[accepted].mean()) if accepted.any() else float("nan"),
            "noisy_rejected": int((~correct & ~accepted).sum()),
            "candidate_precision": float(correct.mean()) if len(held_out) else float("nan"),
        })
    return table, totals


SWEEP_THRESHOLDS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)


def threshold_sweep(labels: np.ndarray, probs: np.ndarray, k_per_class: int, correct: np.ndarray | None,
                    thresholds: tuple[float, ...] = SWEEP_THRESHOLDS) -> list[dict]:
    """What other thresholds would have accepted from the same posteriors: per threshold the accepted count and,
    where the true labels are known (correct: (N,) bool), the share of them that is right. It is what tells
    whether a threshold below the writeup's 0.95 still accepts right labels only."""
    rows = []
    for t in thresholds:
        mask = accept(labels, probs, t, k_per_class)
        row = {"threshold": t, "accepted": int(mask.sum())}
        if correct is not None:
            row["precision"] = float(correct[mask].mean()) if mask.any() else float("nan")
        rows.append(row)
    return rows
