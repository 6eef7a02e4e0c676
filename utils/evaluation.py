"""Evaluating on a set of clips: which clips an evaluation set holds (a fold's validation clips, the test split or
a part of Kaggle's leaderboard), predicting them, and the report with its figures. Result files live in
utils/results.py, Kaggle's submission in utils/submission.py."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.special
import torch
from torch import nn

from utils import paths
from utils.dataset_csv import is_kaggle, read_test_csv, read_train_csv
from utils.errors import DataError, InputError
from utils.folds import load_folds, split_fold
from utils.labels import LabelEncoder
from utils.metrics import confusion_matrix, format_report, per_class_scores
from utils.plots import plot_class_scores, plot_confusion_matrix, pyplot, save_figure
from utils.predict import predict_logits
from utils.results import check_set
from utils.spec_store import open_store
from utils.submission import LEADERBOARD_SETS, TOP_K, USAGES_OF_SET


@dataclass
class ClipSet:
    fnames: list[str]
    labels: list[str] | None  # None for Kaggle's 'test' (its Ignored rows carry no label)
    spec_dir: Path
    source: Path  # the CSV the clips come from, for error messages


def select_clips(data_root: str | Path, set_name: str, spec_dir: str, fold: int | None = None,
                 test_spec: str | None = None) -> ClipSet:
    """The clips of an evaluation set: 'valid' is fold `fold`'s verified held-out part of train.csv; 'test' is
    every row of the test split (scored with its labels, but for Kaggle's, whose Ignored rows have none); the
    leaderboard sets are rows of Kaggle's test_post_competition.csv by usage."""
    check_set(set_name)
    data_root = Path(data_root)
    if set_name == "valid":
        if fold is None:
            raise InputError("--set valid needs --fold")
        source = data_root / "train.csv"
        _, valid, _ = split_fold(read_train_csv(source), load_folds(data_root), fold)
        return ClipSet(list(valid["fname"]), list(valid["label"]), data_root / spec_dir, source)
    source = paths.test_csv(data_root)
    if source is None:
        raise DataError(f"{data_root} has no test split ({paths.KAGGLE_TEST_CSV} or {paths.TEST_CSV}); evaluate "
                        "with --set valid (evaluate_experiment_set.py reports the cross-validation figures)")
    df = read_test_csv(source)
    if set_name in LEADERBOARD_SETS:
        if not is_kaggle(df):
            raise InputError(f"set '{set_name}' is a part of Kaggle's leaderboard, but {source} is a plain test "
                             "split, scored whole: use --set test")
        df = df[df["usage"].isin(USAGES_OF_SET[set_name])]
    labels = None if set_name == "test" and is_kaggle(df) else list(df["label"])
    return ClipSet(list(df["fname"]), labels, data_root / (test_spec or paths.test_spec_dir(spec_dir)), source)


def encode_labels(clips: ClipSet, classes: Sequence[str]) -> np.ndarray:
    try:
        return LabelEncoder(classes).encode(clips.labels)
    except ValueError as e:
        raise InputError(f"{clips.source}: {e}; the model cannot be scored on these clips") from None


def class_prior(train_csv: str | Path, classes: Sequence[str]) -> np.ndarray:
    """The share of each class among the training clips: the best guess for a clip nothing is known of."""
    counts = read_train_csv(train_csv)["label"].value_counts()
    prior = np.array([counts.get(c, 0) for c in classes], dtype=np.float64)
    if prior.sum() == 0:
        raise DataError(f"{train_csv}: none of the model's classes occurs; cannot form a class prior")
    return (prior / prior.sum()).astype(np.float32)


def predict_clips(model: nn.Module, clips: ClipSet, max_len: int, batch_size: int, device: torch.device,
                  prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Softmax posteriors (N, C) of every clip, whole clip tiled/clipped to max_len, and the (N,) mask of
    clips without a spectrogram (empty or unreadable audio), whose posterior is `prior`. The real test set
    has such clips, and a submission needs a row for every one."""
    store = open_store(clips.spec_dir)
    missing = np.array([f not in store for f in clips.fnames], dtype=bool)
    if missing.all():
        raise DataError(f"none of the {len(missing)} clips of {clips.source} has a spectrogram in "
                        f"{clips.spec_dir}; run prepare_spectrograms.py on them")
    specs = [store.get(f, max_len) for f, m in zip(clips.fnames, missing, strict=True) if not m]
    model.to(device)
    found = scipy.special.softmax(predict_logits(model, specs, max_len, batch_size, device), axis=1)
    probs = np.empty((len(missing), found.shape[1]), np.float32)
    probs[~missing] = found
    if missing.any():
        probs[missing] = prior
    return probs, missing


def describe_missing(clips: ClipSet, missing: np.ndarray, shown: int = 5) -> str:
    """One warning line: how many clips lack a spectrogram, which, and where prepare_spectrograms said why."""
    names = [f for f, m in zip(clips.fnames, missing, strict=True) if m]
    failed = clips.spec_dir / "failed.txt"
    why = f" (reasons in {failed})" if failed.is_file() else ""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return (f"warning: {len(names)} of {len(missing)} clips have no spectrogram in {clips.spec_dir}{why}; "
            f"their posterior is the training set's class prior: {', '.join(names[:shown])}{more}")


# --- reporting ---

def report_and_plot(y_true: np.ndarray, ranked: np.ndarray, classes: Sequence[str], out_dir: str | Path,
                    name: str) -> tuple[str, list[Path]]:
    """The text report, and cmatrix_<name>.png and pr_re_f_<name>.png in out_dir. The figures show the
    classes that occur as true or predicted labels, so a 41-class index space stays readable."""
    report = format_report(y_true, ranked, classes, TOP_K)
    y_pred = ranked[:, 0]
    used = np.union1d(y_true, y_pred)  # every clip's true and predicted class is among these
    names = [classes[i] for i in used]
    cm = confusion_matrix(y_true, y_pred, len(classes))[np.ix_(used, used)]
    s = {key: v[used] for key, v in per_class_scores(y_true, y_pred, len(classes)).items()}
    out_dir = Path(out_dir)
    figures = [out_dir / f"cmatrix_{name}.png", out_dir / f"pr_re_f_{name}.png"]
    for path, fig in zip(figures, (plot_confusion_matrix(cm, names),
                                   plot_class_scores(names, s["precision"], s["recall"], s["f1"])), strict=True):
        save_figure(fig, path)
        pyplot().close(fig)
    return report, figures
