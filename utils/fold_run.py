"""One fold's training run: its clips, network, optimizer, outputs, random state and stopping rule. train.py's loop
steps one of these, or several together in one process (one GPU holds four fold models and one store of their
spectrograms), until each has finished by its own rule.

A run's results depend only on its own state: its batches and mixup weights come from generators derived from
(seed, epoch, batch), its dropout masks from torch's global generator, which is swapped in and out around each of
its steps. So folds stepped together in one process train exactly as they would alone."""

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from utils import paths
from utils.atomic import save_json, save_torch
from utils.augment import apply_augment, augments, band_gain, draw_augment
from utils.device import AMP_DTYPES
from utils.errors import InputError
from utils.excerpt_source import DeviceExcerpts, HostExcerpts, draw_starts, to_device
from utils.resume import resume_differences
from utils.training import (
    EpochBatches,
    capture_rng,
    final_decay_span,
    lr_at,
    mixup,
    mixup_weights,
    plateaued,
    restore_rng,
    soft_cross_entropy,
)


@dataclass
class FoldData:
    """A fold's clips as rows of the shared store, with their class indices: training, the reported fold's
    validation clips, and the inner validation clips held out of training that decide when the converged rule
    stops (empty under the fixed rule)."""
    train_rows: np.ndarray
    train_y: np.ndarray
    valid_rows: np.ndarray
    valid_y: np.ndarray
    inner_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    inner_y: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


