"""The pieces of train.py's loop: the learning-rate schedule, mixup, the loss, the batches of an epoch, DDP set-up,
where the train file and initial parameters come from, the fold lock, and what a resume must agree on."""

import fcntl
import hashlib
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from utils import paths
from utils.errors import InputError, MissingFile, StepFailed
from utils.predict import pick_device

# Where files are and how the step is run (device, threads, data path, compilation, memory layout, validation batch)
# change a run's numbers by rounding (and compiled code draws its dropout masks otherwise), not what it learns: a
# checkpoint resumes whatever they are. Mixed precision is substance.
WHERE_KEYS = ("data_root", "exp_root", "device", "threads", "data_on", "compile", "channels_last",
              "valid_batch_size")
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
PATH_KEYS = ("model", "train_file", "ini_params")  # compared by file name: a respelled path is the same file


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


def resolve_amp(amp: str | None, device: torch.device) -> str | None:
    """--amp's dtype name: 'auto' is bf16 where the device has it (every CPU torch runs on, Ampere and later GPUs),
    else fp16, which needs a gradient scaler."""
    if amp != "auto":
        return amp
    # emulated bf16 (pre-Ampere GPUs) counts as supported by default, but is slow there
    return "bf16" if device.type != "cuda" or torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"


def capture_rng(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """torch's global random state (dropout masks draw from it), so several folds in one process keep their own."""
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def restore_rng(state: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def resolve_train_file(name: str, run_dir: Path, data_root: Path) -> Path:
    """A path (with a folder) as given; the data root's name (train.csv) always from the data root; another bare
    name from the model's run dir (self-verified files), else from the data root; never from the working
    directory."""
    if Path(name).name != name:
        if Path(name).is_file():
            return Path(name)
        raise MissingFile(f"train file {name} not found")
    if name == paths.TRAIN_CSV:  # a stray copy in the run dir must never shadow the dataset's own labels
        if (data_root / name).is_file():
            return data_root / name
        raise MissingFile(f"train file {data_root / name} not found")
    for candidate in (run_dir / name, data_root / name):
        if candidate.is_file():
            return candidate
    raise MissingFile(f"train file {name} found neither in {run_dir} nor in {data_root}")


def resume_differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The settings of substance in which a checkpoint's run and this one differ, as 'key: saved -> now'."""
    def substance(cfg: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in cfg.items() if k not in WHERE_KEYS}
        for key in PATH_KEYS:
            if out.get(key) is not None:
                out[key] = Path(out[key]).name
        return out

    a, b = substance(saved), substance(now)
    # keys a checkpoint of an older version lacks cannot be compared; everything else must agree
    return [f"{k}: {a[k]!r} -> {b.get(k)!r}" for k in a if a[k] != b.get(k)]


def data_fingerprint(*files: Path) -> str:
    """What the run learns from, by content: the train file and the folds (not where they are)."""
    digest = hashlib.sha1()
    for f in files:
        digest.update(f.read_bytes())
    return digest.hexdigest()


@contextmanager
def fold_lock(path: Path) -> Iterator[None]:
    """One process owns a fold's outputs: a second identical command stops at once, naming the first. The OS
    drops the lock when its process dies, so a killed run never leaves a stale one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            owner = f.read().strip() or "another process"
            raise StepFailed(f"{owner} is already training these outputs ({path.with_suffix('')}); wait for it "
                               "to finish, or use another --exp_root or --tag") from None
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()} on {socket.gethostname()}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def resolve_ini_params(template: str, fold: int, run_dir: Path) -> Path:
    """'params_%d_it0' -> <run_dir>/params_<fold>_it0.pt (the seed's fold template)."""
    name = template % fold if "%d" in template else template
    path = Path(name)
    if path.suffix != ".pt":
        path = path.with_name(path.name + ".pt")
    return path if path.name != str(path) else run_dir / path  # a bare name lives in the run dir


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


def setup_distributed(device_name: str | None) -> tuple[int, int, torch.device]:
    """(rank, world_size, device). torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; without them, one process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, pick_device(device_name)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device = pick_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return rank, world, device
