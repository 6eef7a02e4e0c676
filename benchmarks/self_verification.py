"""Does self-verification lift a model? The writeup's table on the medium default, with two controls.

python -m benchmarks.self_verification [--seeds 1 2 3] [--data_root data_medium]
                                       [--exp_root experiments/self_verification]

Builds the medium default (make_demo_dataset.py --size medium) and its v1/v2 spectrograms if missing, then per
seed pretrains the medium preset's net on the four folds (it0), and from those same it0 models runs three arms of
the same fine-tuning iterations:
  self-verified  (it1..)    each round verifies the held-out unverified clips, fine-tunes on verified + accepted;
  all labels     (base1..)  fine-tunes on every label of train.csv, the noisy ones included;
  verified only  (ver1..)   fine-tunes on the manually verified clips alone.
It prints, as the writeup reports, the mean verified validation accuracy over the folds after pretraining, after
round 1 and at the best round (lowest mean verified validation loss), per seed with mean and spread, the paired
differences between the arms, and each round's acceptance volume and precision (the medium default knows every
clip's true label). Beside the nets: benchmarks/linear_baseline.py's logistic regression on the same folds.

The threshold: the writeup's 0.95, unless on the first seed's pretrained models it accepts less than
--min_share of the candidates; then the lowest threshold whose acceptance precision there is at least
--precision (the writeup does not report its own), stated in the output. Everything lands in
<exp_root>/self_verification.json and self_verification.png; a killed run resumes where it stopped (the wall time
it reports is then the resumed run's)."""

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from benchmarks.linear_baseline import cross_validate
from utils import paths
from utils.atomic import save_json
from utils.demo.dataset import PARAMS_FILE, make_params
from utils.folds import fold_numbers, load_folds
from utils.launch.schedule import CONTROLS, PRESETS, build_schedule, fold_summary
from utils.paths import REPO
from utils.plots import pyplot, save_figure

PRESET = "medium"
ARMS = {"self-verified": "it", "all labels": CONTROLS["all_labels"][0], "verified only": CONTROLS["verified_only"][0]}
# the table's rows: which accuracy of an arm's curve (it0, round 1, the best round) each reports
ROWS = {"pretrained": lambda c: c["valid_acc"][0], "round 1": lambda c: c["valid_acc"][1],
        "best round": lambda c: c["valid_acc"][c["best_round"]]}
WRITEUP = {"pretrained": 0.9387, "round 1": 0.9556, "best round": 0.9601}  # vgg_gap_spec1_1 on FSDKaggle2018


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)


def other_build(data_root: Path) -> str | None:
    """Why data_root must not be used: make_demo_dataset.py would replace a demo build of other parameters (the
    embedded default, say) with the medium one. None for an empty folder, or the medium build, whole or in part."""
    try:
        stored = json.loads((data_root / PARAMS_FILE).read_text())["params"]
    except FileNotFoundError:
        return None  # a folder that holds another data set is refused by make_demo_dataset.py itself
    except (OSError, ValueError, KeyError) as e:
        return f"{data_root / PARAMS_FILE} is unreadable ({e})"
    if stored != json.loads(json.dumps(asdict(make_params(size="medium")))):
        return f"{data_root} holds another demo build than the medium default; give the medium one its own folder"
    return None


def prepare_data(data_root: Path) -> None:
    """The medium default and its training spectrograms; each command does nothing when its output is complete."""
    py = sys.executable
    run([py, "make_demo_dataset.py", "--size", "medium", "--data_root", str(data_root)])
    for version in (1, 2):
        run([py, "prepare_spectrograms.py", "--audio_path", str(data_root / "audio_train"),
             "--out_dir", str(data_root / f"specs_train_v{version}"), "--spec_version", str(version), "--dump",
             "--no_progress"])


def schedule(data_root: Path, exp_root: Path, seed: int, experiment_set: str, *extra: str) -> None:
    run([sys.executable, "run_experiment_set.py", "--experiment_set", experiment_set, "--preset", PRESET,
         "--seed", str(seed), "--data_root", str(data_root), "--exp_root", str(exp_root), *extra])


