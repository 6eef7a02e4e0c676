"""Importing a data set, as it is distributed, into a data root in the project's layout (import_dataset.py).

A layout's reader turns its source into Clips (audio file, label, verified flag, the source's own fold); one set
of checks then decides the fnames and the folds, and one writer links the audio into a new data root:
audio_train/ (audio_test/), train.csv, folds.csv where the source brings folds, test.csv (or Kaggle's
test_post_competition.csv). Every problem is a DataError naming the file and line (header: line 1)."""

import csv
import os
import re
import secrets
import shutil
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from utils import paths
from utils.atomic import WriteError, save_text
from utils.audio import AUDIO_EXTENSIONS
from utils.dataset_csv import read_test_csv, read_train_csv
from utils.errors import DataError
from utils.folds import DEFAULT_N_FOLDS, make_folds
from utils.labels import FSDKAGGLE2018_CLASSES
from utils.paths import KAGGLE_TEST_CSV

LAYOUTS = ("fsdkaggle2018", "fsdnoisy18k", "esc50", "folders", "csv", "names")
WALKED_LAYOUTS = ("folders", "names")  # every audio file below SOURCE is data: a data root there would be, too
NAME_JOIN = "__"  # joins the folders of a relative path into one fname where file names repeat
VERIFIED_VALUES = {"1": 1, "0": 0, "true": 1, "false": 0, "yes": 1, "no": 0}
SPLITS = ("train", "test")
SHOWN = 5  # missing files listed in a message


@dataclass
class Clip:
    path: str               # the audio file in the source (a str: 20,000 Path objects cost a second)
    parts: tuple[str, ...]  # its path below the layout's audio folder: decides the fname
    label: str
    where: str              # "file:line" (or the file itself) for messages
    verified: int = 1
    fold: str = ""          # the source's own fold value; "" where it has none
    fname: str = ""         # set by plan_import


@dataclass
class Source:
    train: list[Clip]
    test: list[Clip]
    origin: Path             # the file (or folder) the training labels come from, for make_folds' messages
    has_folds: bool = False
    kaggle_test: pd.DataFrame | None = None  # fsdkaggle2018: test_post_competition.csv, one row per test Clip
    kaggle_test_path: Path | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """What gets written: every check passed, fnames and folds decided."""
    train: list[Clip]
    test: list[Clip]
    folds: pd.DataFrame | None     # only where the source brings folds; otherwise made on first use
    n_folds: int | None
    kaggle_copy: Path | None          # fsdkaggle2018: test_post_competition.csv, copied as it is
    kaggle_test: pd.DataFrame | None  # ... or its rows that kept their audio (--skip_missing)
    notes: list[str]


# ---- reading ----------------------------------------------------------------------------------------------

@dataclass
class Table:
    path: Path
    df: pd.DataFrame  # every value a string
    lines: list[int]  # the line each row starts on

    def where(self, row: int) -> str:
        return f"{self.path}:{self.lines[row]}"

    def require(self, *columns: str, flag: str = "") -> None:
        missing = [c for c in columns if c not in self.df.columns]
        if missing:
            given = f" (given by {flag})" if flag else ""
            raise DataError(f"{self.path}:1: no column {missing[0]!r}{given}; the columns are "
                            f"{', '.join(self.df.columns)}")


def read_table(path: Path) -> Table:
    """A CSV (a .tsv: tab-separated) as strings, with the line each row starts on. Read with the csv module, not
    pandas, so that line numbers stay those of the file where it has blank lines or quoted line breaks."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    rows, lines = [], []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's byte order mark
            reader = csv.reader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            header = [h.strip() for h in next(reader, [])]
            start = reader.line_num + 1
            for record in reader:
                if any(value.strip() for value in record):
                    if len(record) != len(header):
                        raise DataError(f"{path}:{start}: {len(record)} fields where the header has {len(header)}"
                                        " (a comma inside a value needs quotes)")
                    rows.append(record)
                    lines.append(start)
                start = reader.line_num + 1
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.object[e.start]:#x})") from None
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
    if not header:
        raise DataError(f"{path}: empty file, no header")
    if len(set(header)) != len(header):
        twice = next(h for h in header if header.count(h) > 1)
        raise DataError(f"{path}:1: column {twice!r} appears twice in the header")
    if not rows:
        raise DataError(f"{path}: no rows, only the header")
    return Table(path, pd.DataFrame(rows, columns=header, dtype=str), lines)


def _parts(relative: str) -> tuple[str, ...]:
    """A path's parts below its audio folder (an absolute path: below the root)."""
    return tuple(part for part in os.path.normpath(relative).split(os.sep) if part)


