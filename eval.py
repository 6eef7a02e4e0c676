"""Evaluate one trained fold model on a validation fold or a leaderboard part of the test set.

    python eval.py --model models/vgg_gap_spec1_1.py --spec_dir specs_train_v1 --tag it0 --fold 1 --set valid
    python eval.py --model models/vgg_gap_spec1_1.py --spec_dir specs_train_v1 --tag it3 --fold 1 --set test \\
        --dump_results

Sets: valid (the fold's verified held-out clips of train.csv) and test (every clip of the data root's test split).
A plain test.csv (fname,label) is scored whole; with Kaggle's test_post_competition.csv, test is unscored (its
Ignored rows have no label: use it with --dump_results to prepare a submission) and public, private,
private_public score its leaderboard parts (rows by usage; Ignored rows are skipped, as on Kaggle). Test-set
spectrograms are read from the data root's folder for the same features: specs_train_<features> ->
specs_test_<features> (or --test_spec_dir).

Every clip of the set is predicted: one without a spectrogram (empty or unreadable audio, listed in the
spectrogram folder's failed.txt) gets the training set's class prior as its posterior, is named in a warning
and marked in the result file, and counts as predicted so when scored.

Labelled sets print the per-class table, the overall accuracy and MAP@3, and save a confusion matrix
(cmatrix_<name>.png) and per-class precision/recall/F-score bars (pr_re_f_<name>.png), where <name> is
<set>_<spec_dir>_<fold>_<tag>. --dump_results saves the posteriors as probs_<name>.npz for fusion.py."""

import argparse
import sys
from pathlib import Path

from utils import paths
from utils.cli import add_model_args, add_threads_arg, cpu_cores, run_cli, set_threads
from utils.device import pick_device
from utils.errors import InputError
from utils.evaluation import class_prior, describe_missing, encode_labels, predict_clips, report_and_plot, select_clips
from utils.metrics import top_k
from utils.predict import check_spec_folder, load_trained_model
from utils.results import SETS, Results, save_results
from utils.vgg_gap import MIN_FRAMES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser, spec_dir_required=False)
    which = parser.add_argument_group("which parameters (--fold and --tag, or --params)")
    which.add_argument("--fold", type=int, default=None, help="fold 1..K of params_<fold>_<tag>.pt")
    which.add_argument("--tag", default="it0", help="tag of params_<fold>_<tag>.pt (default it0)")
    which.add_argument("--params", default=None,
                       help="a parameter file to evaluate instead of <exp_root>/<model>/params_<fold>_<tag>.pt")
    parser.add_argument("--set", required=True, choices=SETS, help="clips to evaluate (see above)")
    parser.add_argument("--test_spec_dir", default=None,
                        help="test spectrogram folder inside the data root (default: specs_test_<features> for "
                             "--spec_dir specs_train_<features>)")
    parser.add_argument("--dump_results", action="store_true",
                        help="save the posteriors as probs_<set>_<spec_dir>_<fold>_<tag>.npz")
    parser.add_argument("--out_dir", default=None,
                        help="where figures and result files go (default: the model's run dir)")
    add_threads_arg(parser.add_argument_group("compute"), cpu_cores(), "every core; one fold is evaluated at a time")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    # checked before any file is read; 0 would otherwise fall back to the trained length unnoticed
    if args.max_len is not None and args.max_len < MIN_FRAMES:
        raise InputError(f"--max_len must be at least {MIN_FRAMES} frames (the network's smallest input), got "
                         f"{args.max_len}; leave it out to use the length the model was trained with")
    set_threads(args.threads)
    exp_root, data_root = paths.exp_root(args.exp_root), paths.data_root(args.data_root)
    if args.params:
        params_file = Path(args.params)
    elif args.fold is None:
        raise InputError("give --fold (with --tag) or --params")
    else:
        params_file = paths.params_path(exp_root, args.model, args.fold, args.tag)

    model, config = load_trained_model(args.model, params_file)
    classes = config["classes"]
    # a model only makes sense on the spectrogram version it was trained on
    spec_dir = args.spec_dir or config["spec_dir"]
    if spec_dir != config["spec_dir"]:
        raise InputError(f"{params_file} was trained on {config['spec_dir']}, not {spec_dir}")
    fold = args.fold if args.fold is not None else config.get("fold")
    if args.set == "valid" and fold != config.get("fold"):
        raise InputError(f"{params_file} was trained for fold {config.get('fold')}; validating it on fold {fold} "
                         "would score clips it trained on")
    clips = select_clips(data_root, args.set, spec_dir, fold, args.test_spec_dir)
    check_spec_folder(clips.spec_dir, config, params_file)  # e.g. a --test_spec_dir of the other version
    if not clips.fnames:
        raise InputError(f"set '{args.set}' has no clips in {clips.source}")
    if clips.labels is None and not args.dump_results:
        raise InputError(f"--set test of {clips.source} has no labels to score (Kaggle's Ignored rows); add "
                         "--dump_results to save the predictions, or score --set private_public")
    y_true = None if clips.labels is None else encode_labels(clips, classes)  # fail before predicting

    device = pick_device(args.device)
    print(f"predicting {len(clips.fnames)} clips of set '{args.set}' from {clips.spec_dir} with {params_file} "
          f"on {device}")
    prior = class_prior(data_root / "train.csv", classes)
    probs, missing = predict_clips(model, clips, args.max_len or config["max_len"],
                                   config["settings"]["valid_batch_size"], device, prior)
    if missing.any():
        print(describe_missing(clips, missing), file=sys.stderr)

    out_dir = Path(args.out_dir) if args.out_dir else paths.run_dir(exp_root, args.model)
    if args.dump_results:
        path = paths.results_path(out_dir, args.set, spec_dir, params_file)
        save_results(path, Results(clips.fnames, classes, probs, args.set, missing))
        print(f"saved {path}")
    if y_true is not None:
        report, figures = report_and_plot(y_true, top_k(probs, 3), classes, out_dir,
                                          paths.eval_name(args.set, spec_dir, params_file))
        print(f"saved {', '.join(str(f) for f in figures)}")
        without = f" ({missing.sum()} without a spectrogram, scored with the class prior)" if missing.any() else ""
        print(f"\nResults of {params_file.name} on set '{args.set}': {len(missing)} clips{without}\n")
        print(report)


if __name__ == "__main__":
    run_cli(main, parse_args())
