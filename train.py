"""Train one fold of one model.

Pretraining:  python train.py --model models/vgg_gap_spec1_2.py --spec_dir specs_train_v1 --fold 1
Fine-tuning:  python train.py --model models/vgg_gap_spec1_2.py --spec_dir specs_train_v1 --fold 1 \\
                  --fine_tune --ini_params params_%d_it0 --train_file train_self_verified_it0.csv --tag it1

Outputs go to <exp_root>/<model name>/: params_<fold>_<tag>.pt (lowest verified validation loss),
results_<fold>_<tag>.json (per-epoch log) and checkpoint_<fold>_<tag>.pt; the same command started
again resumes from the checkpoint (paths may be spelled otherwise; a change of substance is refused, naming it),
and a second identical command while the first runs stops at once. Under torchrun, one fold trains on several
GPUs (DDP). Randomness is derived from (seed, epoch, batch), so a resumed run draws exactly the batches, excerpts
and mixup weights of an unbroken one."""

import argparse
import math
import os
import time
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from utils import paths
from utils.atomic import save_json, save_torch
from utils.cli import add_model_args, add_threads_arg, cpu_cores, run_cli, set_threads
from utils.dataset_csv import read_train_csv
from utils.folds import check_fold, load_folds, split_fold
from utils.labels import LabelEncoder
from utils.model_files import load_model_file, model_settings
from utils.predict import check_spec_folder, load_params, load_state, predict_logits
from utils.spec_data import batch_excerpts, load_spectrograms
from utils.training import (
    EpochBatches,
    data_fingerprint,
    fold_lock,
    lock_path,
    lr_at,
    mixup,
    resolve_ini_params,
    resolve_train_file,
    resume_differences,
    setup_distributed,
    soft_cross_entropy,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser, max_len_default=3000)
    run = parser.add_argument_group("what to train")
    run.add_argument("--fold", type=int, required=True, help="fold 1..4 to hold out for validation")
    run.add_argument("--train_file", default=paths.TRAIN_CSV,
                     help="CSV marking which clips are verified: a path, or a file of the model's run "
                          "dir (self-verified files), or of the data root (default train.csv)")
    run.add_argument("--train_on", choices=["all", "verified"], default=None,
                     help="which training clips to use (default: verified when fine-tuning, else all)")
    run.add_argument("--tag", default="it0", help="names the outputs: params_<fold>_<tag>.pt (default it0)")
    stage = parser.add_argument_group("stage and schedule")
    stage.add_argument("--fine_tune", action="store_true",
                       help="fine-tuning settings of the model file: fewer epochs, its lr, no mixup, "
                            "verified clips only")
    stage.add_argument("--ini_params", default=None,
                       help="start from these parameters; %%d is replaced by the fold (params_%%d_it0)")
    stage.add_argument("--epochs", type=int, default=None,
                       help="override the model file's epochs (the decay starts at the same fraction)")
    stage.add_argument("--seed", type=int, default=1, help="seed for batches, excerpts, mixup and init")
    compute = parser.add_argument_group("compute")
    compute.add_argument("--amp", action="store_true", help="mixed precision on CUDA")
    add_threads_arg(compute, cpu_cores(), "every core; on a CPU run_experiment.sh runs folds side by side and "
                                          "gives each its share")
    return parser.parse_args(argv)