def _suffix(name: str) -> str:
    return os.path.splitext(name)[1].lower()


def _stem(name: str) -> str:
    return os.path.splitext(name)[0]


def _verified(table: Table, row: int, value: str) -> int:
    try:
        return VERIFIED_VALUES[value.strip().lower()]
    except KeyError:
        raise DataError(f"{table.where(row)}: verified value {value!r} is not one of 0/1, true/false, yes/no"
                        ) from None


def table_clips(table: Table, audio_root: Path, relative: Sequence[str], label_column: str,
                verified_column: str | None = None, fold_column: str | None = None,
                rows: Sequence[int] | None = None) -> list[Clip]:
    """A Clip per row (or per one of `rows`), its audio at audio_root / relative[row]."""
    df = table.df
    clips = []
    for row in range(len(df)) if rows is None else rows:
        verified = 1 if verified_column is None else _verified(table, row, df[verified_column].iat[row])
        fold = "" if fold_column is None else df[fold_column].iat[row].strip()
        if fold_column is not None and not fold:
            raise DataError(f"{table.where(row)}: empty fold (column {fold_column!r})")
        clips.append(Clip(os.path.join(audio_root, relative[row]), _parts(relative[row]),
                          df[label_column].iat[row].strip(), table.where(row), verified, fold))
    return clips


def read_fsdkaggle2018(root: Path) -> Source:
    """audio_train/, audio_test/, train.csv, test_post_competition.csv: Kaggle's DCASE 2018 task 2 download."""
    train_csv, test_csv = root / paths.TRAIN_CSV, root / KAGGLE_TEST_CSV
    train = read_train_csv(train_csv)
    classes = set(FSDKAGGLE2018_CLASSES)
    unknown = ~train["label"].isin(classes)
    if unknown.any():  # the one place FSDKaggle2018's list is still checked: its own files
        row = int(unknown.idxmax())
        raise DataError(f"{train_csv}:{row + 2}: {train['label'][row]!r} is not one of FSDKaggle2018's 41 classes")
    test = read_test_csv(test_csv, classes=classes)
    return Source(
        train=[Clip(os.path.join(root, "audio_train", f), (f,), label, f"{train_csv}:{row + 2}", int(v))
               for row, (f, label, v) in enumerate(zip(train["fname"], train["label"], train["manually_verified"],
                                                       strict=True))],
        test=[Clip(os.path.join(root, "audio_test", f), (f,), label, f"{test_csv}:{row + 2}")
              for row, (f, label) in enumerate(zip(test["fname"], test["label"], strict=True))],
        origin=train_csv, kaggle_test=test, kaggle_test_path=test_csv)


def read_fsdnoisy18k(root: Path) -> Source:
    """FSDnoisy18k.meta/{train,test}.csv, FSDnoisy18k.audio_{train,test}/: noisy labels with a verified part."""
    train = read_table(root / "FSDnoisy18k.meta" / "train.csv")
    train.require("fname", "label", "manually_verified")
    test = read_table(root / "FSDnoisy18k.meta" / "test.csv")
    test.require("fname", "label")
    return Source(train=table_clips(train, root / "FSDnoisy18k.audio_train", train.df["fname"].tolist(), "label",
                                    verified_column="manually_verified"),
                  test=table_clips(test, root / "FSDnoisy18k.audio_test", test.df["fname"].tolist(), "label"),
                  origin=train.path)


