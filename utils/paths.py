"""Where data and experiment outputs live: flags first, then environment variables, then defaults."""

import argparse
import os
from pathlib import Path

DATA_ROOT_ENV = "FSDTAG_DATA_ROOT"
TRAIN_CSV = "train.csv"  # the dataset's own labels, always read from the data root
EXP_ROOT_ENV = "FSDTAG_EXP_ROOT"
# The checkout: scripts and model files are named relative to it (launchers, bundles, tests)
REPO = Path(__file__).resolve().parents[1]


def data_root(flag: str | None = None) -> Path:
    return Path(flag or os.environ.get(DATA_ROOT_ENV) or "data")


def exp_root(flag: str | None = None) -> Path:
    return Path(flag or os.environ.get(EXP_ROOT_ENV) or "experiments")


def add_root_args(parser: argparse.ArgumentParser) -> None:
    """The two root flags every script shares."""
    parser.add_argument("--data_root", default=None,
                        help=f"dataset folder (audio_train/, train.csv, specs_*); default ${DATA_ROOT_ENV} or data/")
    parser.add_argument("--exp_root", default=None,
                        help=f"experiment outputs; default ${EXP_ROOT_ENV} or experiments/")


def model_name(model_file: str | Path) -> str:
    return Path(model_file).stem


def run_dir(exp_root_dir: str | Path, model_file: str | Path) -> Path:
    """The one place a model's outputs go: <exp_root>/<model name>/."""
    return Path(exp_root_dir) / model_name(model_file)


def params_path(exp_root_dir: str | Path, model_file: str | Path, fold: int, tag: str) -> Path:
    return run_dir(exp_root_dir, model_file) / f"params_{fold}_{tag}.pt"


def log_path(exp_root_dir: str | Path, model_file: str | Path, fold: int, tag: str) -> Path:
    return run_dir(exp_root_dir, model_file) / f"results_{fold}_{tag}.json"


def checkpoint_path(exp_root_dir: str | Path, model_file: str | Path, fold: int, tag: str) -> Path:
    return run_dir(exp_root_dir, model_file) / f"checkpoint_{fold}_{tag}.pt"
