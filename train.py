"""Train one fold of one model.

Pretraining:  python train.py --model models/vgg_gap_spec1_2.py --spec_dir specs_train_v1 --fold 1
Fine-tuning:  python train.py --model models/vgg_gap_spec1_2.py --spec_dir specs_train_v1 --fold 1 \\
                  --fine_tune --ini_params params_%d_it0 --train_file train_self_verified_it0.csv --tag it1

How long it trains is the model file's stop_rule: "fixed" (the writeup's: `epochs`, keeping the epoch of lowest
verified validation loss) or "converged" (the cpu preset's: 10% of the fold's training clips held out as inner
validation clips; once their loss has not improved for `patience` epochs the learning rate decays over
`final_decay_epochs` and training stops, keeping the last model; `epochs` is a cap). The log says why it stopped.

Outputs go to <exp_root>/<model name>/: params_<fold>_<tag>.pt (the rule's result), final_<fold>_<tag>.pt (the
model at the end of training, which the reported fold chose nothing of), results_<fold>_<tag>.json (per-epoch log)
and checkpoint_<fold>_<tag>.pt; the same command started
again resumes from the checkpoint (paths may be spelled otherwise; a change of substance is refused, naming it),
and a second identical command while the first runs stops at once. Under torchrun, one fold trains on several
GPUs (DDP). Randomness is derived from (seed, epoch, batch), so a resumed run draws exactly the batches, excerpts
and mixup weights of an unbroken one.

Several folds in one process:  python train.py ... --fold 1 2 3 4
steps the four fold models together, batch by batch, from one store of their spectrograms: each trains exactly as
it would alone (its own outputs, lock, random state). On one GPU this is what run_experiment.sh does.

GPU options (README "Training on a GPU"): --data_on device keeps the spectrograms on the GPU and cuts excerpts
there (the default when they fit), --amp mixed precision, --channels_last, --compile."""

import argparse
import os
from contextlib import ExitStack
from itertools import zip_longest
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from utils import paths
from utils.augment import check_augment
from utils.cli import add_model_args, add_threads_arg, cpu_cores, run_cli, set_threads
from utils.dataset_csv import read_train_csv
from utils.device import AMP_DTYPES, resolve_amp, setup_distributed
from utils.errors import InputError
from utils.excerpt_source import excerpt_source
from utils.fold_run import FoldData, FoldRun, fold_rows
from utils.folds import check_fold, fold_numbers, load_folds, split_fold
from utils.labels import LabelEncoder
from utils.model_files import build_network, load_model_file, model_settings
from utils.predict import check_spec_folder, load_params, load_state
from utils.resume import data_fingerprint, fold_lock
from utils.spec_data import load_spectrograms
from utils.training import inner_validation_split, resolve_stage


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser, max_len_default=3000)
    run = parser.add_argument_group("what to train")
    run.add_argument("--fold", type=int, nargs="+", default=None,
                     help="fold 1..K (K from the data root's folds.csv) to hold out for validation; several folds "
                          "train together in one process")
    run.add_argument("--list_folds", action="store_true",
                     help="print the data root's fold numbers and exit (run_experiment.sh asks this)")
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
                       help="override the model file's epochs (fixed rule: the decay starts at the same "
                            "fraction; converged rule: the cap)")
    stage.add_argument("--seed", type=int, default=1, help="seed for batches, excerpts, mixup and init")
    compute = parser.add_argument_group("compute")
    compute.add_argument("--data_on", choices=["auto", "host", "device"], default="auto",
                         help="where excerpts are cut: host (numpy, copied per batch), device (all training "
                              "spectrograms held on the device, one gather per batch; the same batches), auto "
                              "(default: device on a GPU with room for them, else host)")
    compute.add_argument("--amp", nargs="?", const="auto", choices=["auto", *AMP_DTYPES], default=None,
                         help="mixed precision: bf16, or fp16 with a gradient scaler; --amp alone picks bf16 "
                              "where the device has it")
    compute.add_argument("--channels_last", action="store_true",
                         help="NHWC memory layout (faster convolutions on tensor-core GPUs)")
    compute.add_argument("--compile", action="store_true",
                         help="torch.compile the training step (minutes to compile; see the README's figures)")
    compute.add_argument("--valid_batch_size", type=int, default=None,
                         help="whole clips per validation pass (default: the model file's)")
    add_threads_arg(compute, cpu_cores(), "every core; on a CPU run_experiment.sh runs folds side by side and "
                                          "gives each its share")
    return parser.parse_args(argv)


