"""Self-verify the unverified training clips with the fold models of one iteration.

python self_verify.py --model models/vgg_gap_spec2.py --spec_dir specs_train_v2 --tag it0 \\
    --train_file train_self_verified_it0.csv --top_probs_thresh 0.95 --k_per_class 40 --stochastic

Fold K's model (params_K_<tag>) scores only fold K's held-out unverified clips. Accepted clips are marked
verified in a copy of train.csv, written to the model's run dir; train.py --fine_tune reads it from there.
A per-class summary is printed and saved next to it (.summary.json)."""

import argparse

from utils import paths
from utils.cli import add_model_args, run_cli
from utils.self_verification import SelfVerifyConfig, self_verify


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    parser.add_argument("--tag", required=True, help="iteration whose fold models judge, e.g. it0")
    parser.add_argument("--train_file", required=True, help="output CSV, e.g. train_self_verified_it0.csv")
    parser.add_argument("--top_probs_thresh", type=float, default=0.95,
                        help="accept only when the label's averaged posterior exceeds this (0: the seed code)")
    parser.add_argument("--k_per_class", type=int, default=40, help="at most this many accepted clips per class")
    parser.add_argument("--stochastic", action="store_true",
                        help="average the posteriors of --n_excerpts random 384-frame excerpts (else whole clip)")
    parser.add_argument("--n_excerpts", type=int, default=25, help="excerpts per clip with --stochastic")
    parser.add_argument("--seed", type=int, default=1, help="seed for the random excerpts")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    self_verify(SelfVerifyConfig(
        model=args.model, spec_dir=args.spec_dir, tag=args.tag, train_file=args.train_file,
        data_root=str(paths.data_root(args.data_root)), exp_root=str(paths.exp_root(args.exp_root)),
        top_probs_thresh=args.top_probs_thresh, k_per_class=args.k_per_class, stochastic=args.stochastic,
        n_excerpts=args.n_excerpts, max_len=args.max_len, seed=args.seed, device=args.device))


if __name__ == "__main__":
    run_cli(main, parse_args())
