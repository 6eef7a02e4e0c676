"""Train one fold of one model.

Pretraining:  python train.py --model models/vgg_gap_spec1_2.py --spec_dir specs_train_v1 --fold 1
Fine-tuning:  python train.py --model models/vgg_gap_spec1_2.py --spec_dir specs_train_v1 --fold 1 \\
                  --fine_tune --ini_params params_%d_it0 --train_file train_self_verified_it0.csv --tag it1

Outputs go to <exp_root>/<model name>/: params_<fold>_<tag>.pt (lowest verified validation loss),
results_<fold>_<tag>.json (per-epoch log) and checkpoint_<fold>_<tag>.pt; the same command started
again resumes from the checkpoint (paths may be spelled otherwise; a change of substance is refused, naming it),
and a second identical command while the first runs stops at once. Under torchrun, one fold trains on several
GPUs (DDP)."""

import argparse
import os

from utils import paths
from utils.cli import add_model_args, run_cli
from utils.training import TrainConfig, fold_lock, lock_path, train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser, max_len_default=3000)
    parser.add_argument("--fold", type=int, required=True, help="fold 1..4 to hold out for validation")
    parser.add_argument("--train_file", default="train.csv",
                        help="CSV marking which clips are verified: a path, or a file of the model's run "
                             "dir (self-verified files), or of the data root (default train.csv)")
    parser.add_argument("--tag", default="it0", help="names the outputs: params_<fold>_<tag>.pt (default it0)")
    parser.add_argument("--ini_params", default=None,
                        help="start from these parameters; %%d is replaced by the fold (params_%%d_it0)")
    parser.add_argument("--fine_tune", action="store_true",
                        help="fine-tuning settings of the model file: fewer epochs, its lr, no mixup, "
                             "verified clips only")
    parser.add_argument("--train_on", choices=["all", "verified"], default=None,
                        help="which training clips to use (default: verified when fine-tuning, else all)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="override the model file's epochs (the decay starts at the same fraction)")
    parser.add_argument("--seed", type=int, default=1, help="seed for batches, excerpts, mixup and init")
    parser.add_argument("--amp", action="store_true", help="mixed precision on CUDA")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    cfg = TrainConfig(model=args.model, fold=args.fold, spec_dir=args.spec_dir,
                      data_root=str(paths.data_root(args.data_root)), exp_root=str(paths.exp_root(args.exp_root)),
                      train_file=args.train_file, tag=args.tag, max_len=args.max_len, ini_params=args.ini_params,
                      fine_tune=args.fine_tune, train_on=args.train_on, epochs=args.epochs, seed=args.seed,
                      device=args.device, amp=args.amp)
    # one process owns a fold's files (under torchrun, rank 0 writes them all)
    if int(os.environ.get("RANK", "0")) != 0:
        train(cfg)
        return
    with fold_lock(lock_path(cfg.exp_root, cfg.model, cfg.fold, cfg.tag)):
        train(cfg)


if __name__ == "__main__":
    run_cli(main, parse_args())
