"""The demo dataset builder: layout, formats, label noise, Kaggle's test padding and broken wavs, the full-size
plan, determinism, and skipping a finished build."""

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from make_demo_dataset import parse_args
from utils.audio import AudioError, read_audio
from utils.demo.dataset import (
    EMPTY,
    FULL_SIZE,
    IGNORED_LABEL,
    PARAMS_FILE,
    SMALL_DURATIONS,
    UNREADABLE,
    WRONG_SHARE,
    DemoParams,
    _csv_texts,
    build_demo_dataset,
    check_disk,
    estimate_bytes,
    is_complete,
    make_params,
    plan_dataset,
)
from utils.demo.synth import CLASSES, ClipSource
from utils.errors import InputError

TINY_CLASSES = ["Bass_drum", "Cello", "Glockenspiel", "Hi-hat", "Oboe"]
TINY = dict(clips_per_class=6, test_clips_per_class=3, seed=7, classes=TINY_CLASSES)
NO_EXTRAS = dict(padding_clips=0, empty_clips=0, unreadable_clips=0, broken_scored=0)
# 15 scored test clips, as many padding clips, 2 empty + 1 unreadable Ignored wavs, 1 broken scored wav
N_TINY_TEST = 15 + 15 + 3 + 1


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def folder_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != PARAMS_FILE}


def broken_wavs(root: Path) -> set[str]:
    return set(json.loads((root / PARAMS_FILE).read_text())["stats"]["broken_wavs"])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    assert build_demo_dataset(root, jobs=1, **TINY)
    return root


@pytest.mark.slow
def test_layout_and_headers(tiny: Path) -> None:
    train_header, train = read_csv(tiny / "train.csv")
    test_header, test = read_csv(tiny / "test_post_competition.csv")
    assert train_header == ["fname", "label", "manually_verified", "true_label"]
    assert test_header == ["fname", "label", "usage", "freesound_id", "license"]
    assert len(train) == 5 * 6 and len(test) == N_TINY_TEST
    fnames = [r["fname"] for r in train + test]
    assert len(set(fnames)) == len(fnames)
    for name in fnames:
        stem, ext = name.split(".")
        assert ext == "wav" and len(stem) == 8 and int(stem, 16) >= 0
    assert [r["fname"] for r in train] == sorted(r["fname"] for r in train)
    assert [r["fname"] for r in test] == sorted(r["fname"] for r in test)
    assert sorted(p.name for p in (tiny / "audio_train").iterdir()) == sorted(r["fname"] for r in train)
    assert sorted(p.name for p in (tiny / "audio_test").iterdir()) == sorted(r["fname"] for r in test)
    assert {r["true_label"] for r in train} == set(TINY_CLASSES)
    scored = [r for r in test if r["usage"] != "Ignored"]
    assert {r["label"] for r in scored} == set(TINY_CLASSES)
    assert {r["label"] for r in test if r["usage"] == "Ignored"} == {IGNORED_LABEL}
    assert all(r["freesound_id"].isdigit() and r["license"] for r in test)
    assert len({r["freesound_id"] for r in test}) == len(test)


