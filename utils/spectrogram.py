"""The seed's two spectrogram versions, each (128 bins, frames) float32 from a 32 kHz mono signal.

Version 1: librosa STFT (hop 192), perceptually weighted power, 128-band mel filterbank; the writeup's code.
Version 2: a numpy port of madmom 0.16.1's chain (madmom no longer imports on Python 3.11 / numpy 2):
    SignalProcessor(num_channels=1, sample_rate=32000, norm=True)
    FramedSignalProcessor(frame_size=1024, hop_size=128, origin='future')
    SpectrogramProcessor(frame_size=1024)
    LogarithmicFilteredSpectrogramProcessor(filterbank=LogFilterbank, num_bands=26, fmin=20, fmax=14000)
It is split so a live (streaming) tagger can reuse the per-frame part, v2_frames_to_spectrogram, on frames
it cuts itself; only the whole-signal steps (peak normalisation, framing) differ online.
"""

import functools
from pathlib import Path

import numpy as np

from utils.audio import TARGET_SR, load_audio
from utils.errors import InputError

N_BINS = 128

V1_PARAMS = {
    "sample_rate": TARGET_SR, "n_fft": 1024, "hop_length": 192, "window": "hann", "center": True,
    # librosa 0.11 pads with zeros by default; the seed (librosa 0.6) padded by reflection.
    "pad_mode": "reflect",
    "perceptual_weighting": {"kind": "A", "ref": 1.0, "amin": 1e-10, "top_db": 99.0},
    "n_mels": N_BINS, "fmin": 0.0, "fmax": TARGET_SR / 2,
}

V2_PARAMS = {
    "sample_rate": TARGET_SR, "frame_size": 1024, "hop_size": 128, "origin": "future", "norm": True,
    "window": "np.hanning / 32767", "fft_bins": 512,
    "filterbank": {"kind": "LogFilterbank", "num_bands": 26, "fmin": 20.0, "fmax": 14000.0, "fref": 440.0,
                   "norm_filters": True, "unique_filters": True},
    "log": "log10(1 + x)",
}

_INT16_MAX = float(np.iinfo(np.int16).max)


def spectrogram_params(version: int) -> dict:
    """All settings that decide a version's output, for manifests."""
    if version == 1:
        return dict(V1_PARAMS)
    if version == 2:
        return dict(V2_PARAMS)
    raise InputError(f"unknown spectrogram version {version!r}; expected 1 or 2")


def compute_spectrogram(signal: np.ndarray, version: int, norm: bool = True) -> np.ndarray:
    """(128, frames) float32 spectrogram of a mono 32 kHz signal (float in [-1, 1] or int16).

    norm only affects version 2 (madmom's peak normalisation); version 1 is scale-dependent as the seed was.
    """
    signal = np.asarray(signal)
    if signal.ndim != 1:
        raise InputError(f"expected a mono signal (1-D), got shape {signal.shape}")
    if len(signal) == 0:
        raise InputError("cannot compute a spectrogram of an empty signal")
    if version == 1:
        return spectrogram_v1(signal)
    if version == 2:
        return spectrogram_v2(signal, norm=norm)
    raise InputError(f"unknown spectrogram version {version!r}; expected 1 or 2")


def spectrogram_from_file(path: str | Path, version: int, preprocess: bool = True) -> np.ndarray:
    """The whole per-file pipeline: SoX silence clipping (optional), 32 kHz mono, spectrogram."""
    spectrogram_params(version)  # fail on a bad version before running SoX
    return compute_spectrogram(load_audio(path, TARGET_SR, preprocess=preprocess), version)


# ---- version 1 ---------------------------------------------------------------------------------------

def spectrogram_v1(signal: np.ndarray) -> np.ndarray:
    import librosa  # heavy import, kept out of module import time

    p = V1_PARAMS
    if np.issubdtype(signal.dtype, np.integer):
        signal = signal.astype(np.float32) / np.float32(-np.iinfo(signal.dtype).min)
    stft = np.abs(librosa.stft(signal, n_fft=p["n_fft"], hop_length=p["hop_length"], window=p["window"],
                               center=p["center"], pad_mode=p["pad_mode"]))
    w = p["perceptual_weighting"]
    # librosa.perceptual_weighting(S, freqs, ...) = its frequency weights + power_to_db(S, ...), with the weights
    # recomputed on every call; they are computed once here
    weighted = _perceptual_weights()[:, None] + librosa.power_to_db(stft ** 2, ref=w["ref"], amin=w["amin"],
                                                                     top_db=w["top_db"])
    # The seed applies the mel filterbank to the dB-weighted values (not to power); kept as it was.
    mel = np.einsum("...ft,mf->...mt", weighted, _mel_basis(), optimize=True)
    return mel.astype(np.float32)


@functools.cache
def _perceptual_weights() -> np.ndarray:
    import librosa

    p = V1_PARAMS
    freqs = librosa.fft_frequencies(sr=p["sample_rate"], n_fft=p["n_fft"])
    with np.errstate(divide="ignore"):  # A-weighting takes log10(0) at 0 Hz, then clips it to min_db
        weights = librosa.frequency_weighting(freqs, kind=p["perceptual_weighting"]["kind"])
    weights.flags.writeable = False
    return weights


@functools.cache
def _mel_basis() -> np.ndarray:
    # librosa.feature.melspectrogram(S=...) builds this same matrix on every call; build it once.
    import librosa

    p = V1_PARAMS
    basis = librosa.filters.mel(sr=p["sample_rate"], n_fft=p["n_fft"], n_mels=p["n_mels"], fmin=p["fmin"],
                                fmax=p["fmax"])
    basis.flags.writeable = False
    return basis


