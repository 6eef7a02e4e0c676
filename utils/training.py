"""Training one fold of one model: pretraining on all labels, or fine-tuning on (self-)verified ones.

`train(cfg)` reads top to bottom: settings, devices, data, model, optimizer, resume, then one loop of
train epoch -> validate -> log -> checkpoint. Randomness is derived from (seed, epoch, batch), so a run
resumed from a checkpoint draws exactly the batches, excerpts and mixup weights of an unbroken run."""

import fcntl
import hashlib
import math
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from utils import paths
from utils.atomic import save_json, save_torch
from utils.dataset_csv import read_train_csv
from utils.folds import check_fold, load_folds, split_fold
from utils.labels import LabelEncoder
from utils.model_files import load_model_file, model_settings
from utils.predict import check_spec_folder, load_params, load_state, pick_device, predict_logits
from utils.spec_data import batch_excerpts, load_spectrograms

# Where files are and which device runs them do not change a run's result: a checkpoint resumes whatever they are.
WHERE_KEYS = ("data_root", "exp_root", "device")
PATH_KEYS = ("model", "train_file", "ini_params")  # compared by file name: a respelled path is the same file


@dataclass
class TrainConfig:
    model: str
    fold: int
    spec_dir: str
    data_root: str = "data"
    exp_root: str = "experiments"
    train_file: str = "train.csv"
    tag: str = "it0"
    max_len: int = 3000
    ini_params: str | None = None
    fine_tune: bool = False
    train_on: str | None = None  # 'all' or 'verified'; default: verified when fine-tuning
    epochs: int | None = None
    seed: int = 1
    device: str | None = None
    amp: bool = False


