"""Where data and experiment outputs live: flags first, then environment variables, then defaults."""

import argparse
import os
import re
from pathlib import Path

from utils.errors import DataError, InputError, MissingFile

DATA_ROOT_ENV = "FSDTAG_DATA_ROOT"
TRAIN_CSV = "train.csv"  # the dataset's own labels, always read from the data root
FOLDS_CSV = "folds.csv"
TEST_CSV = "test.csv"  # a plain test split (fname,label), scored whole
KAGGLE_TEST_CSV = "test_post_competition.csv"  # Kaggle's, scored by leaderboard part
MANIFEST_NAME = "manifest.json"  # a spectrogram folder's settings (prepare_spectrograms.py)
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


def best_iterations_path(exp_root_dir: str | Path) -> Path:
    """Each model's best iteration, chosen by the schedule, read by evaluation and bundling."""
    return Path(exp_root_dir) / "best_iterations.json"


def test_csv(data_root: str | Path) -> Path | None:
    """The data root's test split: Kaggle's test_post_competition.csv or a plain test.csv; None without one."""
    found = [Path(data_root) / name for name in (KAGGLE_TEST_CSV, TEST_CSV) if (Path(data_root) / name).is_file()]
    if len(found) > 1:
        raise DataError(f"{data_root} holds both {KAGGLE_TEST_CSV} and {TEST_CSV}; keep the one that is its test split")
    return found[0] if found else None


# A data root keeps the spectrograms of audio_<split>/ in specs_<split>_<features>/ (specs_train_v1, specs_test_v1):
# the test set's folder of a model's features follows from the training folder by that rule alone.
_TRAIN_SPEC_DIR = re.compile(r"specs_train_(.+)")


def test_spec_dir(train_spec_dir: str) -> str:
    """specs_train_<features> -> specs_test_<features>."""
    match = _TRAIN_SPEC_DIR.fullmatch(Path(train_spec_dir).name)
    if match is None or Path(train_spec_dir).name != train_spec_dir:
        raise InputError(f"--spec_dir {train_spec_dir!r} is not named specs_train_<features>, so the test set's "
                         "spectrogram folder cannot follow from it; pass --test_spec_dir")
    return f"specs_test_{match.group(1)}"


def plain_name(value: str, what: str) -> str:
    """A name that becomes part of a file name (a tag, a model's name): refused unless it is a plain name, so that
    no output can land outside its folder (--tag ../../x) or two outputs in one file."""
    if not value or value in (".", "..") or any(c in value for c in "/\\\0") or value != value.strip():
        raise InputError(f"{what} {value!r} is not a plain name (no '/', '\\', '..' or surrounding spaces): it "
                         "names output files")
    return value


def model_name(model_file: str | Path) -> str:
    return plain_name(Path(model_file).stem, f"model file {str(model_file)!r}: its name")


def run_dir(exp_root_dir: str | Path, model_file: str | Path) -> Path:
    """The one place a model's outputs go: <exp_root>/<model name>/."""
    return Path(exp_root_dir) / model_name(model_file)


def fold_file(exp_root_dir: str | Path, model_file: str | Path, kind: str, fold: int, tag: str, suffix: str) -> Path:
    """<run dir>/<kind>_<fold>_<tag><suffix>: the files of one fold's training run."""
    return run_dir(exp_root_dir, model_file) / f"{kind}_{fold}_{plain_name(tag, '--tag')}{suffix}"


def params_path(exp_root_dir: str | Path, model_file: str | Path, fold: int, tag: str) -> Path:
    return fold_file(exp_root_dir, model_file, "params", fold, tag, ".pt")


def final_params_path(exp_root_dir: str | Path, model_file: str | Path, fold: int, tag: str) -> Path:
    """The model at the end of training, chosen by nothing the reported fold says (the honest cross-validation)."""
    return fold_file(exp_root_dir, model_file, "final", fold, tag, ".pt")


def log_path(exp_root_dir: str | Path, model_file: str | Path, fold: int, tag: str) -> Path:
    return fold_file(exp_root_dir, model_file, "results", fold, tag, ".json")


def checkpoint_path(exp_root_dir: str | Path, model_file: str | Path, fold: int, tag: str) -> Path:
    return fold_file(exp_root_dir, model_file, "checkpoint", fold, tag, ".pt")


