"""Run the whole schedule: pretrain every model, then self-verify and fine-tune for N iterations.

python run_experiment_set.py --experiment_set all                  # the seed's 63 steps (preset full)
python run_experiment_set.py --experiment_set all --preset demo    # the embedded default on a CPU
python run_experiment_set.py --experiment_set all --preset cpu     # your own data on a CPU (see below)
python run_experiment_set.py --experiment_set all --dry_run        # print the steps only
python run_experiment_set.py --experiment_set finetune --preset medium --control all_labels   # a control arm
python run_experiment_set.py --experiment_set all --launcher slurm --slurm_args "--partition=gpu --time=2:00:00"
python run_experiment_set.py --experiment_set all --launcher slurm --status   # each step's (and fold's) state

Each per-fold step launches run_experiment.sh (one fold per GPU). Finished steps are skipped, so the same
command resumes a killed schedule. At the end, each model's best iteration is written to
<exp_root>/best_iterations.json for evaluation and fusion: under the converged rule of the cpu preset the one of
lowest mean inner validation loss (clips held out of training), under the fixed schedules of full, medium and demo
the one of lowest mean verified validation loss, as the writeup chose.

The cpu preset on 2 cores: its time grows with the training clips times the epochs until convergence (capped at
80 pretraining epochs), times the folds, plus validation of whole clips at up to 1000 frames (5.7 s) a clip. A
400-clip, 5-fold data set of 5 s clips (both nets, spectrograms and evaluation) took 27 minutes; see
docs/own_data_on_a_cpu.md for the measured figures.
With --launcher slurm the whole schedule is submitted at once: each per-fold step is a job array over the folds,
chained with --dependency=afterok, scripts and logs in <exp_root>/slurm/ (see utils/launch/slurm.py); run the
same command again to resume, and --status to follow it (exit 1 when a fold failed).
A finished step counts only if its outputs were made with the same settings (epochs, seed, thresholds, ...):
otherwise the schedule is refused, naming the setting, unless --redo retrains it and its model's later steps.
--control all_labels / verified_only runs a control: the same fine-tuning iterations from the same pretrained
models on train.csv's labels as given, without self-verification: all of them, or the verified clips alone."""

import argparse
from pathlib import Path

import torch

from utils import paths
from utils.cli import run_cli
from utils.errors import InputError, MissingFile
from utils.folds import fold_numbers, load_folds
from utils.launch.local import run_local
from utils.launch.schedule import (
    CONTROLS,
    PRESETS,
    Preset,
    build_schedule,
    nothing_to_verify,
    redo_from,
    select_best_iterations,
    stale_steps,
)
from utils.launch.slurm import print_status, slurm_status, submit_slurm
from utils.paths import add_root_args
from utils.self_verification import check_threshold


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment_set", choices=["pretrain", "finetune", "all"], default="all")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full",
                        help="full: the seed's models and iterations, for GPUs; demo: small models for the embedded "
                             "default within make demo's time; cpu: small models trained until converged, for "
                             "your own data on a CPU; medium: the medium default's fixed schedule")
    parser.add_argument("--iterations", type=int, default=None, help="self-verification iterations (preset's)")
    parser.add_argument("--num_gpus", type=int, default=None, help="GPUs for the folds (default: all visible)")
    parser.add_argument("--seed", type=int, default=1, help="passed to every training and verification step")
    parser.add_argument("--epochs", type=int, default=None,
                        help="override every training step's epochs (quick trials; default: the model files')")
    parser.add_argument("--control", choices=sorted(CONTROLS), default=None,
                        help="fine-tune on train.csv's labels instead of self-verified ones: all_labels (noisy "
                             "ones included; tags base1..) or verified_only (tags ver1..); the evidence's controls")
    parser.add_argument("--top_probs_thresh", type=float, default=None,
                        help="self-verification's posterior threshold (default: the preset's)")
    parser.add_argument("--dry_run", action="store_true", help="print the steps without running them")
    parser.add_argument("--redo", action="store_true",
                        help="retrain steps whose outputs were made with other settings (--epochs, --seed, ...) "
                             "and every later step of their models; without it such a schedule is refused")
    parser.add_argument("--launcher", choices=["local", "slurm"], default="local",
                        help="local: one step after another on this machine; slurm: submit the schedule as jobs")
    parser.add_argument("--slurm_args", default="",
                        help='sbatch options for every job, e.g. "--partition=gpu --time=4:00:00 --account=X" '
                             '(a --gres/--gpus option replaces the default --gres=gpu:1; --gres=none asks for none)')
    parser.add_argument("--status", action="store_true",
                        help="show each step's state (slurm: from squeue/sacct and the outputs) instead of running")
    add_root_args(parser)
    return parser.parse_args(argv)