def lr_at(epoch: int, base_lr: float, epochs: int, decay_from: int) -> float:
    """Constant, then linear decay to 0 over the epochs from `decay_from` on (epochs count from 0)."""
    if epoch < decay_from:
        return base_lr
    return base_lr * (epochs - epoch) / max(1, epochs - decay_from)


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, rng: np.random.Generator
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each sample with its partner in the reversed batch, with a per-sample lambda ~ Beta(alpha, alpha)."""
    lam = torch.from_numpy(rng.beta(alpha, alpha, size=len(x)).astype(np.float32)).to(x.device)
    lx = lam.view(-1, 1, 1, 1)
    ly = lam.view(-1, 1)
    return lx * x + (1 - lx) * x.flip(0), ly * y + (1 - ly) * y.flip(0)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def resolve_train_file(name: str, run_dir: Path, data_root: Path) -> Path:
    """A path (with a folder) as given; the data root's name (train.csv) always from the data root; another bare
    name from the model's run dir (self-verified files), else from the data root; never from the working
    directory."""
    if Path(name).name != name:
        if Path(name).is_file():
            return Path(name)
        raise FileNotFoundError(f"train file {name} not found")
    if name == paths.TRAIN_CSV:  # a stray copy in the run dir must never shadow the dataset's own labels
        if (data_root / name).is_file():
            return data_root / name
        raise FileNotFoundError(f"train file {data_root / name} not found")
    for candidate in (run_dir / name, data_root / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"train file {name} found neither in {run_dir} nor in {data_root}")


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


def lock_path(exp_root: str | Path, model: str | Path, fold: int, tag: str) -> Path:
    return paths.run_dir(exp_root, model) / f".lock_{fold}_{tag}"


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
            raise RuntimeError(f"{owner} is already training these outputs ({path.with_suffix('')}); wait for it "
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
            raise ValueError(f"{n_items} training clips cannot be shared by {world_size} processes")
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


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train one fold; returns the log. Writes params_<fold>_<tag>.pt (best validation loss),
    results_<fold>_<tag>.json (per-epoch log) and checkpoint_<fold>_<tag>.pt (resume state)."""
    check_fold(cfg.fold)
    module = load_model_file(cfg.model)
    settings = model_settings(module)
    if cfg.fine_tune:
        base_lr, epochs, decay_from = (settings["fine_tune_lr"], settings["fine_tune_epochs"],
                                       settings["fine_tune_decay_from"])
        alpha = 0.0  # no mixup when fine-tuning
    else:
        base_lr, epochs, decay_from = settings["lr"], settings["epochs"], settings["decay_from"]
        alpha = settings["mixup_alpha"]
    if cfg.epochs is not None and cfg.epochs < 1:
        raise ValueError(f"--epochs must be at least 1, got {cfg.epochs}")
    if cfg.epochs is not None:  # keep the schedule's shape: decay starts at the same fraction of the run
        decay_from = round(decay_from * cfg.epochs / epochs)
        epochs = cfg.epochs
    train_on = cfg.train_on or ("verified" if cfg.fine_tune else "all")
    if train_on not in ("all", "verified"):
        raise ValueError(f"--train_on must be 'all' or 'verified', got {train_on!r}")
    excerpt_len = settings["excerpt_len"]
    if cfg.max_len < excerpt_len:
        raise ValueError(f"--max_len {cfg.max_len} is shorter than the {excerpt_len}-frame training excerpts")

    rank, world, device = setup_distributed(cfg.device)
    master = rank == 0
    torch.manual_seed(cfg.seed)

    # data: the fold's training part, and its originally verified held-out clips for validation
    data_root, run_dir = Path(cfg.data_root), paths.run_dir(cfg.exp_root, cfg.model)
    folds = load_folds(data_root)
    encoder = LabelEncoder.from_labels(read_train_csv(data_root / "train.csv")["label"])
    train_path = resolve_train_file(cfg.train_file, run_dir, data_root)
    train_df = read_train_csv(train_path)
    train_part, valid, _ = split_fold(train_df, folds, cfg.fold, verified_only=train_on == "verified")
    spec_dir = data_root / cfg.spec_dir
    check_spec_folder(spec_dir, {"settings": settings}, cfg.model)  # features the model file was made for
    train_specs = load_spectrograms(spec_dir, train_part["fname"], cfg.max_len)
    valid_specs = load_spectrograms(spec_dir, valid["fname"], cfg.max_len)
    train_y = encoder.encode(train_part["label"])
    valid_y = torch.from_numpy(encoder.encode(valid["label"]))
    n_classes = len(encoder)

    # model, optionally from the parameters of a previous stage
    model = module.build_model(n_classes=n_classes).to(device)
    if cfg.ini_params:
        ini_path = resolve_ini_params(cfg.ini_params, cfg.fold, run_dir)
        ini = load_params(ini_path)
        if ini["config"]["classes"] != encoder.classes:
            raise ValueError(f"{ini_path} was trained on other classes than {data_root / 'train.csv'} lists")
        load_state(model, ini, ini_path, cfg.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=base_lr)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    params_file = paths.params_path(cfg.exp_root, cfg.model, cfg.fold, cfg.tag)
    log_file = paths.log_path(cfg.exp_root, cfg.model, cfg.fold, cfg.tag)
    ckpt_file = paths.checkpoint_path(cfg.exp_root, cfg.model, cfg.fold, cfg.tag)
    run_config = {**asdict(cfg), "settings": settings, "classes": encoder.classes, "epochs": epochs,
                  "decay_from": decay_from, "base_lr": base_lr, "mixup_alpha": alpha, "train_on": train_on,
                  "n_train": len(train_part), "n_valid": len(valid), "world_size": world,
                  "data_sha1": data_fingerprint(train_path, data_root / "folds.csv")}

    # resume: same command, same outputs, continue after the last completed epoch
    start_epoch, best_loss, history = 0, math.inf, []
    if ckpt_file.is_file():
        ckpt = torch.load(ckpt_file, map_location=device, weights_only=True)
        differences = resume_differences(ckpt["config"], run_config)
        if differences:
            raise ValueError(f"{ckpt_file} was written by a run with other settings ({'; '.join(differences)}); "
                             f"use another --exp_root or --tag to keep both, or delete it to start this run over")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch, best_loss, history = ckpt["epoch"], ckpt["best_valid_loss"], ckpt["history"]
        if master:
            print(f"resuming {ckpt_file} after epoch {start_epoch}")
    ddp_model = nn.parallel.DistributedDataParallel(model) if world > 1 else model

    if master:
        print(f"fold {cfg.fold} of {paths.model_name(cfg.model)} ({cfg.tag}): {len(train_part)} training clips "
              f"({train_on}), {len(valid)} verified validation clips, {n_classes} classes, {epochs} epochs, "
              f"device {device}{f' x{world}' if world > 1 else ''}")
    for epoch in range(start_epoch, epochs):
        t0 = time.time()
        lr = lr_at(epoch, base_lr, epochs, decay_from)
        for group in optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(cfg.seed * 100003 + epoch)  # dropout masks, reproducible across a resume

        model.train()
        batches = EpochBatches(cfg.seed, epoch, len(train_specs), settings["batch_size"], world, rank)
        loss_sum = correct = seen = 0
        # disable=None: a bar on a terminal, none in log files
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{epochs}", leave=False, disable=None if master else True)
        for idx, rng in bar:
            x = torch.from_numpy(batch_excerpts([train_specs[i] for i in idx], cfg.max_len, excerpt_len, rng))
            x = x.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else x
            y = torch.from_numpy(train_y[idx]).to(device)
            target = F.one_hot(y, n_classes).float()
            if alpha > 0:
                x, target = mixup(x, target, alpha, rng)
            with torch.autocast(device.type, enabled=use_amp):
                logits = ddp_model(x)
            loss = soft_cross_entropy(logits, target)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(idx)

        if not master:
            continue
        logits = torch.from_numpy(predict_logits(model, valid_specs, cfg.max_len,
                                                 settings["valid_batch_size"], device))
        valid_loss = F.cross_entropy(logits, valid_y).item()
        valid_acc = (logits.argmax(1) == valid_y).float().mean().item()
        row = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen,
               "valid_loss": valid_loss, "valid_acc": valid_acc, "lr": lr, "seconds": time.time() - t0}
        history.append(row)
        improved = valid_loss < best_loss
        if improved:
            best_loss = valid_loss
            save_torch(params_file, {"state_dict": model.state_dict(),
                                     "config": {**run_config, "epoch": epoch + 1, "valid_loss": valid_loss}})
        save_json(log_file, {"config": run_config, "history": history, "finished": epoch + 1 == epochs,
                             "best_valid_loss": best_loss})
        save_torch(ckpt_file, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "epoch": epoch + 1, "best_valid_loss": best_loss, "history": history,
                               "config": run_config})
        print(f"epoch {epoch + 1:3d}/{epochs} | lr {lr:.2e} | train loss {row['train_loss']:.4f} "
              f"acc {row['train_acc']:.3f} | valid loss {valid_loss:.4f} acc {valid_acc:.3f}"
              f"{' *' if improved else ''} | {row['seconds']:.1f}s", flush=True)

    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return {"config": run_config, "history": history, "best_valid_loss": best_loss}
