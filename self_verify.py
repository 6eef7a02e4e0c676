"""Self-verify the unverified training clips with the fold models of one iteration.

python self_verify.py --model models/vgg_gap_spec2.py --spec_dir specs_train_v2 --tag it0 \\
    --out train_self_verified_it0.csv --top_probs_thresh 0.95 --k_per_class 40 --stochastic

Fold K's model (params_K_<tag>) scores only fold K's held-out unverified clips. Accepted clips are marked
verified in a copy of train.csv, written to the model's run dir; train.py --fine_tune --train_file reads it from
there. A per-class summary is printed and saved next to it (.summary.json)."""

import argparse

import numpy as np
import pandas as pd
import torch
from scipy.special import softmax

from utils import paths
from utils.atomic import save_json, save_text
from utils.cli import add_model_args, add_threads_arg, cpu_cores, run_cli, set_threads
from utils.dataset_csv import read_train_csv
from utils.device import pick_device
from utils.errors import DataError, InputError
from utils.folds import fold_numbers, has_unverified, load_folds, split_fold
from utils.model_files import load_model_file, model_settings
from utils.predict import check_spec_folder, load_trained_model, predict_excerpts, predict_logits
from utils.self_verification import EXCERPTS_PER_PASS, accept, check_flags, summarize, threshold_sweep
from utils.spec_data import load_spectrograms


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    io = parser.add_argument_group("iteration and output")
    io.add_argument("--tag", required=True, help="iteration whose fold models judge, e.g. it0")
    io.add_argument("--out", "--train_file", dest="out", required=True,
                    help="CSV to write, e.g. train_self_verified_it0.csv (a bare name goes to the model's run dir; "
                         "--train_file is the seed's spelling)")
    rule = parser.add_argument_group("acceptance rule")
    rule.add_argument("--top_probs_thresh", type=float, default=0.95,
                      help="accept only when the label's averaged posterior exceeds this (0: the seed code)")
    rule.add_argument("--k_per_class", type=int, default=40, help="at most this many accepted clips per class")
    rule.add_argument("--stochastic", action="store_true",
                      help="average the posteriors of --n_excerpts random 384-frame excerpts (else whole clip)")
    rule.add_argument("--n_excerpts", type=int, default=25, help="excerpts per clip with --stochastic")
    rule.add_argument("--seed", type=int, default=1, help="seed for the random excerpts")
    add_threads_arg(parser.add_argument_group("compute"), cpu_cores(), "every core; one process scores all folds")
    return parser.parse_args(argv)


def self_verify(args: argparse.Namespace) -> dict:
    """Score every fold's held-out unverified clips with that fold's model, accept, write the train file."""
    check_flags(args.top_probs_thresh, args.k_per_class, args.n_excerpts, args.max_len)
    data_root, exp_root = paths.data_root(args.data_root), paths.exp_root(args.exp_root)
    out_path = paths.self_verified_path(args.out, exp_root, args.model)
    settings = model_settings(load_model_file(args.model))
    device = pick_device(args.device)
    set_threads(args.threads)
    train = read_train_csv(data_root / paths.TRAIN_CSV)  # every iteration starts from the original flags
    folds = load_folds(data_root)
    if not has_unverified(folds):
        raise DataError(f"{data_root / paths.TRAIN_CSV} has no unverified clips: there is nothing to self-verify")
    rng = np.random.default_rng(args.seed)

    # each fold's model scores the unverified clips it never trained on
    parts, classes = [], None
    for fold in fold_numbers(folds):
        params = paths.params_path(exp_root, args.model, fold, args.tag)
        model, config = load_trained_model(args.model, params)
        model.to(device)
        if classes is not None and config["classes"] != classes:
            raise InputError(f"{params} was trained on other classes than the other folds' models")
        classes = config["classes"]
        _, _, held_out = split_fold(train, folds, fold)
        max_len = args.max_len or config["max_len"]
        check_spec_folder(data_root / args.spec_dir, config, params)
        specs = load_spectrograms(data_root / args.spec_dir, held_out["fname"], max_len)
        if args.stochastic:
            per_pass = EXCERPTS_PER_PASS if device.type == "cuda" else args.n_excerpts
            probs = predict_excerpts(model, specs, max_len, settings["excerpt_len"], args.n_excerpts, device, rng,
                                     batch_excerpts_max=per_pass)
        else:
            probs = softmax(predict_logits(model, specs, max_len, settings["valid_batch_size"], device), axis=1)
        parts.append((held_out.assign(fold=fold), probs))
        print(f"fold {fold}: scored {len(held_out)} held-out unverified clips with {params.name}")
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()

    # accept over all folds at once, so the per-class cap takes the most confident clips of any fold
    held_out = pd.concat([p for p, _ in parts], ignore_index=True)
    probs = np.concatenate([p for _, p in parts]) if parts else np.zeros((0, len(classes)))
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index.get(label, -1) for label in held_out["label"]])
    if (labels < 0).any():
        raise InputError(f"label {held_out['label'][labels < 0].iloc[0]!r} is not among the model's classes")
    mask = accept(labels, probs, args.top_probs_thresh, args.k_per_class)
    held_out["posterior"] = probs[np.arange(len(labels)), labels]
    held_out["accepted"] = mask

    out = train.copy()
    out.loc[out["fname"].isin(held_out["fname"][mask]), "manually_verified"] = 1
    save_text(out_path, out.to_csv(index=False))

    table, totals = summarize(held_out, classes)
    correct = (held_out["label"] == held_out["true_label"]).to_numpy() if "true_label" in held_out.columns else None
    summary = {"config": {**vars(args), "data_root": str(data_root), "exp_root": str(exp_root)},
               "totals": totals, "per_class": table.to_dict(orient="records"),
               "thresholds": threshold_sweep(labels, probs, args.k_per_class, correct), "output": str(out_path)}
    save_json(out_path.with_suffix(".summary.json"), summary)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    line = f"accepted {totals['accepted']} of {totals['candidates']} unverified held-out clips"
    if "acceptance_precision" in totals:
        line += (f"; acceptance precision {totals['acceptance_precision']:.3f} "
                 f"(candidates' labels right: {totals['candidate_precision']:.3f}); "
                 f"noisy labels rejected: {totals['noisy_rejected']} of {totals['noisy_candidates']}")
    print(line)
    print(f"wrote {out_path}")
    return summary


def main(args: argparse.Namespace) -> None:
    self_verify(args)


if __name__ == "__main__":
    run_cli(main, parse_args())