def choose_threshold(data_root: Path, exp_root: Path, seed: int, min_share: float, precision: float) -> dict:
    """Round 1's verification of the first seed's it0 models at the writeup's threshold (the same posteriors the
    real round computes: same seed, same excerpts), and what every other threshold would have accepted."""
    preset = PRESETS[PRESET]
    out = paths.run_dir(exp_root, preset.models[0][0]) / "threshold_probe.csv"
    if not out.with_suffix(".summary.json").is_file():
        command = build_schedule(preset, "finetune", data_root, exp_root, 1, seed=seed)[0].command  # round 1's
        command[command.index("--out") + 1] = out.name
        run(command)
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    candidates, sweep = summary["totals"]["candidates"], summary["thresholds"]
    at_writeup = next(r for r in sweep if r["threshold"] == preset.top_probs_thresh)
    if at_writeup["accepted"] >= min_share * candidates:
        chosen, why = preset.top_probs_thresh, "the writeup's"
    else:
        precise = [r for r in sweep if r["accepted"] and r["precision"] >= precision]
        chosen = min(r["threshold"] for r in precise) if precise else preset.top_probs_thresh
        why = (f"the writeup's {preset.top_probs_thresh} accepts {at_writeup['accepted']} of {candidates} "
               f"(< {min_share:.0%}); the lowest threshold with acceptance precision >= {precision:.2f}"
               if precise else "no threshold reaches the precision; the writeup's kept")
    return {"threshold": chosen, "why": why, "candidates": candidates, "sweep": sweep, "seed": seed}


def arm_curves(exp_root: Path, model: str, prefix: str, iterations: int, folds: list[int]) -> dict:
    tags = ["it0"] + [f"{prefix}{i}" for i in range(1, iterations + 1)]
    rows = [fold_summary(exp_root, model, tag, folds) for tag in tags]
    accs, losses = [r["valid_acc"] for r in rows], [r["valid_loss"] for r in rows]
    best = 1 + int(np.argmin(losses[1:]))  # the best round, as select_best_iterations picks it (never it0)
    return {"valid_acc": accs, "valid_loss": losses, "best_round": best}


def acceptance(exp_root: Path, model: str, iterations: int) -> list[dict]:
    run_dir = paths.run_dir(exp_root, model)
    return [json.loads((run_dir / f"train_self_verified_it{i}.summary.json").read_text())["totals"]
            for i in range(iterations)]


def mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.3f} +- {np.std(values, ddof=1) if len(values) > 1 else float('nan'):.3f}"


def accuracy_rows(results: dict) -> list[tuple[str, str, list[dict]]]:
    """(arm, row, each seed's curve) for the table: the pretrained row once, under the self-verified arm."""
    return [(arm, row, [results["arms"][arm][str(s)] for s in results["seeds"]])
            for arm in ARMS for row in ROWS if row != "pretrained" or arm == "self-verified"]


def paired_differences(results: dict) -> list[tuple[str, str, list[float], float]]:
    """(against, row, per-seed differences, the larger seed spread of the two sides): the self-verified arm against
    its own pretrained models and against each control at the same row."""
    seeds, arms = results["seeds"], results["arms"]
    out = []
    for control in ("pretrained", "all labels", "verified only"):
        for row in ("round 1", "best round"):
            against = ROWS["pretrained"] if control == "pretrained" else ROWS[row]
            arm = "self-verified" if control == "pretrained" else control
            diff = [ROWS[row](arms["self-verified"][str(s)]) - against(arms[arm][str(s)]) for s in seeds]
            spread = max(np.std([pick(arms[a][str(s)]) for s in seeds], ddof=1)
                         for a, pick in (("self-verified", ROWS[row]), (arm, against)))
            out.append((control, row, diff, spread))
    return out


