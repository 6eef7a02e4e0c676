"""Evaluation logic shared by eval.py, fusion.py, prepare_submission.py and evaluate_leaderboard.py:
which clips an evaluation set holds, predicting them, result files (.npz), fusion, and submissions.

A result file is a plain .npz (no pickled objects; load with allow_pickle=False) holding
    fnames  (N,) str    clip file names, in the order of the CSV they came from
    classes (C,) str    the model's class list (column order of probs)
    probs   (N, C) f32  softmax posteriors
    set     ()  str     the evaluation set (valid, public, private, private_public, test)
    missing (N,) bool   clips without a spectrogram (empty or unreadable audio): their probs are the training
                        set's class prior
and is named probs_<set>_<spec_dir>_<fold>_<tag>.npz, so a model's folds can be globbed for fusion."""

import csv
import io
import zipfile
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.special
import torch
from torch import nn

from utils import paths
from utils.atomic import save_npz, save_text
from utils.dataset_csv import is_kaggle, read_test_csv, read_train_csv
from utils.errors import DataError, InputError, MissingFile
from utils.folds import load_folds, split_fold
from utils.labels import LabelEncoder
from utils.metrics import confusion_matrix, format_report, per_class_scores, top_k
from utils.plots import plot_class_scores, plot_confusion_matrix, pyplot, save_figure
from utils.predict import predict_logits, weighted_average
from utils.spec_store import open_store

SETS = ("valid", "public", "private", "private_public", "test")
LEADERBOARD_SETS = ("public", "private", "private_public")
# Kaggle scored Public and Private rows; 'Ignored' rows were padding and are never scored.
USAGES_OF_SET = {"public": ("Public",), "private": ("Private",), "private_public": ("Public", "Private")}
RESULT_KEYS = ("fnames", "classes", "probs", "set", "missing")
SUBMISSION_HEADER = ["fname", "label"]
TOP_K = 3
NOT_A_CLASS = "(not a class name)"  # what a submission's unknown label is scored as: always a miss


@dataclass
class ClipSet:
    fnames: list[str]
    labels: list[str] | None  # None for Kaggle's 'test' (its Ignored rows carry no label)
    spec_dir: Path
    source: Path  # the CSV the clips come from, for error messages


@dataclass
class Results:
    fnames: np.ndarray
    classes: list[str]
    probs: np.ndarray
    set_name: str
    missing: np.ndarray | None = None  # bool (N,): prior-filled clips; None: none

    def __post_init__(self) -> None:
        if self.missing is None:
            self.missing = np.zeros(len(self.fnames), dtype=bool)


def check_set(set_name: str) -> None:
    if set_name not in SETS:
        raise InputError(f"unknown set {set_name!r}; choose one of {', '.join(SETS)}")


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


# --- result files ---

def save_results(path: str | Path, results: Results) -> None:
    check_results(results, str(path))
    save_npz(path, fnames=np.asarray(results.fnames, dtype=str), classes=np.asarray(results.classes, dtype=str),
             probs=np.asarray(results.probs, dtype=np.float32), set=np.asarray(results.set_name, dtype=str),
             missing=np.asarray(results.missing, dtype=bool))


