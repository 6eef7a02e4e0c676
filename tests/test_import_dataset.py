"""import_dataset.py: each layout, built here from small real audio files as its data set is distributed, imports
into exactly the expected data root with linked audio; bad input ends with one line naming the file and line, and
a failed import leaves nothing behind."""

import csv
import errno
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import import_dataset
from utils import dataset_import
from utils.audio import AUDIO_EXTENSIONS
from utils.cli import DEBUG_ENV, run_cli
from utils.dataset_csv import DataError
from utils.paths import REPO

SR = 32000
CLASSES = ["dog bark", "Café (espresso)", "rain"]  # other data sets' kinds of names: spaces, accents, brackets
FREQS = {label: 300.0 * (k + 1) for k, label in enumerate(CLASSES)}


def audio(path: Path, label: str, seed: int = 0) -> Path:
    """0.3 s of a class's tone in a little noise: a real, tiny audio file (its format from the extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(0.3 * SR)) / SR
    noise = 0.01 * np.random.default_rng(seed).standard_normal(len(t))
    sf.write(path, (0.3 * np.sin(2 * np.pi * FREQS.get(label, 1000.0) * t) + noise).astype(np.float32), SR)
    return path


def write_csv(path: Path, header: list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[row[h] for h in header] for row in rows])
    path.write_text(buf.getvalue())


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def run(*argv) -> None:
    import_dataset.main(import_dataset.parse_args([str(a) for a in argv]))


def assert_hard_linked(out_dir: Path, expected: dict[str, Path]) -> None:
    """out_dir holds exactly these fnames, each the same inode as its source file."""
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(expected)
    for fname, src in expected.items():
        assert not (out_dir / fname).is_symlink() and (out_dir / fname).stat().st_ino == src.stat().st_ino


def no_leftovers(parent: Path) -> bool:
    return not [p for p in parent.iterdir() if p.name.endswith(".tmp")]


def test_audio_extensions_are_the_formats_libsndfile_reads():
    assert {".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3"} <= AUDIO_EXTENSIONS
    assert "MP3" in sf.available_formats()


# ---- fsdkaggle2018 ----------------------------------------------------------------------------------------

KAGGLE_CLASSES = ["Bark", "Cello", "Hi-hat"]


def kaggle_source(root: Path) -> tuple[list[dict], str]:
    train = [{"fname": f"{i:08x}.wav", "label": KAGGLE_CLASSES[i % 3], "manually_verified": str(int(i < 12))}
             for i in range(15)]
    write_csv(root / "train.csv", ["fname", "label", "manually_verified"], train)
    for row in train:
        audio(root / "audio_train" / row["fname"], row["label"])
    test_text = ("fname,label,usage,freesound_id,license\n"
                 "a0000001.wav,Bark,Public,123,Attribution\n"
                 "a0000002.wav,Cello,Private,456,Creative Commons 0\n"
                 "a0000003.wav,None,Ignored,789,Attribution Noncommercial\n")
    (root / "test_post_competition.csv").write_text(test_text)
    for fname in ("a0000001.wav", "a0000002.wav", "a0000003.wav"):
        audio(root / "audio_test" / fname, "rain")
    return train, test_text


def test_fsdkaggle2018(tmp_path, capsys):
    src, out = tmp_path / "FSDKaggle2018", tmp_path / "data"
    train, test_text = kaggle_source(src)
    run("fsdkaggle2018", src, "--data_root", out)
    assert sorted(p.name for p in out.iterdir()) == ["audio_test", "audio_train", "test_post_competition.csv",
                                                     "train.csv"]
    assert read(out / "train.csv").to_dict("records") == train
    assert (out / "test_post_competition.csv").read_text() == test_text  # Kaggle's file as it is
    assert_hard_linked(out / "audio_train", {r["fname"]: src / "audio_train" / r["fname"] for r in train})
    assert_hard_linked(out / "audio_test", {f: src / "audio_test" / f for f in ("a0000001.wav", "a0000002.wav",
                                                                                "a0000003.wav")})
    assert ("imported 15 train clips (12 verified, 3 unverified) and 3 test clips, 3 classes, 4 stratified folds made "
            "on first use; audio: 18 hard links;") in capsys.readouterr().out


def test_fsdkaggle2018_keeps_to_its_41_classes(tmp_path):
    src = tmp_path / "FSDKaggle2018"
    kaggle_source(src)
    text = (src / "train.csv").read_text().replace("00000001.wav,Cello", "00000001.wav,dog bark")
    (src / "train.csv").write_text(text)
    with pytest.raises(DataError, match=r"FSDKaggle2018/train.csv:3: 'dog bark' is not one of FSDKaggle2018's 41"):
        run("fsdkaggle2018", src, "--data_root", tmp_path / "data")


# ---- fsdnoisy18k ------------------------------------------------------------------------------------------

NOISY_CLASSES = ["Coin_(dropping)", "Walk_or_footsteps", "Rain"]


def noisy_source(root: Path) -> tuple[list[dict], list[dict]]:
    # 4 verified clips per class and 2 noisy ones (noisy_small marks a part of the noisy set)
    train = [{"fname": f"{1000 + i}.wav", "label": NOISY_CLASSES[i % 3], "aso_id": f"/m/0{i % 3}",
              "manually_verified": str(int(i < 12)), "noisy_small": str(int(i >= 15))} for i in range(18)]
    test = [{"fname": f"{2000 + i}.wav", "label": NOISY_CLASSES[i % 3], "aso_id": f"/m/0{i % 3}"} for i in range(3)]
    write_csv(root / "FSDnoisy18k.meta" / "train.csv", ["fname", "label", "aso_id", "manually_verified",
                                                        "noisy_small"], train)
    write_csv(root / "FSDnoisy18k.meta" / "test.csv", ["fname", "label", "aso_id"], test)
    for row in train:
        audio(root / "FSDnoisy18k.audio_train" / row["fname"], row["label"])
    for row in test:
        audio(root / "FSDnoisy18k.audio_test" / row["fname"], row["label"])
    return train, test


def test_fsdnoisy18k_with_its_noisy_part(tmp_path, capsys):
    src, out = tmp_path / "FSDnoisy18k", tmp_path / "data"
    train, test = noisy_source(src)
    run("fsdnoisy18k", src, "--data_root", out)
    assert sorted(p.name for p in out.iterdir()) == ["audio_test", "audio_train", "test.csv", "train.csv"]
    assert read(out / "train.csv").to_dict("records") == [
        {k: r[k] for k in ("fname", "label", "manually_verified")} for r in train]
    assert read(out / "test.csv").to_dict("records") == [{"fname": r["fname"], "label": r["label"]} for r in test]
    assert_hard_linked(out / "audio_train", {r["fname"]: src / "FSDnoisy18k.audio_train" / r["fname"] for r in train})
    assert_hard_linked(out / "audio_test", {r["fname"]: src / "FSDnoisy18k.audio_test" / r["fname"] for r in test})
    assert "18 train clips (12 verified, 6 unverified) and 3 test clips, 3 classes" in capsys.readouterr().out


def test_fsdnoisy18k_refuses_several_labels(tmp_path):
    src = tmp_path / "FSDnoisy18k"
    train, test = noisy_source(src)
    train[1]["label"] = "Rain,Wind"
    write_csv(src / "FSDnoisy18k.meta" / "train.csv", list(train[0]), train)
    with pytest.raises(DataError, match=r"FSDnoisy18k.meta/train.csv:3: label 'Rain,Wind' lists several classes; "
                                        r"this is a single-label system"):
        run("fsdnoisy18k", src, "--data_root", tmp_path / "data")


# ---- esc50 ------------------------------------------------------------------------------------------------

ESC_CLASSES = ["dog", "chirping_birds", "rain"]
ESC_HEADER = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]


def esc50_source(root: Path) -> list[dict]:
    rows = [{"filename": f"{fold}-{100000 + i}-A-{k}.wav", "fold": str(fold), "target": str(k),
             "category": label, "esc10": "True" if k == 0 else "False", "src_file": str(100000 + i), "take": "A"}
            for i, (fold, (k, label)) in enumerate((f, c) for f in range(1, 6) for c in enumerate(ESC_CLASSES))]
    write_csv(root / "meta" / "esc50.csv", ESC_HEADER, rows)
    for row in rows:
        audio(root / "audio" / row["filename"], row["category"])
    return rows


def test_esc50_keeps_its_5_folds(tmp_path, capsys):
    src, out = tmp_path / "ESC-50-master", tmp_path / "data"
    rows = esc50_source(src)
    run("esc50", src, "--data_root", out)
    assert sorted(p.name for p in out.iterdir()) == ["audio_train", "folds.csv", "train.csv"]
    assert read(out / "train.csv").to_dict("records") == [
        {"fname": r["filename"], "label": r["category"], "manually_verified": "1"} for r in rows]
    assert read(out / "folds.csv").to_dict("records") == [
        {"fname": r["filename"], "label": r["category"], "fold": r["fold"], "verified": "1"} for r in rows]
    assert_hard_linked(out / "audio_train", {r["filename"]: src / "audio" / r["filename"] for r in rows})
    printed = capsys.readouterr().out
    assert "15 train clips (15 verified, 0 unverified) and no test split, 3 classes, 5 predefined folds" in printed
    assert "numbered" not in printed  # 1..5 already: no mapping to show


def test_esc50_missing_column(tmp_path):
    src = tmp_path / "ESC-50-master"
    rows = esc50_source(src)
    write_csv(src / "meta" / "esc50.csv", [h for h in ESC_HEADER if h != "category"], rows)
    with pytest.raises(DataError, match=r"meta/esc50.csv:1: no column 'category'; the columns are filename, fold, "
                                        r"target, esc10, src_file, take"):
        run("esc50", src, "--data_root", tmp_path / "data")


# ---- folders ----------------------------------------------------------------------------------------------

def test_folders_keep_repeated_file_names_apart(tmp_path, capsys):
    """Speech Commands' shape: the same file name in several class folders, a folder to leave out, hidden files."""
    src, test_src, out = tmp_path / "speech" / "train", tmp_path / "speech" / "test", tmp_path / "data"
    files = {}
    for label in CLASSES:
        for i in range(4):
            files[f"{label}__0a7c2a8d_nohash_{i}.wav"] = audio(src / label / f"0a7c2a8d_nohash_{i}.wav", label, i)
    files["rain__heavy__0a7c2a8d_nohash_0.wav"] = audio(src / "rain" / "heavy" / "0a7c2a8d_nohash_0.wav", "rain")
    audio(src / "_background_noise_" / "white_noise.wav", "rain")
    audio(src / "rain" / ".hidden.wav", "rain")
    (src / "rain" / "README.txt").write_text("not audio")
    test_files = {f"{label}__b00b_{i}.wav": audio(test_src / label / f"b00b_{i}.wav", label) for label in CLASSES
                  for i in range(2)}
    run("folders", src, "--test", test_src, "--exclude", "_background_noise_", "--data_root", out)
    assert sorted(p.name for p in out.iterdir()) == ["audio_test", "audio_train", "test.csv", "train.csv"]
    train = read(out / "train.csv")
    assert list(train.columns) == ["fname", "label", "manually_verified"]
    assert sorted(train["fname"]) == sorted(files) and set(train["manually_verified"]) == {"1"}
    assert all(fname.startswith(label + "__") for fname, label in zip(train["fname"], train["label"], strict=True))
    assert sorted(read(out / "test.csv").to_dict("records"), key=lambda r: r["fname"]) == [
        {"fname": f, "label": f.split("__")[0]} for f in sorted(test_files)]
    assert_hard_linked(out / "audio_train", files)
    assert_hard_linked(out / "audio_test", test_files)
    printed = capsys.readouterr().out
    assert "train fnames: relative paths, folders joined with '__' (file names repeat" in printed
    # a data set without unverified clips: the folds made on first use split its verified clips alone
    assert "13 train clips (13 verified, 0 unverified) and 6 test clips, 3 classes, 4 stratified folds" in printed


