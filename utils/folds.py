"""Folds: a data set's own (ESC-50's 5, a CSV's fold column), or the writeup's 4-fold split: verified and
unverified clips split separately with a stratified, shuffled K-fold, so each fold's verified held-out part is a
reliable validation set and its unverified held-out part can be self-verified by a model that never trained on it.

The split is computed once from the data root's own train.csv and written to folds.csv (or brought by
import_dataset.py); every script reads that file, so a self-verified train file can never move a clip between
folds, and every consumer takes the number of folds from it."""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from utils.atomic import save_text
from utils.dataset_csv import read_train_csv
from utils.errors import DataError, InputError

DEFAULT_N_FOLDS = 4  # the writeup's split, made where a data set brings no folds of its own
FOLDS_SEED = 4711
FOLDS_COLUMNS = ["fname", "label", "fold", "verified"]


def make_folds(train: pd.DataFrame, n_folds: int = DEFAULT_N_FOLDS, seed: int = FOLDS_SEED,
               source: str | Path = "train.csv") -> pd.DataFrame:
    """fname, label, fold (1..n_folds), verified (the original flag): one row per training clip. `source` names
    the file `train` was read from, for error messages. A data set without unverified clips is split on its
    verified clips alone."""
    verified_flags = train["manually_verified"].to_numpy()
    labels = train["label"].to_numpy()
    # every fold validates every class: each needs a verified clip per fold
    counts = pd.Series(labels[verified_flags == 1]).value_counts().reindex(sorted(set(labels)), fill_value=0)
    small = counts[counts < n_folds]
    if len(small):
        shown = ", ".join(f"{label}: {n}" for label, n in small.head(8).items())
        more = f" and {len(small) - 8} more" if len(small) > 8 else ""
        raise DataError(f"{source}: {len(small)} class(es) with fewer than {n_folds} clips with manually_verified=1 "
                        f"({shown}{more}); a stratified {n_folds}-fold split needs {n_folds} verified clips per "
                        "class, one to validate in each fold")
    # imported here: the split is made once per data root, and sklearn's import (~2 s) would otherwise
    # delay every training, verification and evaluation process, which only read folds.csv
    from sklearn.model_selection import KFold, StratifiedKFold

    fold = np.zeros(len(train), dtype=int)
    for verified in (1, 0):
        idx = np.flatnonzero(verified_flags == verified)
        if len(idx) == 0:
            continue  # no unverified clips: nothing to self-verify, and nothing to split
        if len(idx) < n_folds:  # a few unverified clips: one per fold, in shuffled order
            fold[idx] = np.random.default_rng(seed).permutation(len(idx)) + 1
            continue
        part_labels = labels[idx]
        stratify = pd.Series(part_labels).value_counts().max() >= n_folds
        splitter = (StratifiedKFold if stratify else KFold)(n_splits=n_folds, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            # unverified classes with fewer clips than folds are expected; they still get split
            warnings.simplefilter("ignore", UserWarning)
            for k, (_, held_out) in enumerate(splitter.split(idx, part_labels)):
                fold[idx[held_out]] = k + 1
    return pd.DataFrame({"fname": train["fname"], "label": train["label"], "fold": fold,
                         "verified": train["manually_verified"].astype(int)})


def load_folds(data_root: str | Path) -> pd.DataFrame:
    """Read <data_root>/folds.csv (a data set's own folds, written by import_dataset.py), creating it from
    <data_root>/train.csv with the writeup's stratified split the first time."""
    data_root = Path(data_root)
    path, train_path = data_root / "folds.csv", data_root / "train.csv"
    train = read_train_csv(train_path)
    if not path.is_file():
        save_text(path, make_folds(train, source=train_path).to_csv(index=False))
    recompute = f"delete it to recompute the folds from {train_path}"
    try:
        folds = pd.read_csv(path, dtype={"fname": str, "label": str}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: corrupt folds file ({str(e).splitlines()[0]}); {recompute}") from None
    if list(folds.columns) == FOLDS_COLUMNS:
        numbers = pd.to_numeric(folds["fold"], errors="coerce")
        k = numbers.max()
        if numbers.isna().any() or (numbers != numbers.round()).any() or not k >= 2 \
                or set(numbers.astype(int)) != set(range(1, int(k) + 1)):
            raise DataError(f"{path}: corrupt folds file (folds must be the numbers 1..K, each used, K >= 2); "
                            f"{recompute}")
        folds["fold"] = numbers.astype(int)
    # same clips, labels and verified flags: a rebuilt or edited train.csv must not inherit stale folds
    expected = train.set_index("fname")[["label", "manually_verified"]]
    if (list(folds.columns) != FOLDS_COLUMNS or len(folds) != len(train)
            or set(folds["fname"]) != set(train["fname"])
            or not (folds.set_index("fname")["label"].reindex(expected.index) == expected["label"]).all()
            or not (folds.set_index("fname")["verified"].reindex(expected.index)
                    == expected["manually_verified"]).all()):
        raise DataError(f"{path} does not match {train_path}; {recompute}")
    without = [k for k in fold_numbers(folds) if not ((folds["fold"] == k) & (folds["verified"] == 1)).any()]
    if without:
        raise DataError(f"{path}: fold {without[0]} holds no verified clip to validate on")
    return folds


def fold_numbers(folds: pd.DataFrame) -> list[int]:
    """The folds of a data root: 1..K, K from its folds.csv (4 made here, or the data set's own)."""
    return list(range(1, int(folds["fold"].max()) + 1))


def has_unverified(folds: pd.DataFrame) -> bool:
    """Whether there is anything to self-verify."""
    return bool((folds["verified"] == 0).any())


def check_fold(fold: int, folds: pd.DataFrame) -> None:
    k = int(folds["fold"].max())
    if not 1 <= fold <= k:
        raise InputError(f"--fold must be in 1..{k} (the data root's folds.csv has {k} folds), got {fold}")


def split_fold(train: pd.DataFrame, folds: pd.DataFrame, fold: int, verified_only: bool = False
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(training part, verified validation part, unverified held-out part) of fold `fold`.

    `train` may be a self-verified train file: it decides which training clips count as verified
    (`verified_only` keeps just those), but validation is always the fold's originally verified clips."""
    check_fold(fold, folds)
    info = folds.set_index("fname").reindex(train["fname"])
    if info["fold"].isna().any():
        missing = train["fname"][info["fold"].isna().to_numpy()].iloc[0]
        raise DataError(f"clip {missing!r} is not in the folds file; the train file must list the data root's clips")
    held_out = info["fold"].to_numpy() == fold
    originally_verified = info["verified"].to_numpy() == 1
    train_part = train[~held_out]
    if verified_only:
        train_part = train_part[train_part["manually_verified"] == 1]
    valid = train[held_out & originally_verified]
    unverified = train[held_out & ~originally_verified]
    return train_part.reset_index(drop=True), valid.reset_index(drop=True), unverified.reset_index(drop=True)