def load_results(path: str | Path) -> Results:
    path = Path(path)
    if path.is_dir():
        raise InputError(f"result file {path} is a folder; give the .npz file (or a glob pattern)")
    if not path.is_file():
        raise MissingFile(f"result file {path} not found")
    redo = "write it again with eval.py --dump_results or fusion.py"
    if path.stat().st_size == 0:  # np.load's EOFError would say nothing of the file
        raise InputError(f"{path}: empty file, not a result file; {redo}")
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # ValueError: neither .npz nor .npy, or a pickle
        raise InputError(f"{path}: not a result file (not an .npz, or truncated); {redo}") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise InputError(f"{path}: a single array, not a result file (.npz)")
    with z:
        missing = [k for k in RESULT_KEYS if k not in z.files]
        if missing:
            raise InputError(f"{path}: not a result file (missing {', '.join(missing)}); {redo}")
        try:
            data = {k: z[k] for k in RESULT_KEYS}
            missing = data["missing"]
        except ValueError as e:  # object arrays would need pickle
            raise InputError(f"{path}: unreadable result file ({e}); {redo}") from None
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:  # a member cut short or overwritten
            raise InputError(f"{path}: truncated or corrupt result file ({type(e).__name__}: {e}); {redo}"
                             ) from None
    for key in ("fnames", "classes", "set"):
        if data[key].dtype.kind != "U":
            raise InputError(f"{path}: '{key}' must hold strings, got dtype {data[key].dtype}")
    if missing.dtype != bool or missing.shape != data["fnames"].shape:
        raise InputError(f"{path}: 'missing' must be one bool per clip, got {missing.dtype} {missing.shape}")
    results = Results(data["fnames"], [str(c) for c in data["classes"]], data["probs"], str(data["set"]), missing)
    check_results(results, str(path))
    return results


def check_results(results: Results, where: str) -> None:
    probs = np.asarray(results.probs)
    if probs.ndim != 2 or probs.shape != (len(results.fnames), len(results.classes)):
        raise InputError(f"{where}: probs shape {probs.shape} does not match {len(results.fnames)} clips x "
                         f"{len(results.classes)} classes")
    if len(results.fnames) == 0:
        raise InputError(f"{where}: no clips")
    if not np.isfinite(probs).all():
        raise InputError(f"{where}: probs contain NaN or infinite values")
    if len(set(np.asarray(results.fnames).tolist())) != len(results.fnames):
        raise InputError(f"{where}: duplicated fnames")
    if len(set(results.classes)) != len(results.classes):
        raise InputError(f"{where}: duplicated class names")
    check_set(results.set_name)


def fuse(results: Sequence[Results], names: Sequence[str], weights: Sequence[float] | None = None) -> Results:
    """Weighted average of aligned result files. Files must list the same clips in the same order, the
    same classes in the same order and the same set: anything else means they were not made for each
    other, and silently reordering would hide that."""
    if not results:
        raise InputError("no result files to fuse")
    weights = np.ones(len(results)) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(weights) != len(results) or (weights < 0).any() or weights.sum() <= 0:
        raise InputError(f"need {len(results)} non-negative weights with a positive sum, got {list(weights)}")
    ref, ref_name = results[0], names[0]
    for r, name in zip(results[1:], names[1:], strict=True):
        if r.set_name != ref.set_name:
            raise InputError(f"{name} holds set '{r.set_name}' but {ref_name} holds '{ref.set_name}'")
        if list(r.classes) != list(ref.classes):
            how = "in another order" if sorted(r.classes) == sorted(ref.classes) else "a different class list"
            raise InputError(f"{name} and {ref_name} differ in classes ({how}); they cannot be averaged")
        fnames, ref_fnames = np.asarray(r.fnames).tolist(), np.asarray(ref.fnames).tolist()
        if fnames != ref_fnames:
            how = ("the same clips in another order" if sorted(fnames) == sorted(ref_fnames)
                   else "different clips")
            raise InputError(f"{name} and {ref_name} hold {how}; they cannot be averaged")
    probs = weighted_average([r.probs for r in results], weights)
    # a clip any member filled with the prior is marked: its fused posterior is (partly) a guess
    missing = np.logical_or.reduce([r.missing for r in results])
    return Results(ref.fnames, list(ref.classes), probs, ref.set_name, missing)


# --- submissions ---

def submission_text(results: Results) -> str:
    """fname,label with the top 3 labels per clip, most likely first, separated by spaces."""
    if len(results.classes) < TOP_K:
        raise InputError(f"a submission lists {TOP_K} labels per clip, but the predictions have only "
                         f"{len(results.classes)} classes")
    ranked = top_k(results.probs, TOP_K)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SUBMISSION_HEADER)
    for fname, row in zip(results.fnames, ranked, strict=True):
        writer.writerow([str(fname), " ".join(results.classes[i] for i in row)])
    return buf.getvalue()


