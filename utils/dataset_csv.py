"""Reading and validating a data root's CSVs: train.csv (fname,label,manually_verified), and its test split:
Kaggle's test_post_competition.csv (scored by usage) or a plain test.csv (fname,label; scored whole).

Class names are whatever the data set uses; every problem is reported as a DataError naming the file and, where
there is one, the line."""

from pathlib import Path

import pandas as pd

from utils.errors import DataError
from utils.paths import KAGGLE_TEST_CSV

TRAIN_COLUMNS = ("fname", "label", "manually_verified")
KAGGLE_TEST_COLUMNS = ("fname", "label", "usage", "freesound_id", "license")
TEST_COLUMNS = ("fname", "label")
USAGES = ("Public", "Private", "Ignored")
TEST_USAGE = "Test"  # what every row of a plain test.csv counts as: scored, on no leaderboard


def _read(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    df = _load(path)
    _require(path, df, columns)
    return df


def _load(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise DataError(f"{path}: malformed CSV ({str(e).splitlines()[0]})") from None


def _require(path: Path, df: pd.DataFrame, columns: tuple[str, ...]) -> None:
    """The columns, at least one clip, and bare, unique file names."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected header {','.join(columns)}")
    if df.empty:  # caught here, a header-only file is not mistaken later for a dataset too small to split
        raise DataError(f"{path}: no clips, only the header; it needs one row per clip "
                        f"({','.join(columns)})")
    _check_fnames(path, df)


def _line(row: int) -> int:
    return row + 2  # header is line 1


def _check_fnames(path: Path, df: pd.DataFrame) -> None:
    for row, fname in enumerate(df["fname"]):
        # an fname is joined onto an audio folder: a separator or '..' would escape it
        if not fname or "/" in fname or "\\" in fname or fname in (".", "..") or ".." in Path(fname).parts:
            raise DataError(f"{path}:{_line(row)}: invalid fname {fname!r} (a bare file name is required)")
    dup = df["fname"][df["fname"].duplicated()]
    if len(dup):
        raise DataError(f"{path}:{_line(int(dup.index[0]))}: duplicated fname {dup.iloc[0]!r}")


def _check_labels(path: Path, df: pd.DataFrame, allowed: set[str] | None = None) -> None:
    """Every label a non-empty class name, and one of `allowed` where the classes are known."""
    empty = df["label"].str.strip() == ""
    if empty.any():
        raise DataError(f"{path}:{_line(int(empty.idxmax()))}: empty label")
    if allowed is not None:
        bad = ~df["label"].isin(allowed)
        if bad.any():
            row = int(bad.idxmax())
            raise DataError(f"{path}:{_line(row)}: unknown label {df['label'][row]!r} (not one of the "
                            f"{len(allowed)} classes of train.csv)")


def read_train_csv(path: str | Path) -> pd.DataFrame:
    """fname, label, manually_verified (as int 0/1), plus any extra columns (e.g. true_label)."""
    path = Path(path)
    df = _read(path, TRAIN_COLUMNS)
    _check_labels(path, df)
    bad = ~df["manually_verified"].isin(["0", "1"])
    if bad.any():
        row = int(bad.idxmax())
        raise DataError(f"{path}:{_line(row)}: manually_verified must be 0 or 1, "
                        f"got {df['manually_verified'][row]!r}")
    df["manually_verified"] = df["manually_verified"].astype(int)
    return df


def read_test_csv(path: str | Path, classes: set[str] | None = None) -> pd.DataFrame:
    """A test split. Kaggle's test_post_competition.csv ('Ignored' rows, never scored, may carry the label 'None')
    or a plain fname,label CSV, which reads as if every row were scored ('usage' Test). `classes`, where given,
    are the training classes every scored label must be one of."""
    path = Path(path)
    df = _load(path)  # read once: its name or a usage column says which kind it is
    kaggle = path.name == KAGGLE_TEST_CSV or "usage" in df.columns
    _require(path, df, KAGGLE_TEST_COLUMNS if kaggle else TEST_COLUMNS)
    if kaggle:
        bad = ~df["usage"].isin(USAGES)
        if bad.any():
            row = int(bad.idxmax())
            raise DataError(f"{path}:{_line(row)}: usage must be one of {', '.join(USAGES)}, "
                            f"got {df['usage'][row]!r}")
    else:
        df["usage"] = TEST_USAGE
    _check_labels(path, df[df["usage"] != "Ignored"], classes)
    return df


def is_kaggle(test: pd.DataFrame) -> bool:
    """A test split read by read_test_csv is Kaggle's (scored by leaderboard part) or plain (scored whole)."""
    return bool((test["usage"] != TEST_USAGE).any())