class FoldRun:
    """Set up (or resume) one fold; then per epoch `begin_epoch`, `step` for each of its batches, `end_epoch`,
    until `finished`.

    Under the fixed rule (the writeup's) the run trains config["epochs"] and its parameters file holds the epoch of
    lowest validation loss; under the converged rule it stops by the loss on its inner validation clips
    (utils/training.py) and its parameters file holds the model at the stop. Either way final_<fold>_<tag>.pt holds
    the model at the end of training: chosen by nothing the reported fold says."""

    def __init__(self, config: dict[str, Any], model: nn.Module, data: FoldData, source: HostExcerpts | DeviceExcerpts,
                 device: torch.device, rank: int = 0):
        """config is the run's, as train.py resolves it (its flags, the model file's settings, the stage) and as the
        log and checkpoint record it; it alone says how the fold trains."""
        c = config
        self.fold, self.config, self.source, self.device = c["fold"], c, source, device
        self.world, self.rank, self.master = c["world_size"], rank, rank == 0
        self.train_rows, self.valid_rows, self.inner_rows = data.train_rows, data.valid_rows, data.inner_rows
        self.train_y, self.valid_y = to_device(data.train_y, device), to_device(data.valid_y, device)
        self.inner_y = to_device(data.inner_y, device)
        self.converged_rule = c["stop_rule"] == "converged"
        if self.converged_rule and not len(self.inner_rows):
            raise InputError(f"fold {self.fold}: no inner validation clips for the converged rule (a fold's training "
                             "part needs two clips of a class to hold one out)")
        settings = c["settings"]
        self.augment = augments(settings)
        self.gain_per_db = band_gain(settings["spec_version"]).to(device) if settings["gain_db"] > 0 else None
        self.amp = AMP_DTYPES.get(c["amp"]) if c["amp"] else None
        self.max_len, self.excerpt_len = c["max_len"], c["settings"]["excerpt_len"]
        self.valid_batch_size = c["valid_batch_size"] or c["settings"]["valid_batch_size"]
        exp_root = Path(c["exp_root"])
        self.params_file = paths.params_path(exp_root, c["model"], self.fold, c["tag"])
        self.final_file = paths.final_params_path(exp_root, c["model"], self.fold, c["tag"])
        self.log_file = paths.log_path(exp_root, c["model"], self.fold, c["tag"])
        self.ckpt_file = paths.checkpoint_path(exp_root, c["model"], self.fold, c["tag"])
        # prefixes its lines when folds share a process (and a log)
        self.label = f"fold {self.fold} " if c["folds_in_process"] > 1 else ""

        if c["channels_last"]:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        # fused Adam: one kernel for all parameters on a GPU instead of a dozen per parameter group
        self.optimizer = torch.optim.Adam(model.parameters(), lr=c["base_lr"], fused=device.type == "cuda")
        self.scaler = torch.amp.GradScaler(device.type, enabled=c["amp"] == "fp16")  # bf16 needs no scaling
        self.start_epoch, self.best_loss, self.history = 0, math.inf, []
        self.plateau_at: int | None = None  # the converged rule's first decay epoch, once the plateau is seen
        self.finished, self.stop_reason = False, ""
        if self.ckpt_file.is_file():
            self._resume()
        step_model = nn.parallel.DistributedDataParallel(model) if self.world > 1 else model
        self.step_model = torch.compile(step_model) if c["compile"] else step_model

    def _resume(self) -> None:
        ckpt = torch.load(self.ckpt_file, map_location=self.device, weights_only=True)
        differences = resume_differences(ckpt["config"], self.config)
        if differences:
            raise InputError(f"{self.ckpt_file} was written by a run with other settings ({'; '.join(differences)}); "
                             f"use another --exp_root or --tag to keep both, or delete it to start this run over")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        # Adam's moments keep the layout they were saved in; a run resumed with --channels_last switched needs
        # them in its parameters' (fused Adam refuses mixed layouts)
        for param, state in self.optimizer.state.items():
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == param.shape:
                    state[key] = torch.empty_like(param).copy_(value)
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.start_epoch, self.best_loss, self.history = ckpt["epoch"], ckpt["best_valid_loss"], ckpt["history"]
        self.plateau_at, self.finished, self.stop_reason = ckpt["plateau_at"], ckpt["finished"], ckpt["stop_reason"]
        if self.master:
            state = f": already finished ({self.stop_reason})" if self.finished else f" after epoch {self.start_epoch}"
            print(f"{self.label}resuming {self.ckpt_file}{state}")

    @property
    def decay_span(self) -> tuple[int, int]:
        """(first decay epoch, the epoch training ends before) as known now."""
        c = self.config
        if self.converged_rule:
            return final_decay_span(self.plateau_at, c["epochs"], c["final_decay_epochs"])
        return c["decay_from"], c["epochs"]

    def begin_epoch(self, epoch: int) -> EpochBatches:
        c = self.config
        self.epoch, self.t0 = epoch, time.time()  # with folds stepped together, their steps count too
        decay_from, end = self.decay_span
        self.lr = lr_at(epoch, c["base_lr"], end, decay_from)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        torch.manual_seed(c["seed"] * 100003 + epoch)  # dropout masks, reproducible across a resume
        self.rng_state = capture_rng(self.device)
        self.model.train()
        # summed on the device and read once per epoch: a .item() per step would stall the host on every batch
        self.loss_sum = torch.zeros((), device=self.device)
        self.correct = torch.zeros((), dtype=torch.long, device=self.device)
        self.seen = 0
        return EpochBatches(c["seed"], epoch, len(self.train_rows), c["settings"]["batch_size"], self.world,
                            self.rank)

    def step(self, idx: np.ndarray, rng: np.random.Generator) -> None:
        """One optimizer step on the batch of training clips idx, its excerpts and mixup weights drawn from rng."""
        restore_rng(self.rng_state, self.device)
        x = self.source.cut(self.train_rows[idx], draw_starts(rng, len(idx), self.max_len, self.excerpt_len),
                            self.excerpt_len)
        if self.augment:
            x = apply_augment(x, draw_augment(rng, len(idx), x.shape[2], x.shape[3], self.config["settings"]),
                              self.gain_per_db)
        y = self.train_y[to_device(idx, self.device)]
        target = F.one_hot(y, self.n_classes).float()
        alpha = self.config["mixup_alpha"]
        if alpha > 0:
            x, target = mixup(x, target, to_device(mixup_weights(rng, len(idx), alpha), self.device))
        logits = self._forward(self.step_model, x)
        loss = soft_cross_entropy(logits, target)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.loss_sum += loss.detach() * len(idx)
        self.correct += (logits.argmax(1) == y).sum()
        self.seen += len(idx)
        self.rng_state = capture_rng(self.device)

    def _forward(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The network on x in the run's memory layout and precision (training and validation alike)."""
        if self.config["channels_last"]:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            return net(x)

    @property
    def n_classes(self) -> int:
        return len(self.config["classes"])

    @torch.no_grad()
    def whole_clip_logits(self, rows: np.ndarray) -> torch.Tensor:
        """Logits of clips, each whole (tiled/clipped to max_len), in eval mode."""
        self.model.eval()
        out = []
        for i in range(0, len(rows), self.valid_batch_size):
            batch = rows[i:i + self.valid_batch_size]
            x = self.source.cut(batch, np.zeros(len(batch), dtype=np.int64), self.max_len)
            out.append(self._forward(self.model, x).float())
        return torch.cat(out) if out else torch.zeros((0, self.n_classes), device=self.device)

    def end_epoch(self) -> None:
        """Validate, apply the stopping rule, keep the parameters, log, checkpoint (files from rank 0 only)."""
        row = None
        if self.master:
            row = self._validate()
            self._apply_rule(row)
        if self.world > 1:  # every rank must stop together: rank 0 decides
            state = [self.plateau_at, self.finished, self.stop_reason]
            dist.broadcast_object_list(state, src=0)
            self.plateau_at, self.finished, self.stop_reason = state
        if self.master:
            self._save(row)

    def _loss_and_accuracy(self, rows: np.ndarray, y: torch.Tensor) -> tuple[float, float]:
        logits = self.whole_clip_logits(rows)
        return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()

    def _validate(self) -> dict[str, Any]:
        row = {"epoch": self.epoch + 1, "train_loss": self.loss_sum.item() / self.seen,
               "train_acc": self.correct.item() / self.seen}
        row["valid_loss"], row["valid_acc"] = self._loss_and_accuracy(self.valid_rows, self.valid_y)
        if len(self.inner_rows):
            row["inner_loss"], row["inner_acc"] = self._loss_and_accuracy(self.inner_rows, self.inner_y)
        return {**row, "lr": self.lr, "seconds": time.time() - self.t0}

    def _apply_rule(self, row: dict[str, Any]) -> None:
        """After this epoch: has the plateau begun the final decay, has training ended, and why."""
        self.history.append(row)
        c, done = self.config, self.epoch + 1
        if not self.converged_rule:
            if done == c["epochs"]:
                self.finished, self.stop_reason = True, f"trained the fixed {c['epochs']} epochs"
            return
        inner = [r["inner_loss"] for r in self.history]
        if self.plateau_at is None and done < self.decay_span[0] and plateaued(inner, c["patience"]):
            self.plateau_at = done
            best = int(np.argmin(inner))
            print(f"{self.label}inner validation loss has not improved for {c['patience']} epochs (best "
                  f"{inner[best]:.4f} after epoch {best + 1}): the learning rate decays linearly over epochs "
                  f"{done + 1}-{self.decay_span[1]}, then training stops", flush=True)
        start, end = self.decay_span
        if done == end:
            why = (f"inner validation loss stopped improving after epoch {self.plateau_at - c['patience']}"
                   if self.plateau_at is not None else
                   f"reached the cap of {c['epochs']} epochs before the inner validation loss stopped improving")
            self.finished = True
            self.stop_reason = f"{why}; the learning rate decayed linearly over epochs {start + 1}-{end}"

    def _save(self, row: dict[str, Any]) -> None:
        c, valid_loss = self.config, row["valid_loss"]
        improved = valid_loss < self.best_loss
        if improved:
            self.best_loss = valid_loss
        params = {"state_dict": self.model.state_dict(), "config": {**c, "epoch": self.epoch + 1,
                                                                    "valid_loss": valid_loss}}
        if improved and not self.converged_rule:  # the writeup's choice, on the reported fold
            save_torch(self.params_file, params)
        if self.finished:
            save_torch(self.final_file, params)
            if self.converged_rule:
                save_torch(self.params_file, params)
        state = {"best_valid_loss": self.best_loss, "plateau_at": self.plateau_at, "finished": self.finished,
                 "stop_reason": self.stop_reason}
        save_json(self.log_file, {"config": c, "history": self.history, **state})
        save_torch(self.ckpt_file, {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                                    "scaler": self.scaler.state_dict(), "epoch": self.epoch + 1,
                                    "history": self.history, "config": c, **state})
        inner = f" | inner loss {row['inner_loss']:.4f} acc {row['inner_acc']:.3f}" if "inner_loss" in row else ""
        print(f"{self.label}epoch {self.epoch + 1:3d}/{c['epochs']} | lr {self.lr:.2e} | train loss "
              f"{row['train_loss']:.4f} acc {row['train_acc']:.3f}{inner} | valid loss {valid_loss:.4f} acc "
              f"{row['valid_acc']:.3f}{' *' if improved else ''} | {row['seconds']:.1f}s", flush=True)
        if self.finished:
            print(f"{self.label}training stopped: {self.stop_reason}; {self.final_file.name} holds the last model",
                  flush=True)


def fold_rows(df: pd.DataFrame, row_of: dict[str, int]) -> np.ndarray:
    """The rows of df's clips in the excerpt source."""
    return np.array([row_of[f] for f in df["fname"]], dtype=np.int64)
