"""The 4-fold split of the writeup: verified and unverified clips are split separately with a
stratified, shuffled K-fold, so each fold's verified held-out part is a reliable validation set and its
unverified held-out part can be self-verified by a model that never trained on it.

The split is computed once from the data root's own train.csv and written to folds.csv; every script
reads that file, so a self-verified train file can never move a clip between folds."""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from utils.atomic import save_text
from utils.dataset_csv import DataError, read_train_csv

N_FOLDS = 4
FOLDS_SEED = 4711


def make_folds(train: pd.DataFrame, n_folds: int = N_FOLDS, seed: int = FOLDS_SEED,
               source: str | Path = "train.csv") -> pd.DataFrame:
    """fname, fold (1..n_folds), verified (the original flag): one row per training clip. `source` names the
    file `train` was read from, for error messages."""
    fold = np.zeros(len(train), dtype=int)
    for verified in (1, 0):
        idx = np.flatnonzero(train["manually_verified"].to_numpy() == verified)
        if len(idx) < n_folds:
            raise DataError(f"{source}: need at least {n_folds} clips with manually_verified={verified}, "
                            f"got {len(idx)}")
        counts = pd.Series(train["label"].to_numpy()[idx]).value_counts()
        if counts.max() < n_folds:
            # sklearn's own error ("n_splits=4 cannot be greater than the number of members in each class")
            # names neither the file nor the classes
            shown = ", ".join(f"{label}: {n}" for label, n in counts.head(8).items())
            more = f" and {len(counts) - 8} more" if len(counts) > 8 else ""
            raise DataError(f"{source}: every class has fewer than {n_folds} clips with manually_verified="
                            f"{verified} ({shown}{more}), too few for a stratified {n_folds}-fold split; give at "
                            f"least one class {n_folds} such clips")
        # imported here: the split is made once per data root, and sklearn's import (~2 s) would otherwise
        # delay every training, verification and evaluation process, which only read folds.csv
        from sklearn.model_selection import StratifiedKFold

        skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            # small classes (fewer clips than folds) are expected in small datasets; they still get split
            warnings.simplefilter("ignore", UserWarning)
            for k, (_, held_out) in enumerate(skf.split(idx, train["label"].to_numpy()[idx])):
                fold[idx[held_out]] = k + 1
    return pd.DataFrame({"fname": train["fname"], "label": train["label"], "fold": fold,
                         "verified": train["manually_verified"].astype(int)})


def load_folds(data_root: str | Path) -> pd.DataFrame:
    """Read <data_root>/folds.csv, creating it from <data_root>/train.csv the first time."""
    data_root = Path(data_root)
    path, train_path = data_root / "folds.csv", data_root / "train.csv"
    train = read_train_csv(train_path)
    if not path.is_file():
        save_text(path, make_folds(train, source=train_path).to_csv(index=False))
    recompute = f"delete it to recompute the folds from {train_path}"
    try:
        folds = pd.read_csv(path, dtype={"fname": str, "label": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: corrupt folds file ({str(e).splitlines()[0]}); {recompute}") from None
    if "fold" in folds.columns and not folds["fold"].isin(range(1, N_FOLDS + 1)).all():
        raise DataError(f"{path}: corrupt folds file (a fold is not a number in 1..{N_FOLDS}); {recompute}")
    # same clips, labels and verified flags: a rebuilt or edited train.csv must not inherit stale folds
    expected = train.set_index("fname")[["label", "manually_verified"]]
    if (list(folds.columns) != ["fname", "label", "fold", "verified"] or len(folds) != len(train)
            or set(folds["fname"]) != set(train["fname"])
            or not (folds.set_index("fname")["label"].reindex(expected.index) == expected["label"]).all()
            or not (folds.set_index("fname")["verified"].reindex(expected.index)
                    == expected["manually_verified"]).all()):
        raise DataError(f"{path} does not match {train_path}; {recompute}")
    return folds


def check_fold(fold: int) -> None:
    if not 1 <= fold <= N_FOLDS:
        raise ValueError(f"--fold must be in 1..{N_FOLDS}, got {fold}")


def split_fold(train: pd.DataFrame, folds: pd.DataFrame, fold: int, verified_only: bool = False
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(training part, verified validation part, unverified held-out part) of fold `fold`.

    `train` may be a self-verified train file: it decides which training clips count as verified
    (`verified_only` keeps just those), but validation is always the fold's originally verified clips."""
    check_fold(fold)
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