def test_folders_keep_unique_file_names_and_read_every_format(tmp_path, capsys):
    src, out = tmp_path / "sounds", tmp_path / "data"
    exts = [".wav", ".flac", ".ogg", ".aiff", ".mp3"]
    files = {f"{label[:3]}{i}{exts[i]}": audio(src / label / f"{label[:3]}{i}{exts[i]}", label)
             for label in CLASSES for i in range(5)}
    run("folders", src, "--data_root", out)
    assert sorted(read(out / "train.csv")["fname"]) == sorted(files)
    assert_hard_linked(out / "audio_train", files)
    assert "fnames: relative paths" not in capsys.readouterr().out


def test_folders_same_name_in_two_formats_is_refused(tmp_path):
    src = tmp_path / "sounds"
    for label in CLASSES:
        for i in range(4):
            audio(src / label / f"{label}{i}.wav", label)
    audio(src / "rain" / "rain0.flac", "rain")
    with pytest.raises(DataError, match=r"rain/rain0.flac and .*rain/rain0.wav differ only in their extension"):
        run("folders", src, "--data_root", tmp_path / "data")


def test_folders_class_named_as_several(tmp_path):
    src = tmp_path / "sounds"
    for label in ("rain", "Bark,Dog"):
        for i in range(4):
            audio(src / label / f"{label}{i}.wav", label)
    with pytest.raises(DataError, match=r"Bark,Dog/Bark,Dog0.wav: label 'Bark,Dog' lists several classes"):
        run("folders", src, "--data_root", tmp_path / "data")