def check_flags(args: argparse.Namespace) -> None:
    """Before any step is launched: a bad value would otherwise fail in every fold, each printing it."""
    for flag, value, least in (("--epochs", args.epochs, 1), ("--iterations", args.iterations, 0),
                               ("--num_gpus", args.num_gpus, 0)):
        if value is not None and value < least:
            raise InputError(f"{flag} must be at least {least}, got {value}")
    if args.top_probs_thresh is not None:
        check_threshold(args.top_probs_thresh)
    data_root, exp_root = paths.data_root(args.data_root), paths.exp_root(args.exp_root)
    if not data_root.is_dir():
        raise MissingFile(f"--data_root {data_root} is not a folder (it needs train.csv and the spectrograms)")
    if exp_root.exists() and not exp_root.is_dir():
        raise InputError(f"--exp_root {exp_root} is a file, not a folder")


def main(args: argparse.Namespace) -> int:
    check_flags(args)
    preset = PRESETS[args.preset]
    iterations = preset.iterations if args.iterations is None else args.iterations
    # absolute, since the steps run from the repository root whatever the caller's folder
    exp_root = paths.exp_root(args.exp_root).resolve()
    data_root = paths.data_root(args.data_root).resolve()
    steps = build_schedule(preset, args.experiment_set, data_root, exp_root,
                           iterations, seed=args.seed, control=args.control, epochs=args.epochs,
                           top_probs_thresh=args.top_probs_thresh)
    folds = fold_numbers(load_folds(data_root))
    print(f"{data_root}: {len(folds)} folds", flush=True)
    if nothing_to_verify(data_root) and args.experiment_set != "pretrain" and args.control is None:
        print(f"{data_root / paths.TRAIN_CSV} has no unverified clips: self-verification has nothing to verify, so "
              "the schedule pretrains only (no fine-tuning iterations)", flush=True)
        iterations = 0
    stale = stale_steps(steps)
    if stale and not args.status:
        step, diff = stale[0]
        if not args.redo:
            raise InputError(f"{step.name}: its outputs in {exp_root} were made with other settings "
                             f"({'; '.join(diff)}); use a new --exp_root to keep them, or add --redo to retrain "
                             f"it and the later steps of its model")
        if not args.dry_run:
            removed = redo_from(steps, stale)
            print(f"--redo: {len(stale)} step(s) made with other settings, first {step.name} ({'; '.join(diff)}); "
                  f"removed {len(removed)} output file(s) of it and the later steps of its model(s)", flush=True)
    if args.status:
        # the outputs on disk say what is done whatever the launcher; slurm's queue adds what runs or failed
        statuses = slurm_status(steps, exp_root)
        code = print_status(statuses)
        if all(s.state == "DONE" for s in statuses) and args.control is None:
            report_best(preset, exp_root, iterations, folds)  # a submitted schedule ends here, as a local run does
        return code
    if args.launcher == "slurm":
        # submitted, not finished: --status picks the best iterations once every job is done
        submit_slurm(steps, exp_root, args.slurm_args, dry_run=args.dry_run)
        return 0
    num_gpus = torch.cuda.device_count() if args.num_gpus is None else args.num_gpus
    run_local(steps, num_gpus, exp_root, dry_run=args.dry_run)
    if not args.dry_run and args.control is None:
        report_best(preset, exp_root, iterations, folds)
    return 0


def report_best(preset: Preset, exp_root: Path, iterations: int, folds: list[int]) -> None:
    for name, best in select_best_iterations(preset, exp_root, iterations, folds).items():
        print(f"best iteration of {name} by {best['chosen_by']}: {best['tag']} (mean loss {best['valid_loss']:.4f}, "
              f"validation accuracy {best['valid_acc']:.4f})")


if __name__ == "__main__":
    run_cli(main, parse_args())
