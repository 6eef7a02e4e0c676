"""Augmentations of training excerpts for small data sets (settings of the model file, off in the writeup's recipe):
SpecAugment-style frequency and time masks, and a random gain.

Every random number is drawn on the host from the batch's generator (after the excerpts' start frames, before the
mixup weights), and applied to the batch where it is, by the same tensor code on either data path: so the host and
the device paths cut the same augmented batches, and a resumed run draws what an unbroken one did. With every
augmentation off nothing is drawn, so the writeup's recipe keeps its exact batches."""

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from utils.errors import InputError

MASK_KEYS = (("freq_masks", "freq_mask_bins"), ("time_masks", "time_mask_frames"))


@dataclass
class AugmentDraws:
    """One batch's draws: mask starts and widths (n, masks) per axis, and gains in dB (n,)."""
    freq: tuple[np.ndarray, np.ndarray]
    time: tuple[np.ndarray, np.ndarray]
    gain_db: np.ndarray


def check_augment(settings: dict[str, Any]) -> None:
    """Refuse settings that cannot work, in one line."""
    for count, width in MASK_KEYS:
        if settings[count] < 0 or settings[width] < 0:
            raise InputError(f"{count} and {width} must be at least 0, got {settings[count]} and {settings[width]}")
    if settings["gain_db"] < 0:
        raise InputError(f"gain_db must be at least 0, got {settings['gain_db']}")
    if settings["gain_db"] and settings["spec_version"] != 1:
        raise InputError("gain_db needs spectrogram version 1: version 2 is peak-normalised, so a gain changes nothing")


def augments(settings: dict[str, Any]) -> bool:
    return any(settings[count] and settings[width] for count, width in MASK_KEYS) or settings["gain_db"] > 0


def _mask_draws(rng: np.random.Generator, n: int, masks: int, max_width: int, size: int
                ) -> tuple[np.ndarray, np.ndarray]:
    if not (masks and max_width):
        return np.zeros((n, 0), np.int64), np.zeros((n, 0), np.int64)
    widths = rng.integers(0, min(max_width, size) + 1, size=(n, masks))
    starts = rng.integers(0, size - widths + 1)  # each mask inside the excerpt
    return starts, widths


def draw_augment(rng: np.random.Generator, n: int, bins: int, frames: int, settings: dict[str, Any]) -> AugmentDraws:
    freq = _mask_draws(rng, n, settings["freq_masks"], settings["freq_mask_bins"], bins)
    time = _mask_draws(rng, n, settings["time_masks"], settings["time_mask_frames"], frames)
    g = settings["gain_db"]
    gain = rng.uniform(-g, g, size=n).astype(np.float32) if g > 0 else np.zeros(n, np.float32)
    return AugmentDraws(freq, time, gain)


def _axis_mask(starts: np.ndarray, widths: np.ndarray, size: int, device: torch.device) -> torch.Tensor:
    """(n, size) bool: True inside any of a sample's masks."""
    pos = torch.arange(size, device=device)
    s = torch.from_numpy(starts).to(device)[:, :, None]
    w = torch.from_numpy(widths).to(device)[:, :, None]
    return ((pos >= s) & (pos < s + w)).any(dim=1)


def band_gain(spec_version: int) -> torch.Tensor:
    """(bins,) what a gain of 1 dB adds to each band of a spectrogram: version 1 sums dB values through the mel
    filterbank, so each band moves by its filter's weight sum."""
    from utils.spectrogram import _mel_basis

    if spec_version != 1:
        raise InputError("a gain needs spectrogram version 1")
    return torch.from_numpy(_mel_basis().sum(axis=1).astype(np.float32))


def apply_augment(x: torch.Tensor, draws: AugmentDraws, gain_per_db: torch.Tensor | None) -> torch.Tensor:
    """x (n, 1, bins, frames) masked (to each excerpt's mean) and shifted by its gain."""
    n, _, bins, frames = x.shape
    if draws.freq[0].shape[1] or draws.time[0].shape[1]:
        mask = _axis_mask(*draws.freq, bins, x.device)[:, :, None] | _axis_mask(*draws.time, frames, x.device)[:, None]
        x = torch.where(mask[:, None], x.mean(dim=(2, 3), keepdim=True), x)
    if gain_per_db is not None:
        gain = torch.from_numpy(draws.gain_db).to(x.device)
        x = x + gain.view(n, 1, 1, 1) * gain_per_db.to(x.device).view(1, 1, bins, 1)
    return x
