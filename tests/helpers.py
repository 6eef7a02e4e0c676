"""Small signal makers shared by the test files (fixtures live in conftest.py)."""

import numpy as np


def tone(seconds: float, sr: int = 32000, freq: float = 440.0, amp: float = 0.5, channels: int = 1) -> np.ndarray:
    """A float32 sine, (samples,) or (samples, channels); extra channels at half amplitude, so a mono mix differs
    from any single channel."""
    t = np.arange(int(seconds * sr)) / sr
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return x if channels == 1 else np.stack([x] + [0.5 * x] * (channels - 1), axis=1)
