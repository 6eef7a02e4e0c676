"""Evaluate a finished schedule: every model's best iteration on the test set, their fusion, a Kaggle
submission and its leaderboard scores.

python evaluate_experiment_set.py [--data_root DIR] [--exp_root DIR] [--max_len 3000]

Reads <exp_root>/best_iterations.json (written by run_experiment_set.py), then for each model and fold runs
eval.py --set test --dump_results, fuses each model's four folds (scored alone for comparison) and all models
together with fusion.py, writes <exp_root>/submission.csv with prepare_submission.py and scores it with
evaluate_leaderboard.py on the public, private and private_public parts."""

import argparse
import json
import shlex

import eval as eval_script
import evaluate_leaderboard
import fusion
import prepare_submission
from utils import paths
from utils.cli import run_cli
from utils.evaluation import read_submission, results_path, score_submission
from utils.folds import N_FOLDS
from utils.metrics import map_at_k_ranked
from utils.paths import add_root_args


def run(script, argv: list[str]) -> None:
    """Run a script's main in this process, printing the command that reproduces it."""
    print(f"\n$ python {script.__name__}.py {shlex.join(argv)}", flush=True)
    script.main(script.parse_args(argv))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max_len", type=int, default=None,
                        help="frames per clip (default: the value the models were trained with)")
    add_root_args(parser)
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    data_root, exp_root = paths.data_root(args.data_root), paths.exp_root(args.exp_root)
    best_file = exp_root / "best_iterations.json"
    if not best_file.is_file():
        raise FileNotFoundError(f"{best_file} not found; run run_experiment_set.py first")
    best = json.loads(best_file.read_text())
    roots = ["--data_root", str(data_root), "--exp_root", str(exp_root)]

    all_files, rows = [], []
    for name, choice in best.items():
        model, spec_dir, tag = choice["model"], choice["spec_dir"], choice["tag"]
        files = []
        for fold in range(1, N_FOLDS + 1):
            params = paths.params_path(exp_root, model, fold, tag)
            max_len = ["--max_len", str(args.max_len)] if args.max_len else []  # else eval.py: the trained one
            run(eval_script, ["--model", model, "--spec_dir", spec_dir, "--fold", str(fold), "--tag", tag,
                              "--set", "test", "--dump_results", *max_len, *roots])
            files.append(str(results_path(paths.run_dir(exp_root, model), "test", spec_dir, params)))
        all_files += files
        # each model alone (its four folds averaged), to set the ensemble's gain in context
        sub_file = exp_root / f"submission_{name}.csv"
        run(fusion, ["--set", "test", *files, "--out", str(exp_root / f"fused_{name}.npz")])
        run(prepare_submission, ["--prediction_file", str(exp_root / f"fused_{name}.npz"),
                                 "--out", str(sub_file), "--data_root", str(data_root)])
        rows.append((f"{name} ({tag})", choice["valid_acc"], quiet_score(data_root, sub_file)))

    fused = exp_root / "fused_all.npz"
    submission = exp_root / "submission.csv"
    run(fusion, ["--set", "test", *all_files, "--out", str(fused)])
    run(prepare_submission, ["--prediction_file", str(fused), "--out", str(submission),
                             "--data_root", str(data_root)])
    for part in ("public", "private", "private_public"):
        run(evaluate_leaderboard, ["--submission_file", str(submission), "--set", part,
                                   "--data_root", str(data_root)])
    rows.append(("fusion of all", float("nan"), quiet_score(data_root, submission)))

    print("\nSummary (valid: mean verified validation accuracy over folds; MAP@3 on the test set parts)")
    print(f"{'model':32s} {'valid acc':>9s} {'public':>8s} {'private':>8s} {'priv+pub':>8s}")
    for label, valid_acc, scores in rows:
        valid = "" if valid_acc != valid_acc else f"{valid_acc:.3f}"
        print(f"{label:32s} {valid:>9s} " + " ".join(f"{scores[p]:8.4f}" for p in ("public", "private",
                                                                                      "private_public")))
    print(f"submission: {submission}")


def quiet_score(data_root, submission) -> dict[str, float]:
    sub = read_submission(submission)
    return {part: map_at_k_ranked(*score_submission(sub, data_root, part))
            for part in ("public", "private", "private_public")}


if __name__ == "__main__":
    run_cli(main, parse_args())