def read_esc50(root: Path) -> Source:
    """meta/esc50.csv, audio/: 2000 verified clips of 50 classes, in 5 predefined folds."""
    meta = read_table(root / "meta" / "esc50.csv")
    meta.require("filename", "fold", "category")
    return Source(train=table_clips(meta, root / "audio", meta.df["filename"].tolist(), "category",
                                    fold_column="fold"),
                  test=[], origin=meta.path, has_folds=True)


def _folder_clips(root: Path, exclude: Sequence[str], notes: list[str]) -> list[Clip]:
    """Every audio file below each class folder of root; hidden files and folders are left out."""
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    clips, empty = [], []
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and d.name not in exclude)
    for folder in folders:
        found = len(clips)
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            parts = _parts(os.path.relpath(dirpath, root))
            for f in sorted(filenames):
                if not f.startswith(".") and _suffix(f) in AUDIO_EXTENSIONS:
                    path = os.path.join(dirpath, f)
                    clips.append(Clip(path, (*parts, f), folder.name.strip(), path))
        if len(clips) == found:
            empty.append(folder.name)
    loose = [p for p in root.iterdir() if p.is_file() and _suffix(p.name) in AUDIO_EXTENSIONS]
    if empty:
        notes.append(f"{root}: left out {len(empty)} folder(s) without audio: {', '.join(empty[:SHOWN])}")
    if loose:
        notes.append(f"{root}: left out {len(loose)} audio file(s) outside the class folders")
    if not clips:
        raise DataError(f"{root}: no audio ({', '.join(sorted(AUDIO_EXTENSIONS))}) in class folders; the folders "
                        "layout wants one folder per class, named as the class")
    return clips


def read_folders(root: Path, test: Path | None = None, exclude: Sequence[str] = ()) -> Source:
    """One folder per class (its name is the label), searched recursively; all verified, no folds."""
    notes: list[str] = []
    train = _folder_clips(root, exclude, notes)
    return Source(train=train, test=_folder_clips(test, exclude, notes) if test else [], origin=root, notes=notes)


def _template_fields(table: Table, template: str) -> list[tuple[str, str | None, str]]:
    """(literal, column, format spec) pieces of an --audio_path template, every column one of the table's."""
    try:
        pieces = [(literal, name, spec or "") for literal, name, spec, _ in string.Formatter().parse(template)]
    except ValueError as e:
        raise DataError(f"--audio_path {template!r}: {e} (literal braces are written {{{{ and }}}})") from None
    for _, name, _ in pieces:
        if name == "":
            raise DataError(f"--audio_path {template!r}: an empty {{}}; name a column of {table.path}")
        if name is not None and name not in table.df.columns:
            raise DataError(f"{table.path}:1: --audio_path {template!r} names the column {{{name}}}, which is not "
                            f"there; the columns are {', '.join(table.df.columns)}")
    return pieces


def read_csv_layout(root: Path, csv_file: str, template: str, label_column: str, fold_column: str | None = None,
                    verified_column: str | None = None, split_column: str | None = None) -> Source:
    """Any CSV: one row per clip, its audio at root / the template formatted from the row."""
    table = read_table(root / csv_file)
    for column, flag in ((label_column, "--label_column"), (fold_column, "--fold_column"),
                         (verified_column, "--verified_column"), (split_column, "--split_column")):
        if column is not None:
            table.require(column, flag=flag)
    pieces = _template_fields(table, template)
    columns = {name: table.df[name].tolist() for _, name, _ in pieces if name is not None}
    relative = []
    for row in range(len(table.df)):
        try:
            relative.append("".join(literal + ("" if name is None else format(columns[name][row], spec))
                                    for literal, name, spec in pieces))
        except ValueError as e:
            raise DataError(f"{table.where(row)}: --audio_path {template!r}: {e}") from None
    split = ["train"] * len(table.df)
    if split_column is not None:
        split = [value.strip().lower() for value in table.df[split_column]]
        bad = next((row for row, value in enumerate(split) if value not in SPLITS), None)
        if bad is not None:
            raise DataError(f"{table.where(bad)}: split {table.df[split_column].iat[bad]!r} is not one of "
                            f"{', '.join(SPLITS)} (column {split_column!r})")
    train_rows = [row for row, s in enumerate(split) if s == "train"]
    test_rows = [row for row, s in enumerate(split) if s == "test"]
    return Source(train=table_clips(table, root, relative, label_column, verified_column, fold_column, train_rows),
                  test=table_clips(table, root, relative, label_column, rows=test_rows),
                  origin=table.path, has_folds=fold_column is not None)


