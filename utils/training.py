"""The training recipe of train.py's loop: the learning-rate schedule, mixup, the loss, the batches of an epoch, and
the random state each fold keeps when folds share a process."""


from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from utils.errors import InputError


@dataclass(frozen=True)
class Stage:
    """How a pretraining or fine-tuning run trains: its learning rate, epochs, decay start and mixup."""
    base_lr: float
    epochs: int
    decay_from: int
    mixup_alpha: float


def resolve_stage(settings: dict[str, Any], fine_tune: bool, epochs: int | None = None) -> Stage:
    """A model file's settings for the stage; --epochs keeps the schedule's shape (the decay starts at the same
    fraction). train.py trains with it and the schedule records it, so the two cannot disagree."""
    if epochs is not None and epochs < 1:
        raise InputError(f"--epochs must be at least 1, got {epochs}")
    if fine_tune:  # no mixup when fine-tuning
        stage = Stage(settings["fine_tune_lr"], settings["fine_tune_epochs"], settings["fine_tune_decay_from"], 0.0)
    else:
        stage = Stage(settings["lr"], settings["epochs"], settings["decay_from"], settings["mixup_alpha"])
    if epochs is None:
        return stage
    return Stage(stage.base_lr, epochs, round(stage.decay_from * epochs / stage.epochs), stage.mixup_alpha)


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


