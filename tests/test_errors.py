"""Faults that used to mislead: outputs unreadable to collaborators (mode 0600), a full disk ending in torch's or
numpy's cryptic text, and bad inputs or flags ending in a traceback. Each fault must end in one 'error: ' line
naming the file or flag and what to do, with the exit status of run_cli."""

import errno
import importlib
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from utils.atomic import WriteError, atomic_write, save_json, save_npy, save_text, save_torch
from utils.cli import run_cli
from utils.dataset_csv import DataError
from utils.folds import load_folds, make_folds
from utils.labels import FSDKAGGLE2018_CLASSES
from utils.paths import REPO
from utils.results import Results, save_results
from utils.submission import read_submission

CLASSES = list(FSDKAGGLE2018_CLASSES[:5])
TORCH_SHORT_WRITE = "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"


# ---- helpers -------------------------------------------------------------------------------------------------

def run_main(module_name: str, argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """A script's main through run_cli, as `python <script>.py argv` runs it: (exit status, stdout, stderr)."""
    module = importlib.import_module(module_name)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(module.main, module.parse_args(argv))
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def run_script(script: str, *argv: str) -> tuple[int, str]:
    """The real command line in a fresh interpreter: (exit status, stderr)."""
    proc = subprocess.run([sys.executable, script, *argv], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    return proc.returncode, proc.stderr


def assert_one_error(code: int, err: str, *names: object, status: int = 1) -> str:
    """Exit status `status`, no traceback, exactly one 'error: ' line on stderr, naming every one of names."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    assert code == status, err
    for name in names:
        assert str(name) in errors[0], errors[0]
    return errors[0]


def write_results(path: Path, set_name: str = "test") -> Path:
    probs = np.random.default_rng(0).dirichlet(np.ones(len(CLASSES)), size=4).astype(np.float32)
    save_results(path, Results(np.array([f"{i:08d}.wav" for i in range(4)]), CLASSES, probs, set_name))
    return path


def write_train_csv(path: Path, verified_per_class: dict[str, int], unverified_per_class: int = 5) -> None:
    rows = [(f"{label}_{flag}_{i}.wav", label, flag)
            for label, n in verified_per_class.items()
            for flag, count in ((1, n), (0, unverified_per_class)) for i in range(count)]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["fname", "label", "manually_verified"]).to_csv(path, index=False)


def train_args(data_root: Path, tmp_path: Path) -> list[str]:
    # folds are read before any spectrogram, so a data root with just the CSVs reaches the fault
    return ["--model", "models/vgg_gap_demo.py", "--spec_dir", "specs_train_v1", "--fold", "1", "--data_root",
            str(data_root), "--exp_root", str(tmp_path / "exp"), "--device", "cpu"]


def write_clips(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(16000) / 16000
    for i in range(n):
        sf.write(folder / f"clip{i}.wav", (0.3 * np.sin(2 * np.pi * 440 * (i + 1) * t)).astype(np.float32), 16000)


# ---- 1: outputs honour the umask -----------------------------------------------------------------------------

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_honour_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        save_text(tmp_path / "a.txt", "x")
        save_json(tmp_path / "a.json", {"a": 1})
        save_npy(tmp_path / "a.npy", np.zeros(3))
        save_torch(tmp_path / "a.pt", {"a": 1})
        old = tmp_path / "old.txt"  # replacing a file written 0600 by an older version
        old.write_text("old")
        old.chmod(0o600)
        save_text(old, "new")
    finally:
        os.umask(previous)
    for name in ("a.txt", "a.json", "a.npy", "a.pt", "old.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert old.read_text() == "new"
    assert not list(tmp_path.glob(".*.tmp"))


# ---- 2: a full disk is one clear error; the old file stays ---------------------------------------------------

def disk_full_os_error(tmp: str) -> None:
    Path(tmp).write_bytes(b"partial")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), tmp)


def torch_short_write(tmp: str) -> None:
    Path(tmp).write_bytes(b"partial")
    raise RuntimeError(TORCH_SHORT_WRITE)


def numpy_short_write(tmp: str) -> None:
    Path(tmp).write_bytes(b"partial")
    raise OSError("4096 requested and 0 written")  # numpy's tofile passes no errno


def quota_exceeded(tmp: str) -> None:
    raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), tmp)


@pytest.mark.parametrize("write, what", [(disk_full_os_error, "no space left on "),
                                         (torch_short_write, "no space left on "),
                                         (numpy_short_write, "no space left on "),
                                         (quota_exceeded, "disk quota exceeded on ")])
def test_disk_full_is_one_clear_error_and_the_old_file_stays(tmp_path, write, what):
    path = tmp_path / "out" / "params_1_it0.pt"
    path.parent.mkdir()
    path.write_bytes(b"old")
    with pytest.raises(WriteError) as info:
        atomic_write(path, write)
    message = str(info.value)
    assert message.startswith(what) and f"writing {path}" in message and "\n" not in message
    assert path.read_bytes() == b"old"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # the temp file is gone


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("writer", ["torch", "numpy"])
def test_real_short_writes_are_recognised(tmp_path, writer):
    """/dev/full fails every write with ENOSPC: the errors torch and numpy really raise on a full disk."""
    import torch

    def write(tmp: str) -> None:
        if writer == "torch":  # RuntimeError '... unexpected pos ...', no errno
            torch.save({"w": torch.zeros(100_000)}, "/dev/full")
        else:
            with open("/dev/full", "wb") as f:
                np.save(f, np.zeros((128, 10_000), np.float32))

    with pytest.raises(WriteError, match="no space left on "):
        atomic_write(tmp_path / "x.bin", write)
    assert not list(tmp_path.iterdir())


def test_other_write_errors_pass_unchanged(tmp_path):
    def fails(tmp: str) -> None:
        raise RuntimeError("something else")

    with pytest.raises(RuntimeError, match="^something else$"):
        atomic_write(tmp_path / "x", fails)
    assert not list(tmp_path.iterdir())


def test_disk_full_in_a_script_is_one_line(tmp_path, capsys, monkeypatch):
    fused = tmp_path / "fused.npz"
    fused.write_bytes(b"previous fusion")
    inputs = [str(write_results(tmp_path / f"probs_{k}.npz")) for k in (1, 2)]

    def savez(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez", savez)
    code, _, err = run_main("fusion", ["test", *inputs, "--out", str(fused)], capsys)
    assert_one_error(code, err, "no space left on", f"writing {fused}")
    assert fused.read_bytes() == b"previous fusion"


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_disk_full_stops_prepare_spectrograms(tmp_path, capsys, monkeypatch, jobs):
    """Every clip after a full disk would fail too: the run stops with one line (workers are forked, so they
    inherit the patched np.save)."""
    audio, specs = tmp_path / "audio", tmp_path / "specs"
    write_clips(audio, 3)

    def save(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "save", save)
    code, _, err = run_main("prepare_spectrograms", [
        "--audio_path", str(audio), "--spec_path", str(specs), "--spec_version", "1", "--no_preprocessing",
        "--dump", "--jobs", jobs, "--no_progress"], capsys)
    assert_one_error(code, err, "no space left on", "writing", str(specs))
    assert not list(specs.glob("*.npy")) and not list(specs.glob(".*.tmp"))


# ---- 3: bad inputs and flags are one line, never a traceback -------------------------------------------------

def zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(1).bytes(2000))


def truncated(path: Path) -> None:
    data = write_results(path).read_bytes()
    path.write_bytes(data[:len(data) // 2])


def corrupt_member(path: Path) -> None:
    """The zip directory intact, a member's bytes overwritten: only reading the member fails (bad CRC)."""
    write_results(path)
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("probs.npy")
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + 140  # past the local header and the .npy header
    data[start:start + 20] = bytes(20)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("spoil", [zero_bytes, random_bytes, truncated, corrupt_member])
@pytest.mark.parametrize("script", ["fusion", "prepare_submission"])
def test_broken_result_file(tmp_path, capsys, spoil, script):
    bad = tmp_path / "probs_test.npz"
    spoil(bad)
    argv = (["test", str(bad), "--out", str(tmp_path / "fused.npz")] if script == "fusion" else
            ["--prediction_file", str(bad), "--out_file", str(tmp_path / "sub.csv"), "--data_root", str(tmp_path)])
    code, _, err = run_main(script, argv, capsys)
    assert_one_error(code, err, bad, "eval.py --dump_results or fusion.py")
    assert not (tmp_path / "fused.npz").exists() and not (tmp_path / "sub.csv").exists()


@pytest.mark.slow
def test_zero_byte_result_file_real_cli(tmp_path):
    bad = tmp_path / "probs_test.npz"
    bad.write_bytes(b"")
    code, err = run_script("fusion.py", "test", str(bad), "--out", str(tmp_path / "fused.npz"))
    assert "empty file" in assert_one_error(code, err, bad)


def test_fusion_out_is_a_folder(tmp_path, capsys):
    good = write_results(tmp_path / "probs_test.npz")
    out = tmp_path / "fused"
    out.mkdir()
    code, _, err = run_main("fusion", ["test", str(good), "--out", str(out)], capsys)
    assert "is a folder" in assert_one_error(code, err, "--out", out)
    # the writer itself refuses a folder too (prepare_submission has no check of its own)
    code, _, err = run_main("prepare_submission", ["--prediction_file", str(good), "--out_file", str(out),
                                                   "--data_root", str(tmp_path)], capsys)
    assert "is a folder" in assert_one_error(code, err, out)


@pytest.mark.parametrize("content, says", [
    ('{"config": {}, "finished": false}', 'no "history"'),
    ("not json at all", "not a JSON training log"),
    ("[1, 2, 3]", 'no "history"'),
    (b"\xff\xfe\x00binary", "not a JSON training log"),
    ('{"history": [{"epoch": 1, "train_loss": 1.0}]}', "valid_loss"),
])
def test_plot_log_on_a_file_that_is_no_training_log(tmp_path, capsys, content, says):
    log = tmp_path / "results_1_it0.json"
    log.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, _, err = run_main("plot_log", [str(log), "--out", str(tmp_path / "curves.png")], capsys)
    assert says in assert_one_error(code, err, log)
    assert not (tmp_path / "curves.png").exists()


def test_plot_log_without_history_real_cli(tmp_path):
    log = tmp_path / "summary.json"
    log.write_text('{"best_valid_loss": 0.5}')
    code, err = run_script("plot_log.py", str(log), "--out", str(tmp_path / "curves.png"))
    assert_one_error(code, err, log, "history")


def test_header_only_train_csv(tmp_path, capsys):
    root = tmp_path / "data"
    root.mkdir()
    (root / "train.csv").write_text("fname,label,manually_verified\n")
    code, _, err = run_main("train", train_args(root, tmp_path), capsys)
    assert "no clips" in assert_one_error(code, err, root / "train.csv")


@pytest.mark.parametrize("content", [
    b'fname,label,fold,verified\n"a.wav,Flute,1,1\n',  # an unclosed quote
    b"",  # an empty file
    b"fname,label,fold,verified\n\xff\xfe\x00\x01junk\n",  # binary junk
])
def test_corrupt_folds_csv(tmp_path, capsys, content):
    root = tmp_path / "data"
    write_train_csv(root / "train.csv", {c: 4 for c in CLASSES})
    (root / "folds.csv").write_bytes(content)
    code, _, err = run_main("train", train_args(root, tmp_path), capsys)
    assert "delete it to recompute" in assert_one_error(code, err, root / "folds.csv")


def test_folds_csv_with_bad_fold_numbers(tmp_path):
    write_train_csv(tmp_path / "train.csv", {c: 4 for c in CLASSES})
    folds = load_folds(tmp_path)
    folds.loc[0, "fold"] = 7
    folds.to_csv(tmp_path / "folds.csv", index=False)
    with pytest.raises(DataError, match=r"folds.csv: corrupt folds file \(folds must be the numbers 1..K"):
        load_folds(tmp_path)


def test_too_few_verified_clips_per_class_for_the_folds(tmp_path, capsys):
    root = tmp_path / "data"
    write_train_csv(root / "train.csv", {"Flute": 3, "Trumpet": 2})
    code, _, err = run_main("train", train_args(root, tmp_path), capsys)
    line = assert_one_error(code, err, root / "train.csv", "Flute: 3", "Trumpet: 2", "manually_verified=1")
    assert "n_splits" not in line
    assert not (root / "folds.csv").exists()


def test_a_class_too_small_for_the_folds_is_named():
    train = pd.DataFrame([(f"{label}{i}_{v}.wav", label, v) for label, n in (("Flute", 8), ("Trumpet", 2))
                          for v in (1, 0) for i in range(n)], columns=["fname", "label", "manually_verified"])
    with pytest.raises(DataError, match=r"Trumpet: 2\).*needs 4 verified clips per class"):
        make_folds(train)


def test_small_unverified_classes_still_split():
    train = pd.DataFrame([(f"{label}{i}_{v}.wav", label, v) for label, n in (("Flute", 8), ("Trumpet", 4))
                          for v in (1, 0) for i in range(n if v else 2)],
                         columns=["fname", "label", "manually_verified"])
    folds = make_folds(train)
    assert set(folds["fold"]) == {1, 2, 3, 4}


def test_folds_without_unverified_clips():
    train = pd.DataFrame([(f"{label}{i}.wav", label, 1) for label in ("Flute", "Trumpet") for i in range(8)],
                         columns=["fname", "label", "manually_verified"])
    folds = make_folds(train)
    assert (pd.crosstab(folds["label"], folds["fold"]) == 2).all().all()


def test_latin1_submission(tmp_path, capsys):
    sub = tmp_path / "submission.csv"
    sub.write_bytes("fname,label\n00000001.wav,Flute Trumpet Cello\ncaf\u00e9.wav,Flute Trumpet Cello\n"
                    .encode("latin-1"))
    code, _, err = run_main("evaluate_leaderboard", ["--submission_file", str(sub), "--set", "public",
                                                     "--data_root", str(tmp_path)], capsys)
    assert "UTF-8" in assert_one_error(code, err, f"{sub}:3:")


def test_latin1_submission_line_counts_after_a_bom(tmp_path):
    sub = tmp_path / "submission.csv"
    sub.write_bytes(b"\xef\xbb\xbffname,label\na.wav,Flute Trumpet Cello\nb.wav,Fl\xfbte Trumpet Cello\n")
    with pytest.raises(DataError, match=r"submission.csv:3: not UTF-8 text \(byte 0xfb\)"):
        read_submission(sub)


@pytest.mark.parametrize("max_len", ["10", "-5", "0"])
def test_eval_max_len_too_short(tmp_path, capsys, max_len):
    code, _, err = run_main("eval", ["--model", "models/vgg_gap_demo.py", "--fold", "1", "--set", "valid",
                                     "--max_len", max_len, "--data_root", str(tmp_path), "--exp_root",
                                     str(tmp_path)], capsys)
    assert_one_error(code, err, "--max_len", "at least 256", f"got {max_len}")


@pytest.mark.slow
def test_eval_max_len_real_cli(tmp_path):
    code, err = run_script("eval.py", "--model", "models/vgg_gap_demo.py", "--fold", "1", "--set", "valid",
                           "--max_len", "10", "--data_root", str(tmp_path), "--exp_root", str(tmp_path))
    assert_one_error(code, err, "--max_len", "at least 256")


def test_prepare_spectrograms_out_dir_without_dump(tmp_path, capsys):
    """An output folder without --dump used to compute every clip ('2 computed') and write nothing there."""
    audio, specs = tmp_path / "audio", tmp_path / "specs"
    write_clips(audio, 2)
    code, out, err = run_main("prepare_spectrograms", ["--audio_path", str(audio), "--out_dir", str(specs),
                                                       "--no_preprocessing", "--no_progress"], capsys)
    assert "add --dump" in assert_one_error(code, err, "--out_dir", specs, "without --dump", status=2)
    assert "computed" not in out and not specs.exists()


def test_prepare_spectrograms_check_only_says_nothing_was_written(tmp_path, capsys):
    audio = tmp_path / "audio"
    write_clips(audio, 2)
    code, out, _ = run_main("prepare_spectrograms", ["--audio_path", str(audio), "--no_preprocessing",
                                                     "--jobs", "1", "--no_progress"], capsys)
    assert code == 0
    assert "2 computed" in out and "nothing was written" in out and "--dump" in out
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["audio", "clip0.wav", "clip1.wav"]


@pytest.mark.parametrize("tag", ["../../evil", "a/b", "..", " it0"])
def test_a_tag_that_is_not_a_plain_name_is_refused_before_any_output(tmp_path, capsys, tag):
    root = tmp_path / "data"
    write_train_csv(root / "train.csv", {c: 4 for c in CLASSES})
    code, _, err = run_main("train", [*train_args(root, tmp_path), "--tag", tag], capsys)
    assert_one_error(code, err, f"--tag {tag!r} is not a plain name")
    assert not (tmp_path / "exp").exists() and not list(tmp_path.glob("*/params_*")) and not list(tmp_path.glob("p*"))


def test_a_model_file_whose_name_is_not_plain_is_refused(tmp_path, capsys):
    root = tmp_path / "data"
    write_train_csv(root / "train.csv", {c: 4 for c in CLASSES})
    argv = train_args(root, tmp_path)
    dots = tmp_path / "..py"  # a model file whose name (stem) is '.', which would name the experiments folder
    dots.write_text((REPO / "models" / "vgg_gap_demo.py").read_text())
    argv[argv.index("--model") + 1] = str(dots)
    code, _, err = run_main("train", argv, capsys)
    assert_one_error(code, err, "is not a plain name")