def compile_pattern(pattern: str) -> tuple[re.Pattern, list[str]]:
    """A names --pattern as a regex and its field names: each {field} one group matching within one path component,
    the shortest that lets the whole pattern match (so separators decide where a label holding '_' or spaces ends);
    the text between fields literal ({{ and }}: literal braces)."""
    try:
        pieces = list(string.Formatter().parse(pattern))
    except ValueError as e:
        raise DataError(f"--pattern {pattern!r}: {e} (literal braces are written {{{{ and }}}})") from None
    regex, names = [], []
    for literal, name, spec, conversion in pieces:
        regex.append(re.escape(literal))
        if name is None:
            continue
        if not name:
            raise DataError(f"--pattern {pattern!r}: an empty {{}}; name each field: {{label}}, {{fold}}, {{split}} "
                            "or any other name (matched and ignored)")
        if not name.isidentifier() or spec or conversion:
            written = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise DataError(f"--pattern {pattern!r}: {{{written}}} is not a field; a field is a plain {{name}} "
                            "(letters, digits, _)")
        if name in names:
            raise DataError(f"--pattern {pattern!r} names {{{name}}} twice; each field is read once (give the "
                            "other part another name to match and ignore it)")
        names.append(name)
        regex.append("([^/]+?)")
    if "label" not in names:
        raise DataError(f"--pattern {pattern!r} has no {{label}}; the names layout reads each clip's class from "
                        "its path, e.g. 'recordings/{label}_{fold}_{index}.wav'")
    if pattern.startswith("/"):
        raise DataError(f"--pattern {pattern!r} starts with '/'; it is matched against each file's path relative "
                        "to SOURCE")
    return re.compile("".join(regex)), names


