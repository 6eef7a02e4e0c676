"""Evaluate a finished schedule: every model's best iteration, alone and fused, on what the data set offers.

python evaluate_experiment_set.py [--data_root DIR] [--exp_root DIR] [--max_len 3000]

Reads <exp_root>/best_iterations.json (written by run_experiment_set.py), then:
  1. cross-validation, always: eval.py --set valid on each model's folds; each fold's verified validation accuracy
     and MAP@3, their mean and spread over the folds, per model and for the models fused (the figures the field
     reports for ESC-50 and UrbanSound8K, and all there is for a data set without a test split). The models scored
     are each fold's final model (final_<fold>_<tag>.pt) of an iteration chosen without the reported folds, so
     nothing is chosen on the clips scored; a later column gives the writeup's choice (the epoch and iteration of
     lowest validation loss, chosen on those clips: optimistic). One more row: the linear baseline
     (utils/linear_baseline.py) on the same folds and spectrograms, the bar the nets must clear;
  2. a plain test split (test.csv: fname,label), scored whole: eval.py --set test on every model x fold, each
     model's folds fused and all models fused (fusion.py), accuracy and MAP@3, the per-class table and the
     confusion matrix of the ensemble;
  3. Kaggle's test split (test_post_competition.csv): the same fusion, a Kaggle submission
     (<exp_root>/submission.csv, prepare_submission.py) scored on the public, private and private_public parts
     (evaluate_leaderboard.py)."""

import argparse
import json
import shlex
from pathlib import Path

import numpy as np

import eval as eval_script
import evaluate_leaderboard
import fusion
import prepare_submission
from utils import paths
from utils.cli import run_cli
from utils.dataset_csv import is_kaggle, read_test_csv
from utils.evaluation import report_and_plot, select_clips
from utils.launch.schedule import read_best_iterations
from utils.linear_baseline import cross_validate as linear_cross_validate
from utils.linear_baseline import predict_test
from utils.metrics import accuracy, map_at_k, map_at_k_ranked, top_k
from utils.paths import add_root_args
from utils.results import Results, fuse, load_results, save_results
from utils.submission import LEADERBOARD_SETS, TOP_K, read_submission, score_submission


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


def scores(results: Results, labels: list[str]) -> dict[str, float]:
    """Accuracy and MAP@3 of posteriors against class names."""
    index = {c: i for i, c in enumerate(results.classes)}
    y = np.array([index[label] for label in labels])
    return {"acc": accuracy(y, results.probs.argmax(1)), "map3": map_at_k(y, results.probs, TOP_K)}


def predict_folds(best: dict, set_name: str, roots: list[str], max_len: list[str], exp_root: Path,
                  honest: bool = False) -> dict[str, list[Path]]:
    """eval.py --set SET --dump_results on every model x fold; each model's result files, in fold order. honest:
    the final models (final_<fold>_<tag>.pt) of each model's honest iteration, chosen by nothing the reported
    folds say; else the parameters of its chosen iteration (params_<fold>_<tag>.pt)."""
    files = {}
    for name, choice in best.items():
        model, spec_dir = choice["model"], choice["spec_dir"]
        tag = choice["honest_tag"] if honest else choice["tag"]
        files[name] = []
        for fold in choice["folds"]:
            params = (paths.final_params_path if honest else paths.params_path)(exp_root, model, fold, tag)
            run(eval_script, ["--model", model, "--spec_dir", spec_dir, "--params", str(params), "--fold", str(fold),
                              "--set", set_name, "--dump_results", *max_len, *roots])
            files[name].append(paths.results_path(paths.run_dir(exp_root, model), set_name, spec_dir, params))
    return files


