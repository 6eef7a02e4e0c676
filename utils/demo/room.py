"""A recorded-like chain: what lies between a sound and a microphone's samples, drawn at random per clip.

Room reverb (size, wetness, damping), microphone colouring (band limits and one resonance), level, light
compression or soft clipping, and background noise at a signal-to-noise ratio. The effects are pedalboard's
(Spotify's JUCE wrappers: compiled, and a pure function of their parameters, so a chain drawn from a seeded
generator gives the same samples on every run); the noise is numpy's, from the same generator.
"""

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Chain:
    room_size: float      # 0..1, pedalboard Reverb
    wet: float            # share of reverberant sound
    damping: float        # high-frequency absorption of the room
    highpass_hz: float    # the microphone's low cut
    lowpass_hz: float     # its high cut
    peak_hz: float        # one resonance of its capsule or housing
    peak_db: float
    gain_db: float        # recording level
    squash: str           # 'compressor', 'clipping' or 'none'
    snr_db: float         # background noise below the signal's RMS
    noise: str            # its colour: 'white' (hiss) or 'pink' (rumble, air handling)

    def describe(self) -> str:
        """One line for sources.csv."""
        def short(v: float | str) -> str:
            return f"{v:.3f}".rstrip("0").rstrip(".") if isinstance(v, float) else v

        return ";".join(f"{k}={short(v)}" for k, v in asdict(self).items())


def draw_chain(rng: np.random.Generator) -> Chain:
    """Parameters of a plausible recording: small to large rooms, phone to studio microphones, 5-40 dB SNR."""
    return Chain(room_size=float(rng.uniform(0.1, 0.8)), wet=float(rng.uniform(0.05, 0.4)),
                 damping=float(rng.uniform(0.2, 0.8)), highpass_hz=float(rng.uniform(40, 300)),
                 lowpass_hz=float(rng.uniform(4000, 15000)), peak_hz=float(rng.uniform(800, 5000)),
                 peak_db=float(rng.uniform(-6, 6)), gain_db=float(rng.uniform(-12, 0)),
                 squash=str(rng.choice(["compressor", "clipping", "none"])), snr_db=float(rng.uniform(5, 40)),
                 noise=str(rng.choice(["white", "pink"])))


def noise(rng: np.random.Generator, shape: tuple[int, ...], colour: str, sr: int) -> np.ndarray:
    """Unit-RMS noise of shape (samples, ...): white, or pink (1/f power, flat below 20 Hz)."""
    white = rng.standard_normal(shape).astype(np.float32)
    if colour == "white":
        return white
    spec = np.fft.rfft(white, axis=0)
    f = np.fft.rfftfreq(shape[0], 1.0 / sr).reshape(-1, *([1] * (len(shape) - 1)))
    spec /= np.sqrt(np.maximum(f, 20.0))
    pink = np.fft.irfft(spec, n=shape[0], axis=0).astype(np.float32)
    return pink / (np.sqrt(np.mean(np.square(pink, dtype=np.float64))) + 1e-12).astype(np.float32)


def apply_chain(signal: np.ndarray, sr: int, chain: Chain, rng: np.random.Generator) -> np.ndarray:
    """signal: (samples,) or (samples, channels) float in [-1, 1] -> the same shape, as recorded through
    `chain`, within [-1, 1]."""
    from pedalboard import (
        Clipping,
        Compressor,
        Gain,
        HighpassFilter,
        LowpassFilter,
        PeakFilter,
        Pedalboard,
        Reverb,
    )

    board = [Reverb(room_size=chain.room_size, wet_level=chain.wet, dry_level=1 - chain.wet, damping=chain.damping),
             HighpassFilter(cutoff_frequency_hz=chain.highpass_hz),
             LowpassFilter(cutoff_frequency_hz=min(chain.lowpass_hz, 0.45 * sr)),
             PeakFilter(cutoff_frequency_hz=chain.peak_hz, gain_db=chain.peak_db, q=1.0),
             Gain(gain_db=chain.gain_db)]
    if chain.squash == "compressor":
        board.append(Compressor(threshold_db=-18, ratio=3))
    elif chain.squash == "clipping":
        board.append(Clipping(threshold_db=-3))
    x = np.asarray(signal, dtype=np.float32)
    frames = x.reshape(len(x), -1).T  # pedalboard takes (channels, samples)
    x = Pedalboard(board)(np.ascontiguousarray(frames), sr).T.reshape(x.shape)
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    if rms > 0:  # silence stays silent: there is no level to put the noise under
        x = x + noise(rng, x.shape, chain.noise, sr) * np.float32(rms * 10 ** (-chain.snr_db / 20))
    return np.clip(x, -1.0, 1.0)
