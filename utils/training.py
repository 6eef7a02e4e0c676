"""The training recipe of train.py's loop: the learning-rate schedule and when training stops, the inner validation
clips that decide it, mixup, the loss, the batches of an epoch, and the random state each fold keeps when folds share
a process."""


import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from utils.errors import InputError

STOP_RULES = ("fixed", "converged")


@dataclass(frozen=True)
class Stage:
    """How a pretraining or fine-tuning run trains: its learning rate, epochs (the cap, under the converged rule),
    decay start (fixed rule), mixup, and when it stops (stop_rule, patience, final_decay)."""
    base_lr: float
    epochs: int
    decay_from: int
    mixup_alpha: float
    stop_rule: str
    patience: int
    final_decay: int


def resolve_stage(settings: dict[str, Any], fine_tune: bool, epochs: int | None = None) -> Stage:
    """A model file's settings for the stage; --epochs keeps the schedule's shape (the decay starts at the same
    fraction; under the converged rule it is the cap). train.py trains with it and the schedule records it, so the
    two cannot disagree."""
    if epochs is not None and epochs < 1:
        raise InputError(f"--epochs must be at least 1, got {epochs}")
    if settings["stop_rule"] not in STOP_RULES:
        raise InputError(f"unknown stop_rule {settings['stop_rule']!r}; choose one of {', '.join(STOP_RULES)}")
    rule = (settings["stop_rule"], settings["patience"], settings["final_decay_epochs"])
    if fine_tune:  # no mixup when fine-tuning
        stage = Stage(settings["fine_tune_lr"], settings["fine_tune_epochs"], settings["fine_tune_decay_from"], 0.0,
                      *rule)
    else:
        stage = Stage(settings["lr"], settings["epochs"], settings["decay_from"], settings["mixup_alpha"], *rule)
    if epochs is None:
        return stage
    return Stage(stage.base_lr, epochs, round(stage.decay_from * epochs / stage.epochs), stage.mixup_alpha, *rule)


# ---- the converged rule ---------------------------------------------------------------------------------------
# Training runs at the base learning rate while the loss on the inner validation clips (held out of the fold's
# training part, never the reported fold) still improves. Once it has not improved for `patience` epochs, the
# learning rate decays linearly over `final_decay` epochs (lr_at: from the base rate to base/final_decay), and
# training stops when the decay ends: the decay is
# the stop, and the model at its end is the result. A run that reaches its cap first starts the same decay early
# enough to end at the cap.

def final_decay_span(plateau_at: int | None, epochs: int, final_decay: int) -> tuple[int, int]:
    """(first epoch of the final decay, the epoch training stops before): after the plateau, or ending at the cap."""
    start = max(0, epochs - final_decay)
    if plateau_at is not None:
        start = min(start, plateau_at)
    return start, min(epochs, start + final_decay)


def plateaued(inner_losses: Sequence[float], patience: int) -> bool:
    """Whether the inner validation loss has not improved for `patience` epochs (the best is `patience` back)."""
    best = int(np.argmin(inner_losses))
    return len(inner_losses) - 1 - best >= patience


def inner_validation_split(part: pd.DataFrame, share: float, seed: int, fold: int) -> tuple[pd.DataFrame,
                                                                                          pd.DataFrame]:
    """(training clips, inner validation clips) of a fold's training part: `share` of each class's clips, drawn from
    its verified ones (where it has any), always leaving the class a training clip; a class of one clip keeps it.
    Drawn from (seed, fold), so the same run holds out the same clips."""
    rng = np.random.default_rng([seed, fold, 17])
    held = []
    for _, group in part.groupby("label", sort=True):
        n = len(group)
        pool = group[group["manually_verified"] == 1]
        pool = pool if len(pool) else group
        k = min(len(pool), n - 1, max(1, math.floor(share * n + 0.5)))
        if k > 0:
            held.extend(pool.index[np.sort(rng.choice(len(pool), size=k, replace=False))])
    mask = part.index.isin(held)
    return part[~mask].reset_index(drop=True), part[mask].reset_index(drop=True)


def lr_at(epoch: int, base_lr: float, epochs: int, decay_from: int) -> float:
    """Constant, then linear decay to 0 over the epochs from `decay_from` on (epochs count from 0)."""
    if epoch < decay_from:
        return base_lr
    return base_lr * (epochs - epoch) / max(1, epochs - decay_from)


def mixup_weights(rng: np.random.Generator, n: int, alpha: float) -> np.ndarray:
    """One lambda ~ Beta(alpha, alpha) per sample, drawn on the host from the batch's generator."""
    return rng.beta(alpha, alpha, size=n).astype(np.float32)


def mixup(x: torch.Tensor, y: torch.Tensor, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each sample with its partner in the reversed batch, sample i with weight lam[i]."""
    lx = lam.view(-1, 1, 1, 1)
    ly = lam.view(-1, 1)
    return lx * x + (1 - lx) * x.flip(0), ly * y + (1 - ly) * y.flip(0)


def capture_rng(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """torch's global random state (dropout masks draw from it), so several folds in one process keep their own."""
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def restore_rng(state: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


class EpochBatches:
    """The batches of one epoch: a shuffled order and, per batch, its own generator for excerpts and mixup."""

    def __init__(self, seed: int, epoch: int, n_items: int, batch_size: int, world_size: int, rank: int):
        order = np.random.default_rng([seed, epoch]).permutation(n_items)
        # smaller batches when there are too few clips to give every rank one (else a rank waits forever)
        batch_size = min(batch_size, n_items // world_size)
        if batch_size == 0:
            raise InputError(f"{n_items} training clips cannot be shared by {world_size} processes")
        n_batches = n_items // batch_size
        n_batches -= n_batches % world_size
        # every rank draws the same order and takes every world_size-th batch, so all step together
        self.batches = [(b, order[b * batch_size:(b + 1) * batch_size])
                        for b in range(rank, n_batches, world_size)]
        self.seed, self.epoch = seed, epoch

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for b, idx in self.batches:
            yield idx, np.random.default_rng([self.seed, self.epoch, b])