# ---- names ------------------------------------------------------------------------------------------------

SPEAKERS = ["theo", "george", "jackson", "lucas"]  # sorted: george, jackson, lucas, theo -> folds 1..4
FSDD_PATTERN = "recordings/{label}_{fold}_{index}.wav"


def fsdd(root: Path, digits: tuple[str, ...] = ("0", "1", "7")) -> dict[str, Path]:
    """FSDD's shape, recordings/{digit}_{speaker}_{index}.wav, beside what a repository holds that is not data."""
    files = {f"{d}_{s}_0.wav": audio(root / "recordings" / f"{d}_{s}_0.wav", d, k)
             for d in digits for k, s in enumerate(SPEAKERS)}
    (root / "README.md").write_text("# Free Spoken Digit Dataset\n")
    (root / "utils").mkdir()
    (root / "utils" / "trimmer.py").write_text("print('not data')\n")
    (root / "recordings" / "notes.txt").write_text("not audio either\n")
    audio(root / "recordings" / ".0_theo_9.wav", "0")  # hidden: left out, as the folders layout does
    return files


def names_args(src: Path, out: Path, pattern: str = FSDD_PATTERN, *extra: str) -> list:
    return ["names", src, "--pattern", pattern, "--data_root", out, *extra]


def script_error(capsys, monkeypatch, *argv) -> str:
    """What import_dataset.py prints for bad input, run as the script runs it: exit status 1 and one line."""
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    with pytest.raises(SystemExit) as stop:
        run_cli(import_dataset.main, import_dataset.parse_args([str(a) for a in argv]))
    assert stop.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0][len("error: "):]