def cross_validation(best: dict, valid_files: dict[str, list[Path]], data_root: Path) -> list[tuple[str, list]]:
    """(row label, per-fold scores) for each model and for all models fused fold by fold (a fold's validation
    clips are the same for every model)."""
    folds = next(iter(best.values()))["folds"]
    labels = {k: select_clips(data_root, "valid", "", k).labels for k in folds}
    loaded = {name: [load_results(f) for f in files] for name, files in valid_files.items()}
    rows = [(f"{name} ({best[name]['honest_tag']})",
             [scores(r, labels[k]) for r, k in zip(results, folds, strict=True)]) for name, results in loaded.items()]
    if len(loaded) > 1:
        fused = [fuse([results[i] for results in loaded.values()], list(loaded)) for i in range(len(folds))]
        rows.append(("fusion of all", [scores(r, labels[k]) for r, k in zip(fused, folds, strict=True)]))
    return rows


LINEAR = "linear_baseline"  # its row in the test summary, and its result and submission files' name


def linear_inputs(best: dict, exp_root: Path, max_len: int | None) -> tuple[list[str], int]:
    """The linear baseline's spectrogram folders (the table's models') and frames per clip (--max_len, else what
    the models were trained with, from their first fold's log)."""
    spec_dirs = list(dict.fromkeys(choice["spec_dir"] for choice in best.values()))
    if max_len is None:
        first = next(iter(best.values()))
        log = paths.log_path(exp_root, first["model"], first["folds"][0], first["honest_tag"])
        max_len = json.loads(log.read_text())["config"]["max_len"]
    return spec_dirs, max_len


def linear_test_results(spec_dirs: list[str], max_len: int, data_root: Path, exp_root: Path, test) -> Path:
    """The linear baseline trained on every training clip, its test posteriors saved as a result file beside the
    fused ones, so that it is scored on the same test rows as the nets."""
    classes, probs, missing = predict_test(data_root, spec_dirs, [paths.test_spec_dir(d) for d in spec_dirs],
                                           max_len, list(test["fname"]))
    path = paths.fused_path(exp_root, LINEAR)
    save_results(path, Results(np.asarray(test["fname"]), classes, probs, "test", missing))
    return path


def print_cross_validation(rows: list[tuple[str, list]], folds: list[int], best: dict) -> None:
    print(f"\nCross-validation ({len(folds)} folds): verified validation accuracy and MAP@{TOP_K} of each fold's "
          "final model at the iteration chosen without the reported folds (nothing, neither epoch nor iteration, is "
          "chosen on the clips scored); mean +- spread (standard deviation) over the folds. The last column: "
          "the writeup's choice, each fold's epoch and the iteration of lowest validation loss on the reported "
          "folds themselves (optimistic)")
    print(f"{'model':32s} {'mean acc':>15s} {'mean MAP@3':>15s} " + " ".join(f"{'fold ' + str(k):>11s}" for k in folds)
          + f" {'acc, chosen on reported folds':>30s}")
    for label, per_fold in rows:
        acc, map3 = np.array([s["acc"] for s in per_fold]), np.array([s["map3"] for s in per_fold])
        cells = " ".join(f"{s['acc']:5.3f}/{s['map3']:5.3f}" for s in per_fold)
        name = label.split(" (")[0]
        writeup = f"{best[name]['writeup_valid_acc']:.3f} ({best[name]['writeup_tag']})" if name in best else "-"
        print(f"{label:32s} {acc.mean():7.3f} +-{acc.std():5.3f} {map3.mean():7.3f} +-{map3.std():5.3f} {cells} "
              f"{writeup:>30s}")
    print("(fold cells: accuracy/MAP@3)")


