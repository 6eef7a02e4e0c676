"""The demo dataset builder: layout, formats, label noise, determinism, and skipping a finished build."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from make_demo_dataset import parse_args
from utils.demo_dataset import (
    PARAMS_FILE,
    DemoParams,
    build_demo_dataset,
    is_complete,
    plan_dataset,
)
from utils.demo_synth import CLASSES

TINY_CLASSES = ["Bass_drum", "Cello", "Glockenspiel", "Hi-hat", "Oboe"]
TINY = dict(clips_per_class=6, test_clips_per_class=3, seed=7, classes=TINY_CLASSES)


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def folder_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != PARAMS_FILE}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    assert build_demo_dataset(root, jobs=1, **TINY)
    return root


def test_layout_and_headers(tiny: Path) -> None:
    train_header, train = read_csv(tiny / "train.csv")
    test_header, test = read_csv(tiny / "test_post_competition.csv")
    assert train_header == ["fname", "label", "manually_verified", "true_label"]
    assert test_header == ["fname", "label", "usage", "freesound_id", "license"]
    assert len(train) == 5 * 6 and len(test) == 5 * 3
    fnames = [r["fname"] for r in train + test]
    assert len(set(fnames)) == len(fnames)
    for name in fnames:
        stem, ext = name.split(".")
        assert ext == "wav" and len(stem) == 8 and int(stem, 16) >= 0
    assert sorted(p.name for p in (tiny / "audio_train").iterdir()) == sorted(r["fname"] for r in train)
    assert sorted(p.name for p in (tiny / "audio_test").iterdir()) == sorted(r["fname"] for r in test)
    assert {r["true_label"] for r in train} == set(TINY_CLASSES)
    assert {r["label"] for r in test} == set(TINY_CLASSES)
    assert all(r["freesound_id"].isdigit() and r["license"] for r in test)
    assert len({r["freesound_id"] for r in test}) == len(test)


def test_audio_formats_and_content(tiny: Path) -> None:
    rates, channels, subtypes = set(), set(), set()
    for audio_dir in ("audio_train", "audio_test"):
        for path in (tiny / audio_dir).glob("*.wav"):
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
    assert sum(r["usage"] == "Public" for r in test) == 3  # round(0.19 * 15)
    assert {r["usage"] for r in test} == {"Public", "Private"}
    stats = json.loads((tiny / PARAMS_FILE).read_text())["stats"]
    assert stats["n_verified"] == 12 and stats["n_unverified_wrong"] == 5


def test_label_noise_at_default_size() -> None:
    rows = plan_dataset(DemoParams(24, 8, 0, CLASSES))
    train = [r for r in rows if r.split == "train"]
    test = [r for r in rows if r.split == "test"]
    assert len(train) == 21 * 24 and len(test) == 21 * 8
    verified = [r for r in train if r.verified]
    assert 0.38 <= len(verified) / len(train) <= 0.42
    assert all(r.label == r.spec.true_label for r in verified)
    unverified = [r for r in train if not r.verified]
    wrong = [r for r in unverified if r.label != r.spec.true_label]
    assert 0.25 <= len(wrong) / len(unverified) <= 0.35
    assert all(r.label == r.spec.true_label for r in test)
    assert 0.17 <= sum(r.usage == "Public" for r in test) / len(test) <= 0.21
    mixed = [r for r in rows if r.spec.mix_class is not None]
    assert 0.03 <= len(mixed) / len(rows) <= 0.07
    assert all(r.spec.mix_class != r.spec.true_label for r in mixed)
    # a mislabelled mix carries its quieter class's label
    assert all(r.label == r.spec.mix_class for r in mixed if r.label != r.spec.true_label)
    # every class is still mostly labelled right
    for c in CLASSES:
        mine = [r for r in train if r.spec.true_label == c]
        assert sum(r.label == c for r in mine) / len(mine) >= 0.6
    durations = np.array([r.spec.duration for r in rows])
    assert durations.min() >= 0.3 and durations.max() <= 15.0
    assert np.median(durations) < durations.mean()  # long tail
    assert len({r.spec.fname for r in rows}) == len(rows)


def test_deterministic_and_seed_dependent(tiny: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    build_demo_dataset(again, jobs=2, **TINY)  # a different job count must not change a byte
    assert folder_bytes(again) == folder_bytes(tiny)
    other = tmp_path / "other"
    build_demo_dataset(other, jobs=1, **{**TINY, "seed": 8})
    assert (other / "train.csv").read_bytes() != (tiny / "train.csv").read_bytes()
    assert set(folder_bytes(other)) != set(folder_bytes(tiny))


def test_skip_rebuild_and_refuse(tmp_path: Path) -> None:
    small = dict(clips_per_class=2, test_clips_per_class=1, seed=1, classes=["Cowbell", "Flute"])
    assert build_demo_dataset(tmp_path, **small)
    assert is_complete(tmp_path, DemoParams(2, 1, 1, ("Cowbell", "Flute")))
    assert not build_demo_dataset(tmp_path, **small)  # identical finished build: skipped
    old = {p.name for p in (tmp_path / "audio_train").iterdir()}
    assert build_demo_dataset(tmp_path, **{**small, "seed": 2})  # other parameters: rebuilt, old clips gone
    new = {p.name for p in (tmp_path / "audio_train").iterdir()}
    assert len(new) == 4 and not old & new
    (tmp_path / "audio_test" / sorted((tmp_path / "audio_test").iterdir())[0].name).unlink()
    assert not is_complete(tmp_path, DemoParams(2, 1, 2, ("Cowbell", "Flute")))

    real = tmp_path / "real"
    real.mkdir()
    (real / "train.csv").write_text("fname,label,manually_verified\n")
    with pytest.raises(FileExistsError):
        build_demo_dataset(real, **small)
    with pytest.raises(ValueError):
        build_demo_dataset(tmp_path / "bad", 1, 1, 0, classes=["Kazoo"])


def test_cli_defaults() -> None:
    args = parse_args(["--data_root", "/tmp/x"])
    assert (args.clips_per_class, args.test_clips_per_class, args.seed) == (24, 8, 0)
    assert args.classes is None and args.jobs >= 1
    args = parse_args(["--clips_per_class", "6", "--classes", "Cello", "Oboe"])
    assert args.test_clips_per_class == 2 and args.classes == ["Cello", "Oboe"]