def test_names_fsdd_speakers_become_folds(tmp_path, capsys):
    src, out = tmp_path / "fsdd", tmp_path / "data"
    files = fsdd(src)
    run(*names_args(src, out))
    assert sorted(p.name for p in out.iterdir()) == ["audio_train", "folds.csv", "train.csv"]
    assert read(out / "train.csv").to_dict("records") == [
        {"fname": f, "label": f.split("_")[0], "manually_verified": "1"} for f in sorted(files)]
    fold = {s: str(k + 1) for k, s in enumerate(sorted(SPEAKERS))}
    assert read(out / "folds.csv").to_dict("records") == [
        {"fname": f, "label": f.split("_")[0], "fold": fold[f.split("_")[1]], "verified": "1"} for f in sorted(files)]
    assert_hard_linked(out / "audio_train", files)  # README.md, .py, .txt and the hidden file are not data
    printed = capsys.readouterr().out
    assert "folds: the source's values numbered 1..4: george -> 1, jackson -> 2, lucas -> 3, theo -> 4" in printed
    assert "imported 12 train clips (12 verified, 0 unverified) and no test split, 3 classes, 4 predefined folds" \
        in printed


def test_names_fields_match_the_shortest_within_one_folder():
    regex, fields = dataset_import.compile_pattern("{index} - {label}/{clip}.ogg")
    assert fields == ["index", "label", "clip"]
    assert regex.fullmatch("001 - Dog bark - loud/1-100032-A.ogg").groups() == ("001", "Dog bark - loud",
                                                                               "1-100032-A")
    assert regex.fullmatch("001 - Dog/bark/1-100032-A.ogg") is None  # a field never spans a '/'
    regex, _ = dataset_import.compile_pattern(FSDD_PATTERN)
    assert regex.fullmatch("recordings/7_jackson_32.wav").groups() == ("7", "jackson", "32")
    assert regex.fullmatch("recordings/dog_bark_jackson_3.wav").groups() == ("dog", "bark", "jackson_3")
    assert regex.fullmatch("recordings/7_jackson_32Xwav") is None  # literal text is literal
    regex, _ = dataset_import.compile_pattern("{{raw}}/{label}.wav")
    assert regex.fullmatch("{raw}/rain.wav").groups() == ("rain",)


def test_names_labels_with_spaces_and_underscores(tmp_path, capsys):
    """ESC-50's first release: '001 - Dog bark/1-100032-A.ogg', the separators deciding where a label ends."""
    src, out = tmp_path / "ESC-50-first", tmp_path / "data"
    labels = ["Dog bark", "Rain_on roof", "Crackling - fire"]
    clips = [(f"{fold}-{100000 + 10 * k + fold}-A.ogg", label, fold) for k, label in enumerate(labels)
             for fold in (1, 2)]
    files = {name: audio(src / f"{labels.index(label) + 1:03d} - {label}" / name, label, fold)
             for name, label, fold in clips}
    run(*names_args(src, out, "{index} - {label}/{fold}-{clip}.ogg"))
    assert read(out / "folds.csv").to_dict("records") == [
        {"fname": name, "label": label, "fold": str(fold), "verified": "1"} for name, label, fold in clips]
    assert_hard_linked(out / "audio_train", files)
    printed = capsys.readouterr().out
    assert "6 train clips (6 verified, 0 unverified) and no test split, 3 classes, 2 predefined folds" in printed
    assert "numbered" not in printed


