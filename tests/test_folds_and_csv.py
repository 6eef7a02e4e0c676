import numpy as np
import pandas as pd
import pytest

from utils.dataset_csv import DataError, read_test_csv, read_train_csv
from utils.folds import load_folds, make_folds, split_fold
from utils.labels import LabelEncoder


def write_train(path, n=200, seed=0):
    rng = np.random.default_rng(seed)
    classes = ["Cello", "Flute", "Oboe", "Trumpet", "Hi-hat"]
    df = pd.DataFrame({"fname": [f"{i:08x}.wav" for i in range(n)],
                       "label": [classes[i % 5] for i in range(n)],
                       "manually_verified": (rng.random(n) < 0.4).astype(int)})
    df.to_csv(path, index=False)
    return df


def test_folds_stratified_disjoint_stable(tmp_path):
    write_train(tmp_path / "train.csv")
    folds = load_folds(tmp_path)
    train = read_train_csv(tmp_path / "train.csv")
    assert sorted(folds["fold"].unique()) == [1, 2, 3, 4]
    held_out = [set(folds["fname"][folds["fold"] == k]) for k in range(1, 5)]
    assert sum(len(h) for h in held_out) == len(train)
    assert set.union(*held_out) == set(train["fname"])
    for verified in (0, 1):  # each subset split separately, class shares equal across folds (+-1 clip)
        part = train.merge(folds[["fname", "fold"]], on="fname")
        part = part[part["manually_verified"] == verified]
        counts = pd.crosstab(part["label"], part["fold"])
        assert (counts.max(axis=1) - counts.min(axis=1)).max() <= 1
    again = make_folds(train)
    assert (again["fold"].to_numpy() == folds["fold"].to_numpy()).all()
    (tmp_path / "folds.csv").unlink()
    assert (load_folds(tmp_path)["fold"].to_numpy() == folds["fold"].to_numpy()).all()


def test_fold_stable_across_train_files(tmp_path):
    train = write_train(tmp_path / "train.csv")
    folds = load_folds(tmp_path)
    verified_more = train.copy()
    verified_more["manually_verified"] = 1  # a self-verified file marking everything verified
    for k in range(1, 5):
        _, valid_a, unverified_a = split_fold(read_train_csv(tmp_path / "train.csv"), folds, k)
        train_b, valid_b, _ = split_fold(verified_more, folds, k, verified_only=True)
        assert list(valid_a["fname"]) == list(valid_b["fname"])
        assert not set(valid_b["fname"]) & set(train_b["fname"])
        assert not set(unverified_a["fname"]) & set(train_b["fname"])
        assert (valid_a["manually_verified"] == 1).all()


@pytest.mark.parametrize("content, message", [
    ("fname,label,manually_verified\na.wav,Cello,1\na.wav,Flute,0\n", "duplicated fname"),
    ("fname,label,manually_verified\n../a.wav,Cello,1\n", "invalid fname"),
    ("fname,label,manually_verified\nsub/a.wav,Cello,1\n", "invalid fname"),
    ("fname,label,manually_verified\na.wav,Cello,1\nb.wav, ,1\n", ":3: empty label"),
    ("fname,label,manually_verified\na.wav,Cello,yes\n", "manually_verified must be 0 or 1"),
    ("fname,label\na.wav,Cello\n", "missing column"),
    ('fname,label,manually_verified\n"a.wav,Cello,1\n', "malformed CSV"),
    ("", "malformed CSV"),
])
def test_bad_train_csv(tmp_path, content, message):
    path = tmp_path / "train.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        read_train_csv(path)
    assert str(path) in str(info.value)


def test_missing_csv(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_train_csv(tmp_path / "train.csv")


def test_test_csv_usage_and_ignored(tmp_path):
    path = tmp_path / "test.csv"
    path.write_text("fname,label,usage,freesound_id,license\na.wav,Cello,Public,1,CC0\n"
                    "b.wav,None,Ignored,2,CC0\n")
    assert len(read_test_csv(path)) == 2
    path.write_text("fname,label,usage,freesound_id,license\na.wav,Cello,Secret,1,CC0\n")
    with pytest.raises(DataError, match="usage"):
        read_test_csv(path)


def test_label_encoder_subset():
    enc = LabelEncoder.from_labels(["Oboe", "Cello", "Oboe"])
    assert enc.classes == ["Cello", "Oboe"]
    assert list(enc.encode(["Oboe", "Cello"])) == [1, 0]
    assert enc.decode([1]) == ["Oboe"]
    with pytest.raises(ValueError, match="Flute"):
        enc.encode(["Flute"])
    # any names a data set has; only empty names and a single class are refused
    assert LabelEncoder(["dog bark", "Café (espresso)", "rain"]).encode(["rain"]).tolist() == [2]
    with pytest.raises(ValueError, match="at least 2 classes"):
        LabelEncoder(["Cello"])
    with pytest.raises(ValueError, match="empty"):
        LabelEncoder(["Cello", ""])


def test_stale_folds_file_refused(tmp_path):
    train = write_train(tmp_path / "train.csv")
    load_folds(tmp_path)
    train.loc[0, "manually_verified"] = 1 - train.loc[0, "manually_verified"]  # same clips, other flags
    train.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(DataError, match="does not match"):
        load_folds(tmp_path)
