"""Small signal makers shared by the test files (fixtures live in conftest.py)."""

import numpy as np


def tone(seconds: float, sr: int = 32000, freq: float = 440.0, amp: float = 0.5, channels: int = 1) -> np.ndarray:
    """A float32 sine, (samples,) or (samples, channels); extra channels at half amplitude, so a mono mix differs
    from any single channel."""
    t = np.arange(int(seconds * sr)) / sr
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return x if channels == 1 else np.stack([x] + [0.5 * x] * (channels - 1), axis=1)


def write_train_csv(root, classes=("Flute", "Trumpet"), verified=4, unverified=4) -> None:
    """A data root's train.csv alone: what a schedule needs to know its folds (4, made on first use)."""
    from pathlib import Path

    Path(root).mkdir(parents=True, exist_ok=True)
    rows = [f"{c}_{flag}_{i}.wav,{c},{flag}" for c in classes
            for flag, n in ((1, verified), (0, unverified)) for i in range(n)]
    (Path(root) / "train.csv").write_text("fname,label,manually_verified\n" + "\n".join(rows) + "\n")
