"""Result files and their fusion: what eval.py --dump_results writes and fusion.py averages.

A result file is a plain .npz (no pickled objects; load with allow_pickle=False) holding
    fnames  (N,) str    clip file names, in the order of the CSV they came from
    classes (C,) str    the model's class list (column order of probs)
    probs   (N, C) f32  softmax posteriors
    set     ()  str     the evaluation set (valid, public, private, private_public, test)
    missing (N,) bool   clips without a spectrogram (empty or unreadable audio): their probs are the training
                        set's class prior
and is named by utils.paths.results_path, so a model's folds can be globbed for fusion."""

import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.atomic import save_npz
from utils.errors import InputError, MissingFile
from utils.predict import weighted_average

SETS = ("valid", "public", "private", "private_public", "test")
RESULT_KEYS = ("fnames", "classes", "probs", "set", "missing")


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