def report(results: dict) -> None:
    seeds = results["seeds"]
    print(f"\nthreshold {results['threshold']['threshold']} ({results['threshold']['why']}); sweep on seed "
          f"{results['threshold']['seed']}'s it0 models, {results['threshold']['candidates']} candidates:")
    for r in results["threshold"]["sweep"]:
        print(f"  > {r['threshold']:.2f}: accepts {r['accepted']:4d}, precision {r['precision']:.3f}")
    print("\nmean verified validation accuracy over the folds (best-loss epoch of each run)")
    print(f"{'':>26s} " + " ".join(f"{'seed ' + str(s):>7s}" for s in seeds) + "   mean +- std   writeup")
    for arm, row, curves in accuracy_rows(results):
        values = [ROWS[row](c) for c in curves]
        writeup = f"{WRITEUP[row]:.4f}" if arm == "self-verified" else ""
        print(f"{arm + ', ' + row:>26s} " + " ".join(f"{v:7.3f}" for v in values)
              + f"   {mean_std(values)}   {writeup}")
    for control, row, diff, spread in paired_differences(results):
        print(f"self-verified - {control}, {row}: " + " ".join(f"{d:+.3f}" for d in diff)
              + f"; mean {mean_std(diff)}; {'larger' if abs(np.mean(diff)) > spread else 'not larger'} than "
              f"the seed spread of either arm ({spread:.3f})")
    print("\nself-verification per round (mean over seeds): accepted of candidates, acceptance precision "
          "(candidates' labels right), noisy labels kept out")
    for i in range(results["iterations"]):
        totals = [results["acceptance"][str(s)][i] for s in seeds]
        print(f"  round {i + 1}: {np.mean([t['accepted'] for t in totals]):.0f} of {totals[0]['candidates']}, "
              f"precision {np.mean([t['acceptance_precision'] for t in totals]):.3f} "
              f"({totals[0]['candidate_precision']:.3f}), noisy kept out "
              f"{np.mean([t['noisy_rejected'] for t in totals]):.0f} of {totals[0]['noisy_candidates']}")
    for arm, r in results["linear"].items():
        print(f"logistic regression (band mean/std/p90 of v1+v2), {arm}: accuracy {r['valid_acc']:.3f}, "
              f"MAP@3 {r['valid_map']:.3f}")
    print(f"\nwall time {results['wall_s'] / 60:.0f} min")


def markdown(results: dict) -> None:
    """The README's tables: accuracy per arm beside the writeup's, then acceptance per round."""
    seeds = results["seeds"]
    print("| arm | after | " + " | ".join(f"seed {s}" for s in seeds) + " | mean +- std | writeup |")
    print("| --- | --- |" + " --- |" * (len(seeds) + 2))
    for arm, row, curves in accuracy_rows(results):
        cells = [f"{ROWS[row](c):.3f}" + (f" (r{c['best_round']})" if row == "best round" else "") for c in curves]
        writeup = f"{WRITEUP[row]:.4f}" if arm == "self-verified" else ""
        summary = mean_std([ROWS[row](c) for c in curves])
        print(f"| {arm} | {row} | " + " | ".join(cells) + f" | {summary} | {writeup} |")
    for control, row, diff, _ in paired_differences(results):
        print(f"| self-verified - {control} | {row} | " + " | ".join(f"{d:+.3f}" for d in diff)
              + f" | **{np.mean(diff):+.3f} +- {np.std(diff, ddof=1):.3f}** | |")
    print("\n| round | accepted (per seed) | acceptance precision (per seed) | noisy labels kept out |")
    print("| --- | --- | --- | --- |")
    for i in range(results["iterations"]):
        totals = [results["acceptance"][str(s)][i] for s in seeds]
        precisions = " / ".join(f"{t['acceptance_precision']:.3f}" for t in totals)
        print(f"| {i + 1} | {' / '.join(str(t['accepted']) for t in totals)} of {totals[0]['candidates']} | "
              f"{precisions} | "
              f"{' / '.join(str(t['noisy_rejected']) for t in totals)} of {totals[0]['noisy_candidates']} |")