def train(args: argparse.Namespace) -> list[dict[str, Any]]:
    # settings: the model file's, for pretraining or fine-tuning, with --epochs keeping the schedule's shape
    module = load_model_file(args.model)
    settings = model_settings(module)
    stage = resolve_stage(settings, args.fine_tune, args.epochs)
    check_augment(settings)
    epochs, converged_rule = stage.epochs, stage.stop_rule == "converged"
    if args.valid_batch_size is not None and args.valid_batch_size < 1:
        raise InputError(f"--valid_batch_size must be at least 1, got {args.valid_batch_size}")
    train_on = args.train_on or ("verified" if args.fine_tune else "all")
    if args.max_len < settings["excerpt_len"]:
        raise InputError(f"--max_len {args.max_len} is shorter than the {settings['excerpt_len']}-frame training "
                         "excerpts")

    rank, world, device = setup_distributed(args.device)
    if world > 1 and len(args.fold) > 1:
        raise InputError("under torchrun, train one fold per process group (--fold K)")
    master = rank == 0
    set_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed excerpt shapes: the fastest algorithm is found once
    amp = resolve_amp(args.amp, device)

    # data: each fold's training part, and its originally verified held-out clips for validation, all drawn from
    # one store of every clip the folds need
    data_root, exp_root = paths.data_root(args.data_root), paths.exp_root(args.exp_root)  # flag, env, default
    run_dir = paths.run_dir(exp_root, args.model)
    folds = load_folds(data_root)
    encoder = LabelEncoder.from_labels(read_train_csv(data_root / paths.TRAIN_CSV)["label"])
    train_path = paths.resolve_train_file(args.train_file, run_dir, data_root)
    train_df = read_train_csv(train_path)
    parts = {}
    for k in args.fold:
        train_part, valid = split_fold(train_df, folds, k, verified_only=train_on == "verified")[:2]
        # the converged rule stops on clips held out of the training part, never on the reported fold
        train_part, inner = inner_validation_split(train_part, settings["inner_valid_share"], args.seed, k) \
            if converged_rule else (train_part, train_part[:0])
        parts[k] = train_part, valid, inner
    spec_dir = data_root / args.spec_dir
    check_spec_folder(spec_dir, {"settings": settings}, args.model)  # features the model file was made for
    fnames = list(dict.fromkeys(f for part in parts.values() for df in part for f in df["fname"]))
    row_of = {f: i for i, f in enumerate(fnames)}
    store_dtype = AMP_DTYPES[amp] if amp else torch.float32
    source, data_path = excerpt_source(load_spectrograms(spec_dir, fnames, args.max_len), device, args.data_on,
                                       store_dtype)

    base_config = {**vars(args), "data_root": str(data_root), "exp_root": str(exp_root), "settings": settings,
                   "classes": encoder.classes, "epochs": epochs, "decay_from": stage.decay_from,
                   "base_lr": stage.base_lr, "mixup_alpha": stage.mixup_alpha, "stop_rule": stage.stop_rule,
                   "patience": stage.patience, "final_decay_epochs": stage.final_decay,
                   "train_on": train_on, "world_size": world, "amp": amp or False,
                   "folds_in_process": len(args.fold),
                   "data_sha1": data_fingerprint(train_path, data_root / "folds.csv")}
    runs = []
    for k, (train_part, valid, inner) in parts.items():
        torch.manual_seed(args.seed)  # the same initial weights as this fold would get alone
        model = build_network(module, len(encoder)).to(device)
        if args.ini_params:
            ini_path = paths.resolve_ini_params(args.ini_params, k, run_dir)
            ini = load_params(ini_path)
            if ini["config"]["classes"] != encoder.classes:
                raise InputError(f"{ini_path} was trained on other classes than {data_root / paths.TRAIN_CSV} lists")
            load_state(model, ini, ini_path, args.model)
        config = {**base_config, "fold": k, "n_train": len(train_part), "n_valid": len(valid), "n_inner": len(inner)}
        data = FoldData(fold_rows(train_part, row_of), encoder.encode(train_part["label"]), fold_rows(valid, row_of),
                        encoder.encode(valid["label"]), fold_rows(inner, row_of), encoder.encode(inner["label"]))
        runs.append(FoldRun(config, model, data, source, device, rank))
        if master:
            where = f"{device} x{world}" if world > 1 else f"{device}, {args.threads} threads" \
                if device.type == "cpu" else str(device)
            length = (f"until converged (at most {epochs} epochs; {len(inner)} inner validation clips held out of "
                      f"training, patience {stage.patience}, final decay {stage.final_decay})" if converged_rule
                      else f"{epochs} epochs")
            print(f"fold {k} of {paths.model_name(args.model)} ({args.tag}): {len(train_part)} training clips "
                  f"({train_on}), {len(valid)} verified validation clips, {len(encoder)} classes, {length}, "
                  f"{where}{f', {amp}' if amp else ''}")
    if master:
        print(data_path)

    # the loop: every fold not yet finished by its rule steps once per batch, in turn, until all its batches are
    # done; then each validates, decides whether to go on, and checkpoints
    for epoch in range(min(run.start_epoch for run in runs), epochs):
        active = [run for run in runs if run.start_epoch <= epoch and not run.finished]
        if not active:
            break
        epoch_batches = [run.begin_epoch(epoch) for run in active]
        # disable=None: a bar on a terminal, none in log files
        for steps in tqdm(zip_longest(*epoch_batches), total=max(map(len, epoch_batches)), leave=False,
                          desc=f"epoch {epoch + 1}/{epochs}", disable=None if master else True):
            for run, batch in zip(active, steps, strict=True):
                if batch is not None:
                    run.step(*batch)
        for run in active:
            run.end_epoch()

    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return [{"config": run.config, "history": run.history, "best_valid_loss": run.best_loss} for run in runs]


def main(args: argparse.Namespace) -> None:
    """Train, holding each fold's lock (under torchrun, rank 0 writes every file, so only it locks)."""
    load_model_file(args.model)  # a model file that is not one fails before any data is read
    folds = load_folds(paths.data_root(args.data_root))
    if args.list_folds:
        print(" ".join(map(str, fold_numbers(folds))))
        return
    if not args.fold:
        raise InputError(f"give --fold K (or several), K in 1..{len(fold_numbers(folds))}")
    for fold in args.fold:
        check_fold(fold, folds)
    if len(set(args.fold)) != len(args.fold):
        raise InputError(f"--fold lists a fold twice: {args.fold}")
    if int(os.environ.get("RANK", "0")) != 0:
        train(args)
        return
    with ExitStack() as locks:
        for fold in args.fold:
            locks.enter_context(fold_lock(paths.lock_path(paths.exp_root(args.exp_root), args.model, fold, args.tag)))
        train(args)


if __name__ == "__main__":
    run_cli(main, parse_args())