def main(args: argparse.Namespace) -> None:
    data_root, exp_root = paths.data_root(args.data_root), paths.exp_root(args.exp_root)
    best = read_best_iterations(exp_root)
    test_csv = paths.test_csv(data_root)
    test = read_test_csv(test_csv) if test_csv else None
    roots = ["--data_root", str(data_root), "--exp_root", str(exp_root)]
    max_len = ["--max_len", str(args.max_len)] if args.max_len else []  # else eval.py: the trained one
    folds = next(iter(best.values()))["folds"]

    cv_rows = cross_validation(best, predict_folds(best, "valid", roots, max_len, exp_root, honest=True), data_root)
    # the bar the nets must clear: the linear baseline on the same folds, trained on all labels
    spec_dirs, linear_max_len = linear_inputs(best, exp_root, args.max_len)
    cv_rows.append(("linear baseline (all labels)", linear_cross_validate(data_root, spec_dirs, linear_max_len)))
    if test is None:
        print_cross_validation(cv_rows, folds, best)
        print(f"\n{data_root} has no test split ({paths.KAGGLE_TEST_CSV} or {paths.TEST_CSV}): the "
              "cross-validation figures above are the result")
        return

    test_files = predict_folds(best, "test", roots, max_len, exp_root)
    fused_files = {}
    for name, files in test_files.items():  # each model alone (its folds averaged): the ensemble's gain in context
        fused_files[name] = paths.fused_path(exp_root, name)
        run(fusion, ["--set", "test", *map(str, files), "--out", str(fused_files[name])])
    fused_files["fusion of all"] = paths.fused_path(exp_root, "all")
    run(fusion, ["--set", "test", *(str(f) for files in test_files.values() for f in files),
                 "--out", str(fused_files["fusion of all"])])
    fused_files[LINEAR] = linear_test_results(spec_dirs, linear_max_len, data_root, exp_root, test)
    if is_kaggle(test):
        test_rows = kaggle_scores(fused_files, data_root, exp_root)
    else:
        test_rows = whole_test_scores(fused_files, list(test["label"]), exp_root)

    print_cross_validation(cv_rows, folds, best)
    parts = LEADERBOARD_SETS if is_kaggle(test) else ("test acc", "test MAP@3")
    how = "MAP@3 on the leaderboard parts" if is_kaggle(test) else "scored whole"
    print(f"\nSummary on the test set ({test_csv.name}; {how})")
    print(f"{'model':32s} {'valid acc':>9s} " + " ".join(f"{p:>14s}" for p in parts))
    for name, figures in test_rows:
        label = f"{name} ({best[name]['tag']})" if name in best else name
        valid = f"{best[name]['valid_acc']:.3f}" if name in best else ""
        print(f"{label:32s} {valid:>9s} " + " ".join(f"{figures[p]:14.4f}" for p in parts))
    if is_kaggle(test):
        print(f"submission: {paths.submission_path(exp_root)}")


def whole_test_scores(fused_files: dict[str, Path], labels: list[str], exp_root: Path) -> list[tuple[str, dict]]:
    """Accuracy and MAP@3 of each fused result on the whole test split; the ensemble's table and figures."""
    rows = []
    for name, path in fused_files.items():
        results = load_results(path)
        s = scores(results, labels)
        rows.append((name, {"test acc": s["acc"], "test MAP@3": s["map3"]}))
    ensemble = load_results(fused_files["fusion of all"])
    index = {c: i for i, c in enumerate(ensemble.classes)}
    report, figures = report_and_plot(np.array([index[label] for label in labels]), top_k(ensemble.probs, TOP_K),
                                      ensemble.classes, exp_root, "test_fused_all")
    print(f"\nThe ensemble on the whole test split ({len(labels)} clips); saved {', '.join(map(str, figures))}\n")
    print(report)
    return rows


def kaggle_scores(fused_files: dict[str, Path], data_root: Path, exp_root: Path) -> list[tuple[str, dict]]:
    """A submission per fused result, scored on Kaggle's leaderboard parts; the ensemble's is submission.csv."""
    rows = []
    for name, path in fused_files.items():
        sub_file = paths.submission_path(exp_root, None if name == "fusion of all" else name)
        run(prepare_submission, ["--prediction_file", str(path), "--out", str(sub_file), "--data_root",
                                 str(data_root)])
        if name == "fusion of all":
            for part in LEADERBOARD_SETS:
                run(evaluate_leaderboard, ["--submission_file", str(sub_file), "--set", part,
                                           "--data_root", str(data_root)])
        sub = read_submission(sub_file)
        ranked = {part: score_submission(sub, data_root, part)[:2] for part in LEADERBOARD_SETS}
        rows.append((name, {part: map_at_k_ranked(*ranked[part]) for part in LEADERBOARD_SETS}))
    return rows


if __name__ == "__main__":
    run_cli(main, parse_args())
