"""Class names: a label encoder for whatever classes a data set has, and FSDKaggle2018's list, which only checks
that data set's own files (import_dataset.py fsdkaggle2018)."""

from collections.abc import Iterable, Sequence

import numpy as np

from utils.errors import InputError

FSDKAGGLE2018_CLASSES = (
    "Acoustic_guitar", "Applause", "Bark", "Bass_drum", "Burping_or_eructation", "Bus", "Cello", "Chime",
    "Clarinet", "Computer_keyboard", "Cough", "Cowbell", "Double_bass", "Drawer_open_or_close",
    "Electric_piano", "Fart", "Finger_snapping", "Fireworks", "Flute", "Glockenspiel", "Gong",
    "Gunshot_or_gunfire", "Harmonica", "Hi-hat", "Keys_jangling", "Knock", "Laughter", "Meow",
    "Microwave_oven", "Oboe", "Saxophone", "Scissors", "Shatter", "Snare_drum", "Squeak", "Tambourine",
    "Tearing", "Telephone", "Trumpet", "Violin_or_fiddle", "Writing",
)


class LabelEncoder:
    """Maps class names to indices. The class list comes from the training CSV and is stored with every model,
    so a model predicts the classes of the data it was trained on, whatever their names."""

    def __init__(self, classes: Sequence[str]):
        empty = [c for c in classes if not str(c).strip()]
        if empty:
            raise InputError("a class name is empty")
        if len(classes) < 2:
            raise InputError(f"need at least 2 classes, got {len(classes)}: {', '.join(map(repr, classes))}")
        if len(set(classes)) != len(classes):
            raise InputError("duplicated class names")
        self.classes = list(classes)
        self._index = {c: i for i, c in enumerate(self.classes)}

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> "LabelEncoder":
        return cls(sorted(set(labels)))

    def __len__(self) -> int:
        return len(self.classes)

    def encode(self, labels: Iterable[str]) -> np.ndarray:
        try:
            return np.array([self._index[label] for label in labels], dtype=np.int64)
        except KeyError as e:
            raise InputError(f"label {e.args[0]!r} is not among this model's {len(self)} classes") from None

    def decode(self, indices: Iterable[int]) -> list[str]:
        return [self.classes[int(i)] for i in indices]