def train(args: argparse.Namespace) -> dict[str, Any]:
    # settings: the model file's, for pretraining or fine-tuning, with --epochs keeping the schedule's shape
    check_fold(args.fold)
    module = load_model_file(args.model)
    settings = model_settings(module)
    if args.fine_tune:
        base_lr, epochs, decay_from = (settings["fine_tune_lr"], settings["fine_tune_epochs"],
                                       settings["fine_tune_decay_from"])
        alpha = 0.0  # no mixup when fine-tuning
    else:
        base_lr, epochs, decay_from = settings["lr"], settings["epochs"], settings["decay_from"]
        alpha = settings["mixup_alpha"]
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs must be at least 1, got {args.epochs}")
    if args.epochs is not None:
        decay_from = round(decay_from * args.epochs / epochs)
        epochs = args.epochs
    train_on = args.train_on or ("verified" if args.fine_tune else "all")
    excerpt_len = settings["excerpt_len"]
    if args.max_len < excerpt_len:
        raise ValueError(f"--max_len {args.max_len} is shorter than the {excerpt_len}-frame training excerpts")

    rank, world, device = setup_distributed(args.device)
    master = rank == 0
    set_threads(args.threads)
    torch.manual_seed(args.seed)

    # data: the fold's training part, and its originally verified held-out clips for validation
    data_root, exp_root = paths.data_root(args.data_root), paths.exp_root(args.exp_root)  # flag, env, default
    run_dir = paths.run_dir(exp_root, args.model)
    folds = load_folds(data_root)
    encoder = LabelEncoder.from_labels(read_train_csv(data_root / paths.TRAIN_CSV)["label"])
    train_path = resolve_train_file(args.train_file, run_dir, data_root)
    train_df = read_train_csv(train_path)
    train_part, valid, _ = split_fold(train_df, folds, args.fold, verified_only=train_on == "verified")
    spec_dir = data_root / args.spec_dir
    check_spec_folder(spec_dir, {"settings": settings}, args.model)  # features the model file was made for
    train_specs = load_spectrograms(spec_dir, train_part["fname"], args.max_len)
    valid_specs = load_spectrograms(spec_dir, valid["fname"], args.max_len)
    train_y = encoder.encode(train_part["label"])
    valid_y = torch.from_numpy(encoder.encode(valid["label"]))
    n_classes = len(encoder)

    # model, optionally from the parameters of a previous stage
    model = module.build_model(n_classes=n_classes).to(device)
    if args.ini_params:
        ini_path = resolve_ini_params(args.ini_params, args.fold, run_dir)
        ini = load_params(ini_path)
        if ini["config"]["classes"] != encoder.classes:
            raise ValueError(f"{ini_path} was trained on other classes than {data_root / paths.TRAIN_CSV} lists")
        load_state(model, ini, ini_path, args.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=base_lr)
    use_amp = args.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    params_file = paths.params_path(exp_root, args.model, args.fold, args.tag)
    log_file = paths.log_path(exp_root, args.model, args.fold, args.tag)
    ckpt_file = paths.checkpoint_path(exp_root, args.model, args.fold, args.tag)
    run_config = {**vars(args), "data_root": str(data_root), "exp_root": str(exp_root),
                  "settings": settings, "classes": encoder.classes, "epochs": epochs, "decay_from": decay_from,
                  "base_lr": base_lr, "mixup_alpha": alpha, "train_on": train_on, "n_train": len(train_part),
                  "n_valid": len(valid), "world_size": world,
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
        where = f"{device} x{world}" if world > 1 else f"{device}, {args.threads} threads" if device.type == "cpu" \
            else str(device)
        print(f"fold {args.fold} of {paths.model_name(args.model)} ({args.tag}): {len(train_part)} training clips "
              f"({train_on}), {len(valid)} verified validation clips, {n_classes} classes, {epochs} epochs, {where}")
    for epoch in range(start_epoch, epochs):
        t0 = time.time()
        lr = lr_at(epoch, base_lr, epochs, decay_from)
        for group in optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(args.seed * 100003 + epoch)  # dropout masks, reproducible across a resume

        model.train()
        batches = EpochBatches(args.seed, epoch, len(train_specs), settings["batch_size"], world, rank)
        loss_sum = correct = seen = 0
        # disable=None: a bar on a terminal, none in log files
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{epochs}", leave=False, disable=None if master else True)
        for idx, rng in bar:
            x = torch.from_numpy(batch_excerpts([train_specs[i] for i in idx], args.max_len, excerpt_len, rng))
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

        if not master:  # only rank 0 validates and writes
            continue
        logits = torch.from_numpy(predict_logits(model, valid_specs, args.max_len,
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


def main(args: argparse.Namespace) -> None:
    """Train, holding the fold's lock (under torchrun, rank 0 writes every file, so only it locks)."""
    if int(os.environ.get("RANK", "0")) != 0:
        train(args)
        return
    with fold_lock(lock_path(paths.exp_root(args.exp_root), args.model, args.fold, args.tag)):
        train(args)


if __name__ == "__main__":
    run_cli(main, parse_args())
