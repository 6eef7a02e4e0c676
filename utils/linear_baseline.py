"""The bar the nets must clear: a logistic regression on summary statistics of the same spectrograms, on the same
folds. Each clip becomes each band's mean, standard deviation and 90th percentile over time, of every spectrogram
version given (the whole clip, as the nets' validation sees it up to max_len); per fold it is trained on the fold's
training part and scored on the fold's verified validation clips, as the nets are."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from utils import paths
from utils.dataset_csv import read_train_csv
from utils.folds import fold_numbers, load_folds, split_fold
from utils.metrics import accuracy, map_at_k
from utils.spec_data import load_spectrograms


def clip_features(specs: Sequence[np.ndarray]) -> np.ndarray:
    """(N, 3 * bands): per band the mean, standard deviation and 90th percentile over the clip's frames."""
    return np.stack([np.concatenate([s.mean(1), s.std(1), np.percentile(s, 90, axis=1)]) for s in specs])


def _training_features(data_root: Path, spec_dirs: Sequence[str], max_len: int
                       ) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """train.csv's rows, their features (rows in its order) and the sorted class list."""
    train = read_train_csv(data_root / paths.TRAIN_CSV)
    features = np.concatenate([clip_features(load_spectrograms(data_root / d, train["fname"], max_len))
                               for d in spec_dirs], axis=1)
    return train, features, sorted(train["label"].unique())


def _fit(features: np.ndarray, labels: pd.Series, classes: list[str], seed: int):
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000, random_state=seed))
    return model.fit(features, labels.map({c: i for i, c in enumerate(classes)}).to_numpy())


def _posteriors(model, features: np.ndarray, n_classes: int) -> np.ndarray:
    """(N, C) over every class, 0 for a class the fold's training part lacks."""
    out = np.zeros((len(features), n_classes))
    out[:, model.classes_] = model.predict_proba(features)
    return out


def cross_validate(data_root: Path, spec_dirs: Sequence[str], max_len: int, verified_only: bool = False,
                   seed: int = 0) -> list[dict[str, float]]:
    """Per fold (in the data root's order) {"acc", "map3"} on its verified validation clips, trained on all of the
    fold's training labels (noisy ones included) or on its verified clips alone."""
    train, features, classes = _training_features(data_root, spec_dirs, max_len)
    folds = load_folds(data_root)
    row = pd.Series(np.arange(len(train)), index=train["fname"])
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for fold in fold_numbers(folds):
        part, valid, _ = split_fold(train, folds, fold, verified_only=verified_only)
        model = _fit(features[row[part["fname"]].to_numpy()], part["label"], classes, seed)
        scores = _posteriors(model, features[row[valid["fname"]].to_numpy()], len(classes))
        truth = valid["label"].map(index).to_numpy()
        out.append({"acc": accuracy(truth, scores.argmax(1)), "map3": map_at_k(truth, scores)})
    return out


def predict_test(data_root: Path, spec_dirs: Sequence[str], test_spec_dirs: Sequence[str], max_len: int,
                 fnames: Sequence[str], seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(classes, posteriors (N, C), missing (N,)) of the test clips `fnames`, the model trained on every training
    clip and label; a clip without a spectrogram in every folder gets the training set's class prior, as the nets'
    evaluation gives it."""
    from utils.evaluation import class_prior
    from utils.spec_store import open_store

    train, features, classes = _training_features(data_root, spec_dirs, max_len)
    model = _fit(features, train["label"], classes, seed)
    stores = [open_store(data_root / d) for d in test_spec_dirs]
    missing = np.array([not all(f in s for s in stores) for f in fnames], dtype=bool)
    present = [f for f, m in zip(fnames, missing, strict=True) if not m]
    probs = np.tile(class_prior(data_root / paths.TRAIN_CSV, classes), (len(fnames), 1))
    if present:
        test_features = np.concatenate([clip_features([s.get(f, max_len) for f in present]) for s in stores], axis=1)
        probs[~missing] = _posteriors(model, test_features, len(classes))
    return classes, probs.astype(np.float32), missing