def test_names_split_makes_a_test_split(tmp_path, capsys):
    src, out = tmp_path / "corpus", tmp_path / "data"
    train = {f"{label}_{i}.wav": audio(src / "Train" / label / f"{label}_{i}.wav", label, i)
             for label in CLASSES for i in range(4)}
    test = {f"{label}_t.wav": audio(src / "test" / label / f"{label}_t.wav", label) for label in CLASSES}
    run(*names_args(src, out, "{split}/{label}/{name}.wav"))
    assert sorted(p.name for p in out.iterdir()) == ["audio_test", "audio_train", "test.csv", "train.csv"]
    assert sorted(read(out / "train.csv").to_dict("records"), key=lambda r: r["fname"]) == [
        {"fname": f, "label": f.rsplit("_", 1)[0], "manually_verified": "1"} for f in sorted(train)]
    assert sorted(read(out / "test.csv").to_dict("records"), key=lambda r: r["fname"]) == [
        {"fname": f, "label": f.rsplit("_", 1)[0]} for f in sorted(test)]
    assert_hard_linked(out / "audio_train", train)
    assert_hard_linked(out / "audio_test", test)
    assert "12 train clips (12 verified, 0 unverified) and 3 test clips, 3 classes, 4 stratified folds made on " \
           "first use" in capsys.readouterr().out


def test_names_skip_unmatched_imports_the_rest_and_counts_them(tmp_path, capsys, monkeypatch):
    src, out = tmp_path / "fsdd", tmp_path / "data"
    files = fsdd(src)
    audio(src / "recordings" / "silence.wav", "rain")
    audio(src / "extra" / "7_theo.flac", "7")
    message = script_error(capsys, monkeypatch, *names_args(src, out))
    assert message == (f"2 of 14 audio file(s) below {src} do not match --pattern '{FSDD_PATTERN}', the first: "
                       "extra/7_theo.flac (--skip_unmatched imports the rest)")
    assert not out.exists() and no_leftovers(tmp_path)
    run(*names_args(src, out, FSDD_PATTERN, "--skip_unmatched"))
    assert sorted(read(out / "train.csv")["fname"]) == sorted(files)
    printed = capsys.readouterr().out
    assert ("left out 2 of 14 audio file(s) that do not match --pattern (--skip_unmatched), the first: "
            "extra/7_theo.flac") in printed
    assert "imported 12 train clips" in printed


def data_root_inside(src: Path) -> list:
    return names_args(src, src / "imported")


BAD_NAMES = {
    "no label": (names_args, ["recordings/{digit}_{fold}_{index}.wav"],
                 r"--pattern 'recordings/\{digit\}_\{fold\}_\{index\}.wav' has no \{label\}; the names layout reads "
                 r"each clip's class from its path"),
    "a field twice": (names_args, ["recordings/{label}_{fold}_{fold}.wav"],
                      r"--pattern '.*' names \{fold\} twice; each field is read once"),
    "malformed braces": (names_args, ["recordings/{label}_{fold}_index}.wav"],
                         r"--pattern '.*': Single '\}' encountered in format string \(literal braces are written"),
    "a format spec": (names_args, ["recordings/{label}_{fold:02d}_{index}.wav"],
                      r"\{fold:02d\} is not a field; a field is a plain \{name\}"),
    "an empty field": (names_args, ["recordings/{label}_{}_{index}.wav"], r"an empty \{\}; name each field"),
    "an audio file the pattern does not match": (names_args, ["recordings/{label}-{fold}.wav"],
                                                 r"12 of 12 audio file\(s\) below .*fsdd do not match --pattern "
                                                 r"'recordings/\{label\}-\{fold\}.wav', the first: "
                                                 r"recordings/0_george_0.wav$"),
    "bad split value": (names_args, ["recordings/{label}_{split}_{index}.wav"],
                        r".*fsdd/recordings/0_george_0.wav: split 'george' is not one of train, test \(\{split\} of "
                        r"--pattern"),
    "data root inside SOURCE": (lambda src, out: data_root_inside(src), [],
                                r"--data_root .*fsdd/imported is inside SOURCE .*fsdd; its audio would be read as "
                                r"data by the next import"),
    "no --pattern": (lambda src, out: ["names", src, "--data_root", out], [],
                     r"the names layout needs --pattern, e.g. 'recordings/\{label\}_\{fold\}_\{index\}.wav'$"),
    "--pattern elsewhere": (lambda src, out: ["folders", src, "--pattern", FSDD_PATTERN, "--data_root", out], [],
                            r"--pattern is for the names layout, not folders$"),
}


@pytest.mark.parametrize("case", BAD_NAMES)
def test_bad_names_input_in_one_line(tmp_path, capsys, monkeypatch, case):
    args, extra, message = BAD_NAMES[case]
    src, out = tmp_path / "fsdd", tmp_path / "data"
    fsdd(src)
    argv = args(src, out, *extra)
    assert re.search(message, script_error(capsys, monkeypatch, *argv))
    assert not out.exists() and not (src / "imported").exists() and no_leftovers(tmp_path) and no_leftovers(src)


def test_folders_data_root_inside_source_or_test_is_refused(tmp_path):
    src = tmp_path / "sounds"
    for label in CLASSES:
        for i in range(4):
            audio(src / "train" / label / f"{label}{i}.wav", label)
            audio(src / "test" / label / f"{label}{i}.wav", label)
    for out in (src / "train" / "data", src / "test" / "data"):
        with pytest.raises(DataError, match=r"--data_root .*data is inside (SOURCE|--test) .*sounds/t"):
            run("folders", src / "train", "--test", src / "test", "--data_root", out)
        assert not out.exists()