@pytest.mark.slow
def test_audio_formats_and_content(tiny: Path) -> None:
    rates, channels, subtypes = set(), set(), set()
    broken = broken_wavs(tiny)
    for audio_dir in ("audio_train", "audio_test"):
        for path in (tiny / audio_dir).glob("*.wav"):
            if path.name in broken:
                continue
            info = sf.info(path)
            rates.add(info.samplerate)
            channels.add(info.channels)
            subtypes.add(info.subtype)
            assert 0.3 - 1e-3 <= info.duration <= 15.0 + 1e-3
            x, _ = sf.read(path, always_2d=True)
            peak = np.abs(x).max()
            assert 0.05 < peak <= 1.0, path
            # real sound, not just the background noise: the loudest 50 ms stands well above the quietest
            frame = int(0.05 * info.samplerate)
            mono = x.mean(axis=1)
            if len(mono) >= 4 * frame:
                energy = np.sqrt(np.mean(mono[: len(mono) // frame * frame].reshape(-1, frame) ** 2, axis=1))
                assert energy.max() > 2 * np.percentile(energy, 5), path
    assert 44100 in rates and len(rates) >= 3  # exact shares: 45 clips give 9 non-44.1k clips
    assert channels == {1, 2}
    assert "PCM_16" in subtypes


@pytest.mark.slow
def test_padding_and_broken_wavs(tiny: Path) -> None:
    _, test = read_csv(tiny / "test_post_competition.csv")
    stats = json.loads((tiny / PARAMS_FILE).read_text())["stats"]
    broken = set(stats["broken_wavs"])
    assert len(broken) == 4 and stats["n_empty"] == 3 and stats["n_unreadable"] == 1
    ignored = [r for r in test if r["usage"] == "Ignored"]
    assert len(ignored) == 15 + 3 and stats["n_ignored"] == 18
    # padding rows are interleaved among the scored ones in fname order, not appended
    positions = [k for k, r in enumerate(test) if r["usage"] == "Ignored"]
    assert positions != list(range(positions[0], positions[0] + len(positions)))
    # every padding clip has audio: a rendered clip, like the others
    for r in ignored:
        if r["fname"] not in broken:
            assert sf.info(tiny / "audio_test" / r["fname"]).frames > 0
    empties, unreadables = [], []
    for name in broken:
        path = tiny / "audio_test" / name
        try:
            info = sf.info(path)
        except sf.LibsndfileError:
            unreadables.append(name)
            with pytest.raises(sf.LibsndfileError):
                sf.read(path)
        else:
            assert info.frames == 0 and info.format == "WAV"
            assert len(sf.read(path)[0]) == 0
            empties.append(name)
        with pytest.raises(AudioError, match=name):
            read_audio(path)
    assert len(empties) == 3 and len(unreadables) == 1
    by_name = {r["fname"]: r for r in test}
    assert sum(by_name[n]["usage"] == "Ignored" for n in empties) == 2
    assert by_name[unreadables[0]]["usage"] == "Ignored"
    scored_broken = [by_name[n] for n in broken if by_name[n]["usage"] != "Ignored"]
    assert len(scored_broken) == 1 and stats["broken_scored"] == [scored_broken[0]["fname"]]
    assert scored_broken[0]["usage"] in ("Public", "Private") and scored_broken[0]["label"] in TINY_CLASSES


@pytest.mark.slow
def test_label_noise_and_usage(tiny: Path) -> None:
    _, train = read_csv(tiny / "train.csv")
    _, test = read_csv(tiny / "test_post_competition.csv")
    verified = [r for r in train if r["manually_verified"] == "1"]
    unverified = [r for r in train if r["manually_verified"] == "0"]
    assert len(verified) + len(unverified) == len(train)
    assert len(verified) == 12  # round(0.4 * 30)
    assert all(r["label"] == r["true_label"] for r in verified)
    wrong = sum(r["label"] != r["true_label"] for r in unverified)
    assert wrong == 5  # round(0.3 * 18)
    assert all(r["label"] in TINY_CLASSES for r in train)
    rendered = [r for r in test if r["fname"] not in broken_wavs(tiny) and r["usage"] != "Ignored"]
    assert sum(r["usage"] == "Public" for r in rendered) == 3  # round(0.19 * 15)
    assert {r["usage"] for r in test} == {"Public", "Private", "Ignored"}
    stats = json.loads((tiny / PARAMS_FILE).read_text())["stats"]
    assert stats["n_verified"] == 12 and stats["n_unverified_wrong"] == 5


def _main_rows(rows):
    return [r for r in rows if r.usage != "Ignored" and r.broken is None]


def test_label_noise_at_default_size() -> None:
    rows = plan_dataset(make_params())
    train = [r for r in rows if r.split == "train"]
    test = [r for r in rows if r.split == "test"]
    scored = [r for r in test if r.usage != "Ignored" and r.broken is None]
    assert len(train) == 21 * 24 and len(scored) == 21 * 8
    assert len(test) == 2 * 21 * 8 + 2 + 1 + 1  # scored, as many padding clips, broken wavs
    verified = [r for r in train if r.verified]
    assert 0.38 <= len(verified) / len(train) <= 0.42
    assert all(r.label == r.spec.true_label for r in verified)
    unverified = [r for r in train if not r.verified]
    wrong = [r for r in unverified if r.label != r.spec.true_label]
    assert 0.25 <= len(wrong) / len(unverified) <= 0.35
    assert all(r.label == r.spec.true_label for r in test if r.usage != "Ignored")
    assert 0.17 <= sum(r.usage == "Public" for r in scored) / len(scored) <= 0.21
    mixed = [r for r in rows if r.spec.mix_class is not None]
    assert 0.03 <= len(mixed) / len(rows) <= 0.07
    assert all(r.spec.mix_class != r.spec.true_label for r in mixed)
    # a mislabelled mix carries its quieter class's label
    assert all(r.label == r.spec.mix_class for r in mixed if r.label != r.spec.true_label and r.usage != "Ignored")
    # every class is still mostly labelled right
    for c in CLASSES:
        mine = [r for r in train if r.spec.true_label == c]
        assert sum(r.label == c for r in mine) / len(mine) >= 0.6
    durations = np.array([r.spec.duration for r in rows if r.broken is None])
    assert durations.min() >= 0.3 and durations.max() <= 15.0
    assert np.median(durations) < durations.mean()  # long tail
    assert len({r.spec.fname for r in rows}) == len(rows)
    # padding clips come from every class
    assert {r.spec.true_label for r in test if r.usage == "Ignored" and r.broken is None} == set(CLASSES)


def test_main_plan_is_unchanged_by_the_extras() -> None:
    """Train clips and scored test clips keep the names, labels, usage and ids of the build before padding
    existed (FORMAT_VERSION 1), so published results and earlier measurements still hold."""
    rows = plan_dataset(make_params())
    main = _main_rows(rows)
    plain = plan_dataset(make_params(**NO_EXTRAS))
    assert main == plain == rows[: len(main)]
    # digests of format version 1's train.csv and (fname,label,usage,freesound_id) of its test CSV at seed 0
    train_text, test_text = _csv_texts(main, {r.spec.fname: ClipSource("fluid", "", "", "") for r in main})
    test_cols = "".join(",".join(line.split(",")[:4]) + "\n" for line in test_text.splitlines())
    assert hashlib.sha256(train_text.encode()).hexdigest() == (
        "3e72ed8b32dda1cc241f392aa15170b78c6c328de6ead268cc0d9efdd7e57cc2")
    assert hashlib.sha256(test_cols.encode()).hexdigest() == (
        "7844af57fb2a61754f189bad88489bc30e484258913d6bdfcc42e0f944dbbeab")
    # a broken scored wav is an extra row, not one of the clips
    assert {r.spec.fname for r in rows if r.broken}.isdisjoint(r.spec.fname for r in main)


def test_full_size_plan() -> None:
    params = make_params(size="full")
    rows = plan_dataset(params)
    train = [r for r in rows if r.split == "train"]
    test = [r for r in rows if r.split == "test"]
    assert len(train) == 9473 and len(test) == 9400
    assert sum(r.verified for r in train) == 3710 and sum(not r.verified for r in train) == 5763
    usage = {u: sum(r.usage == u for r in test) for u in ("Public", "Private", "Ignored")}
    assert usage == {"Public": 301, "Private": 1299, "Ignored": 7800}
    assert all(r.label == IGNORED_LABEL for r in test if r.usage == "Ignored")
    assert all(r.label in CLASSES for r in test if r.usage != "Ignored")
    broken = [r for r in rows if r.broken]
    assert len(broken) == 3 and all(r.broken == EMPTY and r.usage == "Ignored" for r in broken)
    counts = [sum(r.spec.true_label == c for r in train) for c in CLASSES]
    assert min(counts) >= 451 and max(counts) <= 452
    assert {r.spec.true_label for r in test if r.usage != "Ignored"} == set(CLASSES)
    durations = np.array([r.spec.duration for r in rows if not r.broken])
    assert durations.min() >= 0.3 and durations.max() <= 30.0
    assert 3.5 <= np.median(durations) <= 4.5 and durations.mean() > np.median(durations)
    assert np.mean(durations > 15) > 0.02 and np.mean(durations < 1) > 0.05  # long tail, many short clips
    assert len({r.spec.fname for r in rows}) == len(rows)
    assert len({r.freesound_id for r in test}) == len(test)
    assert 8e9 < estimate_bytes(rows) < 16e9
    # overriding the extras keeps everything else
    fewer = plan_dataset(make_params(size="full", padding_clips=10, unreadable_clips=1))
    assert _main_rows(fewer) == _main_rows(rows) and sum(r.usage == "Ignored" for r in fewer) == 14
    assert sum(r.broken == UNREADABLE for r in fewer) == 1


def test_medium_size_plan() -> None:
    """FSDKaggle2018's shares at 2,100 train clips, with the default's label noise on the unverified part."""
    rows = plan_dataset(make_params(size="medium"))
    train = [r for r in rows if r.split == "train"]
    test = [r for r in rows if r.split == "test"]
    assert len(train) == 2100 and sum(r.verified for r in train) == 822  # 3710 / 9473 of them
    unverified = [r for r in train if not r.verified]
    wrong = np.mean([r.label != r.spec.true_label for r in unverified])
    assert abs(wrong - WRONG_SHARE) < 0.02 and all(r.label == r.spec.true_label for r in train if r.verified)
    usage = {u: sum(r.usage == u for r in test) for u in ("Public", "Private", "Ignored")}
    assert usage == {"Public": 67, "Private": 288, "Ignored": 1729}  # 355 scored = 1600 * 2100 / 9473
    assert [r.broken for r in test if r.broken] == [EMPTY]
    counts = [sum(r.spec.true_label == c for r in train) for c in CLASSES]
    assert counts == [100] * len(CLASSES)
    durations = np.array([r.spec.duration for r in rows if not r.broken])
    assert durations.max() <= SMALL_DURATIONS[2] and 2.5 <= np.median(durations) <= 3.5


@pytest.mark.slow
def test_deterministic_and_seed_dependent(tiny: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    build_demo_dataset(again, jobs=2, **TINY)  # a different job count must not change a byte
    assert folder_bytes(again) == folder_bytes(tiny)
    other = tmp_path / "other"
    build_demo_dataset(other, jobs=1, **{**TINY, "seed": 8})
    assert (other / "train.csv").read_bytes() != (tiny / "train.csv").read_bytes()
    assert set(folder_bytes(other)) != set(folder_bytes(tiny))


@pytest.mark.slow
def test_extras_leave_the_other_clips_byte_identical(tiny: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    build_demo_dataset(plain, jobs=2, **TINY, **NO_EXTRAS)
    ours, theirs = folder_bytes(tiny), folder_bytes(plain)
    assert set(theirs) <= set(ours)
    assert all(ours[name] == data for name, data in theirs.items() if not name.endswith(".csv"))
    assert ours["train.csv"] == theirs["train.csv"]
    _, test = read_csv(tiny / "test_post_competition.csv")
    _, plain_test = read_csv(plain / "test_post_competition.csv")
    broken = broken_wavs(tiny)
    assert [r for r in test if r["usage"] != "Ignored" and r["fname"] not in broken] == plain_test


@pytest.mark.slow
def test_skip_rebuild_and_refuse(tmp_path: Path) -> None:
    small = dict(clips_per_class=2, test_clips_per_class=1, seed=1, classes=["Cowbell", "Flute"])
    assert build_demo_dataset(tmp_path, **small)
    assert is_complete(tmp_path, make_params(2, 1, 1, ["Flute", "Cowbell"]))
    assert not is_complete(tmp_path, make_params(2, 1, 1, ["Flute", "Cowbell"], padding_clips=3))
    assert not is_complete(tmp_path, DemoParams(2, 1, 1, ("Cowbell", "Flute")))
    assert not build_demo_dataset(tmp_path, **small)  # identical finished build: skipped
    old = {p.name for p in (tmp_path / "audio_train").iterdir()}
    assert build_demo_dataset(tmp_path, **{**small, "seed": 2})  # other parameters: rebuilt, old clips gone
    new = {p.name for p in (tmp_path / "audio_train").iterdir()}
    assert len(new) == 4 and not old & new
    assert len(list((tmp_path / "audio_test").iterdir())) == 2 + 2 + 3 + 1
    (tmp_path / "audio_test" / sorted((tmp_path / "audio_test").iterdir())[0].name).unlink()
    assert not is_complete(tmp_path, make_params(2, 1, 2, ["Cowbell", "Flute"]))

    real = tmp_path / "real"
    real.mkdir()
    (real / "train.csv").write_text("fname,label,manually_verified\n")
    with pytest.raises(InputError, match="not a demo build; refusing to overwrite it"):
        build_demo_dataset(real, **small)
    with pytest.raises(ValueError):
        build_demo_dataset(tmp_path / "bad", 1, 1, 0, classes=["Kazoo"])
    with pytest.raises(ValueError):
        make_params(size="huge")
    with pytest.raises(ValueError):
        make_params(padding_clips=-1)
    with pytest.raises(OSError, match="GB"):
        check_disk(tmp_path / "not" / "yet", 10**18)


def test_cli_defaults() -> None:
    args = parse_args(["--data_root", "/tmp/x"])
    assert (args.clips_per_class, args.test_clips_per_class, args.seed, args.size) == (24, 8, 0, "small")
    assert args.classes is None and args.jobs >= 1
    assert (args.padding_clips, args.empty_clips, args.unreadable_clips, args.broken_scored) == (None,) * 4
    args = parse_args(["--clips_per_class", "6", "--classes", "Cello", "Oboe"])
    assert args.test_clips_per_class == 2 and args.classes == ["Cello", "Oboe"]
    assert parse_args(["--size", "medium"]).size == "medium"
    args = parse_args(["--size", "full", "--padding_clips", "100", "--broken_scored", "2"])
    assert args.size == "full" and args.padding_clips == 100 and args.broken_scored == 2
    with pytest.raises(SystemExit):
        parse_args(["--empty_clips", "-1"])
    full = make_params(size="full")
    assert (full.train_clips, full.scored_test_clips, full.padding_clips, full.empty_clips) == (
        FULL_SIZE["train_clips"], 1600, 7797, 3)
