"""Kaggle's submission: writing the CSV of a fused result (top 3 labels per clip), reading one back, and scoring it on
the leaderboard parts of test_post_competition.csv as Kaggle did."""

import csv
import io
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from utils import paths
from utils.atomic import save_text
from utils.dataset_csv import read_test_csv, read_train_csv
from utils.errors import DataError, InputError
from utils.metrics import top_k
from utils.results import Results

LEADERBOARD_SETS = ("public", "private", "private_public")
# Kaggle scored Public and Private rows; 'Ignored' rows were padding and are never scored.
USAGES_OF_SET = {"public": ("Public",), "private": ("Private",), "private_public": ("Public", "Private")}
SUBMISSION_HEADER = ["fname", "label"]
TOP_K = 3
NOT_A_CLASS = "(not a class name)"  # what a submission's unknown label is scored as: always a miss


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
