"""Reading audio robustly, and the seed's SoX silence clipping.

Every failure a single file can cause (missing, empty, too short, corrupt, not audio, SoX refusing it) is raised
as AudioError with the file's name in the message, so a batch run can report it in one line and go on.

libsndfile decodes every file, whatever its extension says (it reads the format from the header): a .wav that
holds MP3 or FLAC is read as what it is. SoX only trims; it is handed the decoded samples, because it would pick
its reader from the extension and refuse such a file ("WAVE: RIFF header not found").
"""

import contextlib
import functools
import io
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from utils.errors import FsdtagError

TARGET_SR = 32000
# what every entry point reads (prepare_spectrograms.py, import_dataset.py, tag_files.py): libsndfile's formats
AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc"}

# The seed's exact chain: normalise, cut leading silence, normalise again, then cut trailing silence by
# cutting the leading silence of the reversed signal.
SOX_EFFECTS = ("norm", "-0.1", "silence", "1", "0.025", "0.15%",
               "norm", "-0.1", "reverse", "silence", "1", "0.025", "0.15%", "reverse")

# soundfile subtype of the input -> (sox encoding, bits, soundfile subtype of the raw stream SoX writes).
# SoX writes the seed's temporary wav at the input's bit depth (dithered when it shrinks from SoX's 32-bit
# internal samples), so piping at that same depth gives bit-identical samples without the temp file; soundfile
# decodes the raw stream as it decodes that wav (ints scaled by 1/2^(bits-1) to [-1, 1)).
_PIPE_FORMATS = {
    "PCM_U8": ("signed-integer", 8, "PCM_S8"),
    "PCM_S8": ("signed-integer", 8, "PCM_S8"),
    "PCM_16": ("signed-integer", 16, "PCM_16"),
    "PCM_24": ("signed-integer", 24, "PCM_24"),
    "PCM_32": ("signed-integer", 32, "PCM_32"),
    "FLOAT": ("floating-point", 32, "FLOAT"),
    "DOUBLE": ("floating-point", 64, "DOUBLE"),
}
_DEFAULT_PIPE = _PIPE_FORMATS["PCM_16"]
_STDERR_LOCK = threading.RLock()  # decoder_messages redirects the process's fd 2, one thread at a time


class AudioError(FsdtagError):
    """A file that cannot be turned into a signal; the message names the file."""


class AudioWarning(UserWarning):
    """Something worth telling the user about a file that was still processed."""


def audio_info(path: str | Path) -> sf._SoundFileInfo:
    """Header of an audio file long enough for a spectrogram, or AudioError saying why there is none."""
    path = Path(path)
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    if not path.is_file():
        raise AudioError(f"{path}: file not found")
    try:
        with decoder_messages(path):
            info = sf.info(str(path))
    except Exception as e:  # libsndfile reports junk and truncated headers in many ways
        raise AudioError(f"{path}: not a readable audio file ({_one_line(e)})") from None
    check_length(path, info.frames, info.samplerate)
    return info


@contextlib.contextmanager
def decoder_messages(path: str | Path) -> Iterator[None]:
    """libsndfile's MP3 decoder (libmpg123) prints its notes on odd files straight to the process's stderr, naming
    no file ("Warning: Xing stream size off by more than 1%"): they are caught here and passed on as one
    AudioWarning that names the file, which the scripts report with the file's other warnings. fd 2 belongs to
    the whole process, so threads take turns."""
    with _STDERR_LOCK, tempfile.TemporaryFile() as caught:
        if sys.stderr is not None:
            sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all (closed by a daemon): nothing to catch
            saved = None
        if saved is not None:
            os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            if saved is not None:
                os.dup2(saved, 2)
                os.close(saved)
        caught.seek(0)
        text = caught.read().decode(errors="replace").split("\n")
    notes = list(dict.fromkeys(line.strip() for line in text if line.strip()))  # each note once
    if notes:
        warnings.warn(f"{path}: the decoder says: {'; '.join(notes)}", AudioWarning, stacklevel=3)


def min_samples(sr: int) -> int:
    """The fewest samples at rate sr that resample to one whole spectrogram frame at 32 kHz (v1's n_fft, v2's
    frame size): a shorter clip would be padded out past its end, and librosa warns about it."""
    from utils.spectrogram import V1_PARAMS, V2_PARAMS  # a call-time import: utils.spectrogram imports this module

    frame = max(V1_PARAMS["n_fft"], V2_PARAMS["frame_size"])
    # resampling gives ceil(n * TARGET_SR / sr) samples (librosa.resample's length)
    return (frame - 1) * sr // TARGET_SR + 1


def check_length(path: str | Path, n: int, sr: int) -> None:
    """AudioError unless n samples at rate sr are enough for a spectrogram."""
    if n == 0:
        raise AudioError(f"{path}: empty audio file (0 samples)")
    need = min_samples(sr)
    if n < need:
        raise AudioError(f"{path}: too short to tag: {n} sample{'s' if n > 1 else ''} ({1000 * n / sr:.3g} ms at "
                         f"{sr} Hz); a spectrogram needs at least {need} ({1000 * need / sr:.0f} ms)")


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """(samples, channels) float32 in [-1, 1], and the sample rate; like librosa.load before resampling."""
    return _decode(path, audio_info(path), "float32")


def _decode(path: str | Path, info: sf._SoundFileInfo, dtype: str) -> tuple[np.ndarray, int]:
    """(samples, channels) as dtype and the rate; the decoded length is checked too, as a header can be wrong."""
    try:
        with decoder_messages(path):
            signal, sr = sf.read(str(path), dtype=dtype, always_2d=True)
    except Exception as e:
        raise AudioError(f"{path}: cannot decode audio ({_one_line(e)})") from None
    check_length(path, len(signal), sr)
    if signal.dtype.kind == "f":
        _check_finite(path, signal)
    return signal, sr