def lock_path(exp_root_dir: str | Path, model_file: str | Path, fold: int, tag: str) -> Path:
    """Held while a fold trains, so that a second identical command stops at once."""
    return fold_file(exp_root_dir, model_file, ".lock", fold, tag, "")


def resolve_train_file(name: str, run_dir: Path, data_root: Path) -> Path:
    """A path (with a folder) as given; the data root's name (train.csv) always from the data root; another bare
    name from the model's run dir (self-verified files), else from the data root; never from the working
    directory."""
    if Path(name).name != name:
        if Path(name).is_file():
            return Path(name)
        raise MissingFile(f"train file {name} not found")
    if name == TRAIN_CSV:  # a stray copy in the run dir must never shadow the dataset's own labels
        if (data_root / name).is_file():
            return data_root / name
        raise MissingFile(f"train file {data_root / name} not found")
    for candidate in (run_dir / name, data_root / name):
        if candidate.is_file():
            return candidate
    raise MissingFile(f"train file {name} found neither in {run_dir} nor in {data_root}")


def resolve_ini_params(template: str, fold: int, run_dir: Path) -> Path:
    """'params_%d_it0' -> <run_dir>/params_<fold>_it0.pt (the seed's fold template)."""
    name = template % fold if "%d" in template else template
    path = Path(name)
    if path.suffix != ".pt":
        path = path.with_name(path.name + ".pt")
    return path if path.name != str(path) else run_dir / path  # a bare name lives in the run dir

# ---- outputs of a run dir and an experiment root -------------------------------------------------------------

def self_verified_path(out: str, exp_root_dir: str | Path, model_file: str | Path) -> Path:
    """self_verify.py --out: a bare file name goes into the model's run dir, next to the parameters that produced
    it; never the data root's name (train.csv), which a self-verified copy would be mistaken for or shadow."""
    path = Path(out)
    if path.name == TRAIN_CSV:
        raise InputError(f"--out {out}: a self-verified file may not be named {TRAIN_CSV} (the dataset's own "
                         "file); use e.g. train_self_verified_it0.csv")
    return path if path.parent != Path(".") else run_dir(exp_root_dir, model_file) / plain_name(out, "--out")


def eval_name(set_name: str, spec_dir: str, params_file: str | Path) -> str:
    """<set>_<spec_dir>_<fold>_<tag> for params_<fold>_<tag>.pt; other params files keep their stem."""
    stem = Path(params_file).stem
    return f"{set_name}_{plain_name(spec_dir, '--spec_dir')}_{stem.removeprefix('params_')}"


def results_path(out_dir: str | Path, set_name: str, spec_dir: str, params_file: str | Path) -> Path:
    """eval.py --dump_results' posteriors, named so a model's folds can be globbed for fusion.py."""
    return Path(out_dir) / f"probs_{eval_name(set_name, spec_dir, params_file)}.npz"


def fused_path(exp_root_dir: str | Path, name: str) -> Path:
    """evaluate_experiment_set.py's fused posteriors of a model (its folds) or of all ('all')."""
    return Path(exp_root_dir) / f"fused_{plain_name(name, 'a fused result name')}.npz"


def submission_path(exp_root_dir: str | Path, name: str | None = None) -> Path:
    """The ensemble's Kaggle submission (name None), or one model's."""
    return Path(exp_root_dir) / ("submission.csv" if name is None else f"submission_{plain_name(name, 'name')}.csv")


def fold_log_dir(exp_root_dir: str | Path) -> Path:
    """run_experiment.sh's fold logs, <name>_fold<K>.log (the script spells the same rule in bash)."""
    return Path(exp_root_dir) / "logs"


def slurm_dir(exp_root: Path) -> Path:
    """The SLURM launcher's scripts, logs and job record."""
    return exp_root / "slurm"


def slurm_record_path(exp_root: Path) -> Path:
    return slurm_dir(exp_root) / "jobs.json"


def slurm_script_path(exp_root: Path, step_name: str) -> Path:
    return slurm_dir(exp_root) / f"{plain_name(step_name, 'a step name')}.sbatch"


def slurm_log_pattern(exp_root: Path, step_name: str, per_fold: bool) -> Path:
    """SLURM's output pattern: one log per array task (%A job, %a fold), or per job for a single job."""
    step_name = plain_name(step_name, "a step name")
    name = f"{step_name}_%A_%a.log" if per_fold else f"{step_name}_%j.log"
    return slurm_dir(exp_root) / "logs" / name