def read_names(root: Path, pattern: str, skip_unmatched: bool = False) -> Source:
    """Every audio file below root (hidden files and folders left out), its label, and where the pattern has them
    its fold and split, read from its path relative to root by --pattern; all verified."""
    regex, names = compile_pattern(pattern)
    field_of = {name: k + 1 for k, name in enumerate(names)}  # group numbers
    train, test, unmatched, notes = [], [], [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        parts = _parts(os.path.relpath(dirpath, root))
        for f in sorted(filenames):
            if f.startswith(".") or _suffix(f) not in AUDIO_EXTENSIONS:
                continue
            path, relative = os.path.join(dirpath, f), (*parts, f)
            match = regex.fullmatch("/".join(relative))
            if match is None:
                unmatched.append("/".join(relative))
                continue
            split = match[field_of["split"]].strip().lower() if "split" in field_of else "train"
            if split not in SPLITS:
                raise DataError(f"{path}: split {match[field_of['split']]!r} is not one of {', '.join(SPLITS)} "
                                f"({{split}} of --pattern {pattern!r})")
            fold = match[field_of["fold"]].strip() if "fold" in field_of else ""
            clip = Clip(path, relative, match[field_of["label"]].strip(), path, fold=fold)
            (train if split == "train" else test).append(clip)
    found = len(train) + len(test) + len(unmatched)
    if not found:
        raise DataError(f"{root}: no audio ({', '.join(sorted(AUDIO_EXTENSIONS))}) below it")
    if unmatched and (not skip_unmatched or len(unmatched) == found):
        rest = " (--skip_unmatched imports the rest)" if len(unmatched) < found else ""
        raise DataError(f"{len(unmatched)} of {found} audio file(s) below {root} do not match --pattern {pattern!r}, "
                        f"the first: {unmatched[0]}{rest}")
    if unmatched:
        notes.append(f"left out {len(unmatched)} of {found} audio file(s) that do not match --pattern "
                     f"(--skip_unmatched), the first: {unmatched[0]}")
    return Source(train=train, test=test, origin=root, has_folds="fold" in field_of, notes=notes)


def check_outside(out: Path, walked: dict[str, Path | None]) -> None:
    """A data root inside a folder a layout walks (SOURCE, --test) would be walked as data by the next import."""
    for flag, folder in walked.items():
        if folder is not None and out.resolve().is_relative_to(folder.resolve()):
            raise DataError(f"--data_root {out} is inside {flag} {folder}; its audio would be read as data by the "
                            "next import: put the data root elsewhere")


# ---- checking: what gets written --------------------------------------------------------------------------

def _check_labels(clips: list[Clip]) -> None:
    for clip in clips:
        if not clip.label:
            raise DataError(f"{clip.where}: empty label")
        # 'Bark,Dog' lists two classes; AudioSet-style names ('Vehicle horn, car horn, honking') are one
        if re.search(r",(?! )", clip.label):
            raise DataError(f"{clip.where}: label {clip.label!r} lists several classes; this is a single-label "
                            "system: give each clip one label")


def _drop_missing(clips: list[Clip], skip_missing: bool, notes: list[str]) -> list[Clip]:
    missing = [clip for clip in clips if not os.path.isfile(clip.path)]
    if not missing:
        return clips
    shown = "; ".join(f"{clip.where}: {clip.path}" for clip in missing[:SHOWN])
    more = f"; and {len(missing) - SHOWN} more" if len(missing) > SHOWN else ""
    if not skip_missing:
        raise DataError(f"{len(missing)} audio path(s) name no file: {shown}{more} (--skip_missing imports the rest)")
    notes.append(f"left out {len(missing)} clip(s) whose audio is missing (--skip_missing): {shown}{more}")
    gone = {id(clip) for clip in missing}
    return [clip for clip in clips if id(clip) not in gone]


def _check_files(clips: list[Clip]) -> None:
    """Each clip its own file, in a format the spectrogram step reads."""
    seen: dict[str, Clip] = {}
    for clip in clips:
        if _suffix(clip.path) not in AUDIO_EXTENSIONS or os.path.basename(clip.path).startswith("."):
            raise DataError(f"{clip.where}: {clip.path} is not an audio file prepare_spectrograms.py reads "
                            f"(not hidden, ending in {', '.join(sorted(AUDIO_EXTENSIONS))})")
        key = os.path.abspath(clip.path)
        if key in seen:
            raise DataError(f"{clip.where}: duplicated file {clip.path}, also named at {seen[key].where}")
        seen[key] = clip


def _named(clip: Clip) -> str:
    return clip.where if clip.where == clip.path else f"{clip.path} ({clip.where})"


def _set_fnames(clips: list[Clip], split: str, notes: list[str]) -> None:
    """fname = the file name; where file names (their stems, which key the spectrograms) repeat, every fname of
    the split is its relative path instead, folders joined with '__' (leading folders all share left out)."""
    names = [clip.parts[-1] for clip in clips]
    if len({_stem(n) for n in names}) < len(names):
        first: dict[str, Clip] = {}
        for clip in clips:  # the first two that share a stem, to show in the note
            other = first.setdefault(_stem(clip.parts[-1]), clip)
            if other is not clip:
                break
        shared = 0
        while all(len(c.parts) > shared + 1 and c.parts[shared] == clips[0].parts[shared] for c in clips):
            shared += 1
        names = [NAME_JOIN.join(clip.parts[shared:]) for clip in clips]
        notes.append(f"{split} fnames: relative paths, folders joined with '{NAME_JOIN}' (file names repeat, e.g. "
                     f"{'/'.join(other.parts)} and {'/'.join(clip.parts)})")
    seen: dict[str, Clip] = {}
    for clip, name in zip(clips, names, strict=True):
        if "\\" in name or name.startswith("."):
            raise DataError(f"{clip.where}: file name {name!r} cannot be an fname (a backslash, or hidden)")
        stem = _stem(name)
        if stem in seen:
            raise DataError(f"{_named(seen[stem])} and {_named(clip)} differ only in their extension; the "
                            "spectrograms are named by the file name without it: keep one")
        seen[stem] = clip
        clip.fname = name


def _in_order(values: set[str]) -> list[str]:
    try:
        return sorted(values, key=float)  # numbers in numeric order: 2 before 10
    except ValueError:
        return sorted(values)


def _predefined_folds(train: list[Clip], origin: Path, notes: list[str]) -> pd.DataFrame:
    """folds.csv from the source's own folds, numbered 1..K in the order of their values."""
    values = _in_order({clip.fold for clip in train})
    number = {value: k + 1 for k, value in enumerate(values)}
    if len(values) < 2:
        raise DataError(f"{origin}: only one fold ({values[0]!r}); predefined folds need at least 2")
    if any(value != str(k) for value, k in number.items()):
        shown = ", ".join(f"{value} -> {k}" for value, k in list(number.items())[:12])
        notes.append(f"folds: the source's values numbered 1..{len(values)}: {shown}"
                     + (", ..." if len(values) > 12 else ""))
    folds = pd.DataFrame({"fname": [c.fname for c in train], "label": [c.label for c in train],
                          "fold": [number[c.fold] for c in train], "verified": [c.verified for c in train]})
    for value, k in number.items():
        if not ((folds["fold"] == k) & (folds["verified"] == 1)).any():
            raise DataError(f"{origin}: fold {value!r} has no verified clip; each fold's verified clips are its "
                            "validation set")
    per_class = folds.groupby("label", sort=False)["fold"].nunique()
    if (per_class < 2).any():
        label = per_class.index[int((per_class < 2).to_numpy().argmax())]
        clip = next(c for c in train if c.label == label)
        raise DataError(f"{clip.where}: class {label!r} is only in fold {clip.fold!r}; a class needs clips in at "
                        "least 2 folds, or no model trains on it while that fold is validated")
    return folds


def plan_import(source: Source, skip_missing: bool = False) -> Plan:
    """Every check on the source, then its fnames and folds. Nothing is written."""
    notes = list(source.notes)
    scored_test = source.kaggle_test is None  # Kaggle's own test CSV was read by read_test_csv
    _check_labels(source.train + (source.test if scored_test else []))
    train = _drop_missing(source.train, skip_missing, notes)
    test = _drop_missing(source.test, skip_missing, notes)
    _check_files(train + test)
    if not train:
        raise DataError(f"{source.origin}: no training clip left")
    classes = sorted({clip.label for clip in train})
    if len(classes) < 2:
        raise DataError(f"{source.origin}: {len(classes)} class ({', '.join(classes)}); a tagger needs at least 2")
    if scored_test:
        unknown = next((clip for clip in test if clip.label not in classes), None)
        if unknown is not None:
            raise DataError(f"{unknown.where}: test label {unknown.label!r} is not a class of the training clips")
    _set_fnames(train, "train", notes)
    _set_fnames(test, "test", notes)
    kaggle_copy, kaggle_test = source.kaggle_test_path, None
    if source.kaggle_test is not None and len(test) < len(source.kaggle_test):
        kaggle_copy, kaggle_test = None, source.kaggle_test[source.kaggle_test["fname"].isin({c.fname for c in test})]
    folds = None
    if source.has_folds:
        folds = _predefined_folds(train, source.origin, notes)
    else:
        # the folds are made on first use; check now that they can be, rather than when training starts
        make_folds(pd.DataFrame({"fname": [c.fname for c in train], "label": [c.label for c in train],
                                 "manually_verified": [c.verified for c in train]}), source=source.origin)
    return Plan(train, test, folds, None if folds is None else int(folds["fold"].max()), kaggle_copy, kaggle_test,
                notes)


# ---- writing ----------------------------------------------------------------------------------------------

def check_data_root(out: Path) -> Path:
    """The data root to create: a new folder, or an empty one (a symbolic link to one: its target)."""
    if out.is_symlink() and out.is_dir():
        out = out.resolve()  # the import is built next to the target, on its file system
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise DataError(f"--data_root {out} is a file; give a folder that does not exist yet")
    if out.is_dir() and any(out.iterdir()):
        raise DataError(f"--data_root {out} is not empty; import into a new folder (an import never merges into "
                        "an existing data root)")
    return out


def _new_folder_next_to(out: Path) -> Path:
    """An empty hidden folder beside out, made with the permissions mkdir gives (tempfile.mkdtemp's are 0o700)."""
    out = out.absolute()  # '.' or 'data/' name their folder too
    out.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = out.parent / f".{out.name}.import-{secrets.token_hex(4)}.tmp"
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue


def link_audio(src: str, dst: str) -> str:
    """Link dst to src: a hard link, else (another file system) a symbolic link, else a copy. Says which."""
    try:
        os.link(src, dst)
        return "hard link"
    except OSError:
        pass
    try:
        os.symlink(os.path.abspath(src), dst)
        return "symbolic link"
    except OSError:
        pass
    shutil.copy2(src, dst)
    return "copy"


def _link_all(clips: list[Clip], folder: Path, methods: Counter) -> None:
    folder.mkdir()
    for clip in clips:
        methods[link_audio(clip.path, os.path.join(folder, clip.fname))] += 1


def write_data_root(plan: Plan, out: Path) -> Counter:
    """Build the data root in a folder beside out, then rename it into place, so out is either the whole import
    or as it was. Returns how many files each link method made."""
    tmp = _new_folder_next_to(out)
    methods: Counter = Counter()
    try:
        _link_all(plan.train, tmp / "audio_train", methods)
        save_text(tmp / paths.TRAIN_CSV, pd.DataFrame({
            "fname": [c.fname for c in plan.train], "label": [c.label for c in plan.train],
            "manually_verified": [c.verified for c in plan.train]}).to_csv(index=False))
        if plan.folds is not None:
            save_text(tmp / paths.FOLDS_CSV, plan.folds.to_csv(index=False))
        if plan.test:
            _link_all(plan.test, tmp / "audio_test", methods)
        if plan.kaggle_copy is not None:
            shutil.copy2(plan.kaggle_copy, tmp / KAGGLE_TEST_CSV)
        elif plan.kaggle_test is not None:
            save_text(tmp / KAGGLE_TEST_CSV, plan.kaggle_test.to_csv(index=False))
        elif plan.test:
            save_text(tmp / paths.TEST_CSV, pd.DataFrame({"fname": [c.fname for c in plan.test],
                                                          "label": [c.label for c in plan.test]}).to_csv(index=False))
        try:
            os.rename(tmp, out)  # atomic; replaces out where it is an empty folder
        except OSError as e:
            raise WriteError(f"cannot move the import into {out} ({e.strerror}); was it filled meanwhile?"
                             ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return methods


def summary(plan: Plan, methods: Counter, seconds: float) -> str:
    verified = sum(clip.verified for clip in plan.train)
    test = f"{len(plan.test)} test clips" if plan.test else "no test split"
    folds = (f"{plan.n_folds} predefined folds" if plan.n_folds else
             f"{DEFAULT_N_FOLDS} stratified folds made on first use")
    plural = {"hard link": "hard links", "symbolic link": "symbolic links", "copy": "copies"}
    linked = ", ".join(f"{n} {method if n == 1 else plural[method]}" for method, n in methods.items()) or "none"
    return (f"imported {len(plan.train)} train clips ({verified} verified, {len(plan.train) - verified} unverified) "
            f"and {test}, {len({c.label for c in plan.train})} classes, {folds}; audio: {linked}; {seconds:.1f} s")