@pytest.mark.slow  # a script in a subprocess
def test_names_script_reports_bad_input_in_one_line(tmp_path):
    src = tmp_path / "fsdd"
    fsdd(src)
    proc = subprocess.run([sys.executable, "import_dataset.py", *map(str, data_root_inside(src))], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --data_root {src / 'imported'} is inside SOURCE {src}")
    assert not (src / "imported").exists() and no_leftovers(src)


# ---- csv --------------------------------------------------------------------------------------------------

HEADER = ["file_id", "site", "species", "checked", "split", "fold"]
CHECKED = ["1", "yes", "True"]


def survey_rows() -> list[dict]:
    """15 clips of 3 classes: 4 verified and 1 unverified each (the last three), file ids repeating across sites,
    5 folds with every class in several of them."""
    return [{"file_id": f"{i % 8:03d}", "site": "north" if i < 8 else "south", "species": CLASSES[i % 3],
             "checked": ["0", "no", "false"][i - 12] if i >= 12 else CHECKED[i % 3], "split": "train",
             "fold": str(i % 5 + 1)} for i in range(15)]


def survey(root: Path, rows: list[dict], without_audio: tuple[int, ...] = ()) -> Path:
    write_csv(root / "labels.csv", HEADER, rows)
    for i, row in enumerate(rows):
        if i not in without_audio:
            audio(root / "recordings" / row["site"] / f"{row['file_id']}.flac", row["species"], i)
    return root


def survey_args(src: Path, out: Path, *extra: str) -> list:
    return ["csv", src, "--csv", "labels.csv", "--audio_path", "recordings/{site}/{file_id}.flac",
            "--label_column", "species", "--verified_column", "checked", "--data_root", out, *extra]


def fname(row: dict) -> str:
    return f"{row['site']}__{row['file_id']}.flac"  # 'recordings', which all share, left out


def test_csv_layout(tmp_path, capsys):
    rows = survey_rows() + [{"file_id": f"t{i}", "site": "east", "species": CLASSES[i], "checked": "1",
                             "split": "Test", "fold": "1"} for i in range(3)]
    src, out = survey(tmp_path / "survey", rows), tmp_path / "data"
    run(*survey_args(src, out, "--split_column", "split"))
    assert sorted(p.name for p in out.iterdir()) == ["audio_test", "audio_train", "test.csv", "train.csv"]
    assert read(out / "train.csv").to_dict("records") == [
        {"fname": fname(r), "label": r["species"], "manually_verified": str(int(i < 12))}
        for i, r in enumerate(rows[:15])]
    assert read(out / "test.csv").to_dict("records") == [
        {"fname": f"t{i}.flac", "label": CLASSES[i]} for i in range(3)]
    assert_hard_linked(out / "audio_train", {fname(r): src / "recordings" / r["site"] / f"{r['file_id']}.flac"
                                             for r in rows[:15]})
    assert_hard_linked(out / "audio_test", {f"t{i}.flac": src / "recordings" / "east" / f"t{i}.flac"
                                            for i in range(3)})
    assert "15 train clips (12 verified, 3 unverified) and 3 test clips, 3 classes" in capsys.readouterr().out


def test_csv_layout_keeps_a_10_value_fold_column(tmp_path, capsys):
    rows = [{"file_id": f"{fold}_{k}", "site": "x", "species": label, "checked": "1", "split": "train",
             "fold": str(fold)} for fold in range(1, 11) for k, label in enumerate(CLASSES[:2])]
    src, out = survey(tmp_path / "survey", rows), tmp_path / "data"
    run(*survey_args(src, out, "--fold_column", "fold"))
    folds = read(out / "folds.csv")
    assert list(folds.columns) == ["fname", "label", "fold", "verified"]
    # numeric order: fold 10 stays 10 (as strings it would sort second)
    assert folds.to_dict("records") == [{"fname": f"{r['file_id']}.flac", "label": r["species"], "fold": r["fold"],
                                         "verified": "1"} for r in rows]
    printed = capsys.readouterr().out
    assert "10 predefined folds" in printed and "numbered" not in printed


def test_csv_layout_numbers_other_fold_values_1_to_k(tmp_path, capsys):
    rows = survey_rows()
    for row in rows:
        row["fold"] = str(int(row["fold"]) - 1)  # 0..4, as many data sets count
    src, out = survey(tmp_path / "survey", rows), tmp_path / "data"
    run(*survey_args(src, out, "--fold_column", "fold"))
    assert read(out / "folds.csv")["fold"].tolist() == [str(int(r["fold"]) + 1) for r in rows]
    assert "folds: the source's values numbered 1..5: 0 -> 1, 1 -> 2, 2 -> 3, 3 -> 4, 4 -> 5" in capsys.readouterr().out


def test_skip_missing_imports_the_rest(tmp_path, capsys):
    src, out = survey(tmp_path / "survey", survey_rows(), without_audio=(12, 13)), tmp_path / "data"
    run(*survey_args(src, out, "--skip_missing"))
    assert len(read(out / "train.csv")) == 13
    printed = capsys.readouterr().out
    assert "left out 2 clip(s) whose audio is missing (--skip_missing)" in printed and "labels.csv:14:" in printed
    assert "imported 13 train clips (12 verified, 1 unverified)" in printed


def mutate(field: str, row: int, value: str):
    def change(rows: list[dict]) -> None:
        rows[row][field] = value
    return change


def add_class_only_in_fold_2(rows: list[dict]) -> None:
    rows += [{"file_id": f"owl{i}", "site": "west", "species": "owl", "checked": "1", "split": "train", "fold": "2"}
             for i in range(4)]


def unverify_fold_3(rows: list[dict]) -> None:
    for row in rows:
        if row["fold"] == "3":
            row["checked"] = "0"


BAD_CSV = {
    "missing column": (None, ["--label_column", "klass"],
                       r"labels.csv:1: no column 'klass' \(given by --label_column\); the columns are file_id, site, "
                       r"species, checked, split, fold"),
    "empty label": (mutate("species", 2, ""), [], r"labels.csv:4: empty label"),
    "several classes": (mutate("species", 1, "Bark,Dog"), [],
                        r"labels.csv:3: label 'Bark,Dog' lists several classes; this is a single-label system"),
    "unknown template column": (None, ["--audio_path", "recordings/{site}/{recording}.flac"],
                                r"labels.csv:1: --audio_path 'recordings/\{site\}/\{recording\}.flac' names the "
                                r"column \{recording\}, which is not there; the columns are file_id, site"),
    "duplicated file": (lambda rows: rows[5].update(site="north", file_id="000"), [],
                        r"labels.csv:7: duplicated file .*north/000.flac, also named at .*labels.csv:2"),
    "bad verified value": (mutate("checked", 3, "maybe"), [],
                           r"labels.csv:5: verified value 'maybe' is not one of 0/1, true/false, yes/no"),
    "bad split value": (mutate("split", 6, "val"), ["--split_column", "split"],
                        r"labels.csv:8: split 'val' is not one of train, test \(column 'split'\)"),
    "class too small for the folds": (lambda rows: rows.append(dict(rows[0], file_id="owl", species="owl")), [],
                                      r"labels.csv: .*owl: 1"),
    "one class": (lambda rows: [row.update(species="rain") for row in rows], [], r"labels.csv: 1 class \(rain\); "
                                                                                 r"a tagger needs at least 2"),
    "class in one fold": (add_class_only_in_fold_2, ["--fold_column", "fold"],
                          r"labels.csv:17: class 'owl' is only in fold '2'; a class needs clips in at least 2 folds"),
    "fold without verified clips": (unverify_fold_3, ["--fold_column", "fold"],
                                    r"labels.csv: fold '3' has no verified clip"),
    "one fold": (lambda rows: [row.update(fold="1") for row in rows], ["--fold_column", "fold"],
                 r"labels.csv: only one fold \('1'\); predefined folds need at least 2"),
    "empty fold": (mutate("fold", 9, ""), ["--fold_column", "fold"], r"labels.csv:11: empty fold \(column 'fold'\)"),
    "test label not trained": (lambda rows: rows.append(dict(rows[0], file_id="t", species="owl", split="test")),
                               ["--split_column", "split"],
                               r"labels.csv:17: test label 'owl' is not a class of the training clips"),
    "not an audio format": (None, ["--audio_path", "recordings/{site}/{file_id}.flac.txt"], r"labels.csv:2: "),
}


@pytest.mark.parametrize("case", BAD_CSV)
def test_bad_csv_input_names_file_and_line(tmp_path, case):
    change, extra, message = BAD_CSV[case]
    rows = survey_rows()
    if change:
        change(rows)
    src, out = survey(tmp_path / "survey", rows), tmp_path / "data"
    if case == "not an audio format":
        for path in (src / "recordings").rglob("*.flac"):
            shutil.copy(path, str(path) + ".txt")
    with pytest.raises(DataError, match=message):
        run(*survey_args(src, out, *extra))
    assert not out.exists() and no_leftovers(tmp_path)


def test_missing_audio_lists_the_first_few_with_their_lines(tmp_path):
    src, out = survey(tmp_path / "survey", survey_rows(), without_audio=(12, 13)), tmp_path / "data"
    with pytest.raises(DataError, match=r"2 audio path\(s\) name no file: .*labels.csv:14: .*south/004.flac; "
                                        r".*labels.csv:15: .*south/005.flac \(--skip_missing imports the rest\)"):
        run(*survey_args(src, out))
    assert not out.exists()


def test_line_numbers_are_the_files_with_blank_lines_and_quoted_breaks(tmp_path):
    src = survey(tmp_path / "survey", survey_rows())
    lines = (src / "labels.csv").read_text().splitlines()
    lines[2] = lines[2].replace("north", '"no\nrth"', 1)  # a quoted line break: the second row spans lines 3-4
    lines.insert(4, "")  # a blank line 6 after the third row (line 5)
    lines[6] = lines[6].replace(",Café (espresso),", ",,")  # the fifth row: line 6 without those two, now line 8
    (src / "labels.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"labels.csv:8: empty label"):
        run(*survey_args(src, tmp_path / "data"))


def test_unquoted_comma_names_the_line(tmp_path):
    src = survey(tmp_path / "survey", survey_rows())
    text = (src / "labels.csv").read_text().replace(",rain,", ",rain,snow,", 1)
    (src / "labels.csv").write_text(text)
    with pytest.raises(DataError, match=r"labels.csv:4: 7 fields where the header has 6"):
        run(*survey_args(src, tmp_path / "data"))


def test_source_and_data_root_checks(tmp_path):
    src = survey(tmp_path / "survey", survey_rows())
    with pytest.raises(DataError, match=r"SOURCE .*nowhere is not a folder"):
        run(*survey_args(tmp_path / "nowhere", tmp_path / "data"))
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(DataError, match=r"--data_root .*a_file is a file"):
        run(*survey_args(src, tmp_path / "a_file"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "train.csv").write_text("fname,label,manually_verified\n")
    with pytest.raises(DataError, match=r"--data_root .*full is not empty; import into a new folder"):
        run(*survey_args(src, tmp_path / "full"))
    assert os.listdir(tmp_path / "full") == ["train.csv"]
    with pytest.raises(ValueError, match="the csv layout needs --label_column"):
        run("csv", src, "--csv", "labels.csv", "--audio_path", "x/{site}.wav", "--data_root", tmp_path / "data")
    with pytest.raises(ValueError, match="--csv is for the csv layout, not folders"):
        run("folders", src, "--csv", "labels.csv", "--data_root", tmp_path / "data")


def test_import_into_an_empty_folder(tmp_path):
    src, out = survey(tmp_path / "survey", survey_rows()), tmp_path / "data"
    out.mkdir()
    run(*survey_args(src, out))
    assert len(read(out / "train.csv")) == 15 and no_leftovers(tmp_path)


def test_failure_midway_leaves_the_data_root_as_it_was(tmp_path, monkeypatch):
    src, out = survey(tmp_path / "survey", survey_rows()), tmp_path / "data"
    original, linked = dataset_import.link_audio, []

    def link_then_fail(src_file: str, dst: str) -> str:
        if len(linked) == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        linked.append(dst)
        return original(src_file, dst)

    monkeypatch.setattr(dataset_import, "link_audio", link_then_fail)
    with pytest.raises(OSError, match="No space left"):
        run(*survey_args(src, out))
    assert len(linked) == 5 and not out.exists() and no_leftovers(tmp_path)
    out.mkdir()  # an empty folder given as the data root stays as it was, too
    linked.clear()
    with pytest.raises(OSError, match="No space left"):
        run(*survey_args(src, out))
    assert out.is_dir() and not os.listdir(out) and no_leftovers(tmp_path)


def test_links_fall_back_to_symlinks_then_copies(tmp_path, monkeypatch, capsys):
    src = survey(tmp_path / "survey", survey_rows())

    def refuse(*args, **kwargs):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", refuse)
    run(*survey_args(src, tmp_path / "linked"))
    first = tmp_path / "linked" / "audio_train" / "north__000.flac"
    assert first.is_symlink() and os.readlink(first) == str((src / "recordings" / "north" / "000.flac").absolute())
    assert "audio: 15 symbolic links" in capsys.readouterr().out
    monkeypatch.setattr(os, "symlink", refuse)
    run(*survey_args(src, tmp_path / "copied"))
    first = tmp_path / "copied" / "audio_train" / "north__000.flac"
    original = src / "recordings" / "north" / "000.flac"
    assert not first.is_symlink() and first.stat().st_ino != original.stat().st_ino
    assert first.read_bytes() == original.read_bytes()
    assert "audio: 15 copies" in capsys.readouterr().out


def test_script_reports_bad_input_in_one_line(tmp_path):
    src, out = survey(tmp_path / "survey", survey_rows(), without_audio=(4,)), tmp_path / "data"
    proc = subprocess.run([sys.executable, "import_dataset.py", *map(str, survey_args(src, out))], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: 1 audio path(s) name no file: ")
    assert "labels.csv:6: " in lines[0]
    assert not out.exists() and no_leftovers(tmp_path)