def plot(results: dict, path: Path) -> None:
    plt = pyplot()
    seeds, n = results["seeds"], results["iterations"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.2))
    x = np.arange(n + 1)
    for (arm, marker), color in zip((("self-verified", "o"), ("all labels", "s"), ("verified only", "^")),
                                    ("C0", "C1", "C2"), strict=True):
        curves = np.array([results["arms"][arm][str(s)]["valid_acc"] for s in seeds])
        ax.errorbar(x, curves.mean(0), curves.std(0), marker=marker, capsize=3, label=arm, color=color)
    for (arm, r), style in zip(results["linear"].items(), (":", "-."), strict=True):
        ax.axhline(r["valid_acc"], color="gray", linestyle=style, label=f"logistic regression, {arm}")
    ax.set_xticks(x, ["pretrain"] + [f"round {i}" for i in range(1, n + 1)])
    ax.set_ylabel("mean verified validation accuracy")
    ax.set_title(f"medium default, mean +- std over seeds {' '.join(map(str, seeds))}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    rounds = np.arange(1, n + 1)
    accepted = np.array([[results["acceptance"][str(s)][i]["accepted"] for i in range(n)] for s in seeds])
    precision = np.array([[results["acceptance"][str(s)][i]["acceptance_precision"] for i in range(n)]
                          for s in seeds])
    bx.bar(rounds, accepted.mean(0), yerr=accepted.std(0), color="C0", alpha=0.5, capsize=3)
    bx.set_xticks(rounds, [f"round {i}" for i in rounds])
    bx.set_ylabel(f"accepted of {results['acceptance'][str(seeds[0])][0]['candidates']} unverified", color="C0")
    px = bx.twinx()
    px.errorbar(rounds, precision.mean(0), precision.std(0), color="C3", marker="o", capsize=3)
    px.axhline(results["acceptance"][str(seeds[0])][0]["candidate_precision"], color="C3", linestyle=":")
    px.set_ylim(0.5, 1.02)
    px.set_ylabel("acceptance precision (dotted: all candidates)", color="C3")
    bx.set_title(f"self-verification at threshold {results['threshold']['threshold']}")
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--data_root", default="data_medium", help="the medium default, built there if missing")
    parser.add_argument("--exp_root", default="experiments/self_verification")
    parser.add_argument("--min_share", type=float, default=0.1,
                        help="the writeup's threshold is kept if it accepts at least this share of the candidates")
    parser.add_argument("--precision", type=float, default=0.95,
                        help="else the lowest threshold whose acceptance precision reaches this")
    parser.add_argument("--report", action="store_true",
                        help="print the saved <exp_root>/self_verification.json's tables (and as markdown) again")
    args = parser.parse_args()
    if args.report:
        saved = Path(args.exp_root) / "self_verification.json"
        if not saved.is_file():
            parser.error(f"--report: {saved} not found; run the benchmark without --report first")
        results = json.loads(saved.read_text())
        report(results)
        markdown(results)
        return
    start = time.time()
    data_root, exp_root = Path(args.data_root).resolve(), Path(args.exp_root).resolve()
    if why := other_build(data_root):
        parser.error(f"--data_root: {why}")
    prepare_data(data_root)
    folds = fold_numbers(load_folds(data_root))
    preset = PRESETS[PRESET]
    model = preset.models[0][0]
    results: dict = {"seeds": args.seeds, "iterations": preset.iterations, "arms": {a: {} for a in ARMS},
                     "acceptance": {}}
    for seed in args.seeds:
        root = exp_root / f"seed{seed}"
        schedule(data_root, root, seed, "pretrain")
        if "threshold" not in results:
            results["threshold"] = choose_threshold(data_root, root, seed, args.min_share, args.precision)
        thresh = str(results["threshold"]["threshold"])
        schedule(data_root, root, seed, "finetune", "--top_probs_thresh", thresh)
        for control in CONTROLS:
            schedule(data_root, root, seed, "finetune", "--control", control)
        for arm, prefix in ARMS.items():
            results["arms"][arm][str(seed)] = arm_curves(root, model, prefix, preset.iterations, folds)
        results["acceptance"][str(seed)] = acceptance(root, model, preset.iterations)
    results["linear"] = cross_validate(data_root, ["specs_train_v1", "specs_train_v2"])
    results["wall_s"] = time.time() - start
    save_json(exp_root / "self_verification.json", results)
    report(results)
    markdown(results)
    plot(results, exp_root / "self_verification.png")
    print(f"saved {exp_root / 'self_verification.json'} and {exp_root / 'self_verification.png'}")


if __name__ == "__main__":
    main()