# ---- version 2 (madmom port) -------------------------------------------------------------------------

def spectrogram_v2(signal: np.ndarray, norm: bool = True) -> np.ndarray:
    """madmom's log-filtered spectrogram of a whole signal, as (128, frames) float32.

    Like madmom, the signal is int16 first (madmom decodes files to int16); a float signal in [-1, 1] is
    rounded to int16. norm=True rescales the clip so its peak is full int16 scale, which needs the whole
    clip: an online stream cannot do it, so the live tagger passes norm=False (its frames then keep their
    recorded level). A silent clip is left as it is (madmom would divide by zero).
    """
    x = to_int16(signal)
    if norm:
        x = normalize_int16(x)
    frames = frame_signal(x.astype(np.float64) / _INT16_MAX, V2_PARAMS["frame_size"], V2_PARAMS["hop_size"])
    return v2_frames_to_spectrogram(frames).T.copy()


def to_int16(signal: np.ndarray) -> np.ndarray:
    """int16 as a decoder (ffmpeg, wav reader) hands madmom: float scaled by 32768, rounded, clipped."""
    if signal.dtype == np.int16:
        return signal
    if np.issubdtype(signal.dtype, np.integer):
        shift = 8 * signal.dtype.itemsize - 16
        return (signal.astype(np.int64) >> shift).astype(np.int16) if shift > 0 else signal.astype(np.int16)
    return np.clip(np.round(signal.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def normalize_int16(x: np.ndarray) -> np.ndarray:
    """madmom.audio.signal.normalize for int16: peak to 32767, truncating toward zero as astype does."""
    peak = float(np.max(np.abs(x.astype(np.int32))))
    if peak == 0:
        return x
    return (x / (peak / _INT16_MAX)).astype(np.int16)


def frame_signal(x: np.ndarray, frame_size: int = 1024, hop_size: int = 128) -> np.ndarray:
    """madmom's FramedSignal with origin='future': frame i = x[i*hop : i*hop + frame_size], zero-padded,
    ceil(len / hop) frames. Returns a read-only strided view over one padded copy, (frames, frame_size)."""
    n_frames = -(-len(x) // hop_size)
    padded = np.zeros((n_frames - 1) * hop_size + frame_size, dtype=x.dtype)
    padded[:len(x)] = x[:len(padded)]
    return np.lib.stride_tricks.sliding_window_view(padded, frame_size)[::hop_size]


def v2_frames_to_spectrogram(frames: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """The frame-level part of v2: (frames, 1024) float, full scale 1.0 (int16 / 32767) ->
    (frames, 128) float32 = log10(1 + |rfft(frame * hann)|[:512] @ filterbank). Online code calls this."""
    window = _hann()
    fb = log_filterbank()
    out = np.empty((len(frames), fb.shape[1]), dtype=np.float32)
    for start in range(0, len(frames), chunk):  # bounds the float64 FFT buffer for long clips
        block = frames[start:start + chunk] * window
        # madmom keeps the STFT as complex64 and its magnitude as float32, hence the float32 casts.
        spec = np.abs(np.fft.rfft(block, axis=-1)[:, :V2_PARAMS["fft_bins"]].astype(np.complex64))
        out[start:start + chunk] = np.log10(np.float32(1) + spec @ fb)
    return out


@functools.cache
def _hann() -> np.ndarray:
    w = np.hanning(V2_PARAMS["frame_size"])
    w.flags.writeable = False
    return w


@functools.cache
def log_filterbank() -> np.ndarray:
    """madmom's LogarithmicFilterbank at the v2 settings: (512 FFT bins, 128 bands) float32."""
    p = V2_PARAMS["filterbank"]
    n_bins = V2_PARAMS["fft_bins"]
    bin_freqs = np.fft.fftfreq(V2_PARAMS["frame_size"], 1.0 / V2_PARAMS["sample_rate"])[:n_bins]
    # log_frequencies: fref * 2**(k/bands) over whole-band indices covering [fmin, fmax].
    bands = p["num_bands"]
    left = np.floor(np.log2(p["fmin"] / p["fref"]) * bands)
    right = np.ceil(np.log2(p["fmax"] / p["fref"]) * bands)
    freqs = p["fref"] * 2.0 ** (np.arange(left, right) / float(bands))
    freqs = freqs[np.searchsorted(freqs, p["fmin"]):]
    freqs = freqs[:np.searchsorted(freqs, p["fmax"], "right")]
    # frequencies2bins: nearest FFT bin (ties to the lower one), duplicates dropped.
    idx = np.clip(bin_freqs.searchsorted(freqs), 1, n_bins - 1)
    idx -= freqs - bin_freqs[idx - 1] < bin_freqs[idx] - freqs
    bins = np.unique(idx)
    fb = np.zeros((n_bins, len(bins) - 2), dtype=np.float32)
    for band, (start, center, stop) in enumerate(zip(bins[:-2], bins[1:-1], bins[2:], strict=True)):
        if stop - start < 2:  # too narrow for a triangle: a single bin
            center, stop = start, start + 1
        tri = np.concatenate([np.linspace(0, 1, center - start, endpoint=False),
                              np.linspace(1, 0, stop - center, endpoint=False)]).astype(np.float32)
        tri /= np.sum(tri)
        # Overlapping filters keep the larger value, as madmom's Filterbank.from_filters does.
        fb[start:stop, band] = np.maximum(fb[start:stop, band], tri)
    fb.flags.writeable = False
    return fb