def _check_finite(path: str | Path, signal: np.ndarray) -> None:
    """NaN/inf samples (only float wavs can hold them) would become NaN spectrograms, or, through SoX, a
    full-scale block of noise without a word: refuse the file instead."""
    bad = ~np.isfinite(signal)
    if bad.any():
        first = int(np.argmax(bad.any(axis=1) if bad.ndim == 2 else bad))
        raise AudioError(f"{path}: {int(bad.sum())} NaN/inf sample(s) (the first at sample {first}); "
                         f"not a valid audio signal")


@functools.cache
def _which(binary: str) -> str | None:
    return shutil.which(binary)


def sox_clip_silence(path: str | Path, sox_binary: str = "sox") -> tuple[np.ndarray, int]:
    """Run the seed's SoX chain on a file; (samples, channels) float32 and the (unchanged) sample rate.

    The output is piped back as raw samples instead of written to a temporary wav. Run with -R (repeatable)
    so the dither SoX adds when it writes 8/16-bit samples is the same on every run: outputs are
    reproducible, and equal to `sox -R in.wav tmp.wav <effects>` read back with soundfile.
    A clip that SoX trims to nothing comes back with zero samples; load_audio decides what to do then.

    SoX reads the samples libsndfile decoded, as raw 32-bit integers for PCM (exactly SoX's own 32-bit samples
    of a PCM file, so the output is what SoX makes of the file itself) and as doubles for the rest.
    """
    info = audio_info(path)
    encoding, bits, raw_subtype = _PIPE_FORMATS.get(info.subtype, _DEFAULT_PIPE)
    if _which(sox_binary) is None:
        raise AudioError(f"{path}: the SoX binary '{sox_binary}' is not installed (apt-get install sox)")
    pcm = info.subtype.startswith("PCM_")
    # decoded here, NaN/inf are refused first: SoX would silently turn them into full-scale samples
    samples, _ = _decode(path, info, "int32" if pcm else "float64")
    # norm and reverse spool the whole clip to temporary files: keep those in RAM where the system offers it
    temp = ["--temp", "/dev/shm"] if os.access("/dev/shm", os.W_OK) else []
    cmd = [sox_binary, "-R", "-V1", *temp,
           "-t", "raw", "-e", "signed-integer" if pcm else "floating-point", "-b", str(32 if pcm else 64),
           "-c", str(info.channels), "-r", str(info.samplerate), "-",
           "-t", "raw", "-e", encoding, "-b", str(bits), "-c", str(info.channels), "-",
           *SOX_EFFECTS]
    # a memoryview, not .tobytes(): a long recording is not copied once more
    proc = subprocess.run(cmd, input=memoryview(np.ascontiguousarray(samples)).cast("B"), capture_output=True)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(f"{path}: sox failed ({msg[-1] if msg else f'exit status {proc.returncode}'})")
    # a trailing partial frame (never seen from SoX) is dropped; a clip trimmed to nothing reads as (0, channels)
    signal, _ = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True, format="RAW", subtype=raw_subtype,
                        samplerate=info.samplerate, channels=info.channels, endian="LITTLE")
    return signal, info.samplerate


def to_mono(signal: np.ndarray) -> np.ndarray:
    """(samples,) of a (samples,) or (samples, channels) float signal: librosa.to_mono, which averages the
    channels of (channels, samples). Callers refuse NaN/inf first (read_audio), as librosa would only raise
    its own ParameterError naming no file."""
    if signal.ndim == 1:
        return signal
    if signal.shape[1] == 1:  # nothing to average; spares the librosa import (seconds) for mono files
        return signal[:, 0]
    import librosa  # slow to import; only needed for multi-channel files

    return librosa.to_mono(signal.T)


def resample(signal: np.ndarray, sr: int, target_sr: int = TARGET_SR) -> np.ndarray:
    """librosa.load's own resampler (soxr_hq, length fixed to ceil(n * ratio)), so v1 matches the seed."""
    if sr == target_sr:
        return signal
    import librosa  # slow to import; only needed when rates differ

    return librosa.resample(signal, orig_sr=sr, target_sr=target_sr, res_type="soxr_hq")


def load_audio(path: str | Path, sr: int = TARGET_SR, preprocess: bool = True) -> np.ndarray:
    """Mono float32 signal at sr, silence-clipped by SoX unless preprocess is False.

    A clip SoX trims to nothing or to less than one spectrogram frame (all silent, or quieter than its threshold
    nearly throughout) keeps its unclipped audio, with an AudioWarning, rather than becoming an empty or a
    padded-out spectrogram.
    """
    signal = None
    if preprocess:
        signal, file_sr = sox_clip_silence(path)
        if len(signal) < min_samples(file_sr):
            left = "the whole clip" if len(signal) == 0 else f"all but {len(signal)} samples of the clip"
            warnings.warn(f"{path}: SoX trimmed {left} as silence; keeping it unclipped", AudioWarning,
                          stacklevel=2)
            signal = None
    if signal is None:
        signal, file_sr = read_audio(path)
    return resample(to_mono(signal), file_sr, sr)


def sox_version(sox_binary: str = "sox") -> str:
    """'SoX v14.4.2', or 'not installed'; recorded in manifests because trimming depends on it."""
    if shutil.which(sox_binary) is None:
        return "not installed"
    proc = subprocess.run([sox_binary, "--version"], capture_output=True, text=True)
    return proc.stdout.strip().split(":")[-1].strip() or "unknown"


def _one_line(e: Exception) -> str:
    text = str(e).strip().replace("\n", " ")
    return text or type(e).__name__