def write_submission(path: str | Path, results: Results) -> None:
    save_text(path, submission_text(results))


def read_submission(path: str | Path) -> dict[str, list[str]]:
    """fname -> its 3 labels, most likely first. Any structural fault is a DataError naming the line; a label
    that is not a class name is kept (Kaggle scored it as a miss, see unknown_labels)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: submission file not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:  # e.g. saved as Latin-1 by a spreadsheet; the codec's error names no line
        raw = e.object  # the bytes after a BOM, which e.start counts in
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x}); save the submission as "
                        "UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        rows = list(reader)
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
    if not rows or [c.strip() for c in rows[0]] != SUBMISSION_HEADER:
        got = ",".join(rows[0]) if rows else "an empty file"
        raise DataError(f"{path}:1: expected the header {','.join(SUBMISSION_HEADER)}, got {got!r}")
    sub: dict[str, list[str]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue  # a blank line (e.g. a trailing one) carries nothing
        if len(row) != 2:
            raise DataError(f"{path}:{line}: expected 2 fields (fname,label), got {len(row)}")
        fname, labels = row[0].strip(), row[1].split()
        if not fname:
            raise DataError(f"{path}:{line}: empty fname")
        if fname in sub:
            raise DataError(f"{path}:{line}: duplicated fname {fname!r}")
        if len(labels) != TOP_K:
            raise DataError(f"{path}:{line}: expected {TOP_K} space-separated labels for {fname!r}, "
                            f"got {len(labels)}")
        if len(set(labels)) != len(labels):
            raise DataError(f"{path}:{line}: a label is repeated in {' '.join(labels)!r}")
        sub[fname] = labels
    if not sub:
        raise DataError(f"{path}: no predictions after the header")
    return sub


def submission_classes(data_root: str | Path) -> list[str]:
    """The index space of a scored submission: the data set's classes, and NOT_A_CLASS last."""
    return [*sorted(set(read_train_csv(Path(data_root) / paths.TRAIN_CSV)["label"])), NOT_A_CLASS]


def unknown_labels(sub: dict[str, list[str]], classes: Sequence[str]) -> dict[str, int]:
    """Labels of a submission that are not class names (e.g. 'Hi-Hat' in Kaggle's sample), with their counts."""
    known = set(classes)
    return dict(Counter(label for labels in sub.values() for label in labels if label not in known))


def score_submission(sub: dict[str, list[str]], data_root: str | Path, set_name: str
                     ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(y_true, ranked, classes): indices into `classes` (submission_classes) for the scored clips of `set_name`;
    a label that is not a class name gets the index of NOT_A_CLASS, a miss. The submission must cover every clip
    of the set and name no clip the test CSV does not list; Ignored clips may be listed or not."""
    if set_name not in LEADERBOARD_SETS:
        raise InputError(f"a submission is scored on {', '.join(LEADERBOARD_SETS)}, not {set_name!r}")
    source = Path(data_root) / paths.KAGGLE_TEST_CSV
    if not source.is_file():
        raise DataError(f"{source}: file not found; a submission is scored on Kaggle's test split")
    classes = submission_classes(data_root)
    test = read_test_csv(source, set(classes))
    unknown = sorted(set(sub) - set(test["fname"]))
    if unknown:
        raise DataError(f"submission lists {len(unknown)} clip(s) not in {source}, e.g. {unknown[0]!r}")
    scored = test[test["usage"].isin(USAGES_OF_SET[set_name])]
    missing = [f for f in scored["fname"] if f not in sub]
    if missing:
        raise DataError(f"submission misses {len(missing)} of the {len(scored)} clips of set '{set_name}', "
                        f"e.g. {missing[0]!r}")
    if scored.empty:
        raise DataError(f"{source} has no clips in set '{set_name}'")
    index = {c: i for i, c in enumerate(classes)}
    miss = index[NOT_A_CLASS]
    y_true = np.array([index[label] for label in scored["label"]])
    ranked = np.array([[index.get(label, miss) for label in sub[f]] for f in scored["fname"]])
    return y_true, ranked, classes


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
