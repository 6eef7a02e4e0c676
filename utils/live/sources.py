"""Live audio sources: blocks of int16 samples at 32 kHz with the wall-clock time they arrived.

Level: offline v2 rescales each clip to full int16 scale (madmom's norm=True) before framing, which needs the whole
clip. A file is known in full, so FileSource does the same rescaling by default and its stream reproduces the
offline spectrogram exactly. A microphone cannot: its features keep the recorded level (norm=False), so speak or
play near full scale for predictions comparable to the training data."""

import queue
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from utils.errors import InputError, StepFailed
from utils.live.features import HOP_SIZE, SAMPLE_RATE
from utils.spectrogram import normalize_int16, to_int16


class NoInputDevice(StepFailed):
    """No microphone to record from at a usable rate; the message says what to do instead."""



@dataclass
class Block:
    samples: np.ndarray  # int16, 32 kHz mono
    arrival: float       # time.perf_counter() when the last of these samples arrived


class FileSource:
    """A file played as a stream: speed 1 is real time, 2 twice as fast, 0 as fast as the reader asks.

    At speed > 0, read() waits until at least one block of new audio has 'arrived' by the wall clock, then returns
    everything that arrived meanwhile (a slow reader gets a larger block, not a backlog). At speed 0 it returns one
    block per call without waiting, so every due prediction is made (tests, benchmarks).
    """

    def __init__(self, path: str | Path, speed: float = 1.0, block: int = 4 * HOP_SIZE, normalize: bool = True,
                 room_seed: int | None = None):
        """room_seed: play the file through a simulated room and microphone drawn from this seed
        (utils/demo/room.py), a preview of what a microphone would hear; `chain` then describes it."""
        from utils.audio import load_audio

        if speed < 0:
            raise InputError(f"--speed must be >= 0, got {speed}")
        # read as tag_files.py and prepare_spectrograms.py read it (AudioError: the file and why); warnings, such
        # as a decoder's note on an odd MP3, are kept for the caller to print, each once
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            x = load_audio(path, SAMPLE_RATE, preprocess=False)
        self.warnings = list(dict.fromkeys(str(w.message) for w in caught))
        self.chain = None
        if room_seed is not None:
            from utils.demo.room import apply_chain, draw_chain

            rng = np.random.default_rng(room_seed)
            self.chain = draw_chain(rng)
            x = apply_chain(x, SAMPLE_RATE, self.chain, rng)
        x = to_int16(x)
        # The whole file is known, so it can be rescaled as offline v2 (madmom norm=True) rescales it.
        self.samples = normalize_int16(x) if normalize else x
        self.speed = speed
        self.block = block
        self.pos = 0
        self._t0: float | None = None

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        pass

    def read(self) -> Block | None:
        """The next block, or None at the end of the file."""
        if self.pos >= len(self.samples):
            return None
        if self._t0 is None:
            self.start()
        if self.speed == 0:
            end = min(self.pos + self.block, len(self.samples))
            arrival = time.perf_counter()
        else:
            rate = SAMPLE_RATE * self.speed
            target = min(self.pos + self.block, len(self.samples))
            due = self._t0 + target / rate
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
                now = time.perf_counter()
            arrived = int((now - self._t0) * rate)
            end = min(max(arrived, target), len(self.samples))
            arrival = self._t0 + end / rate
        out = Block(self.samples[self.pos:end], arrival)
        self.pos = end
        return out


def _import_sounddevice():
    try:
        import sounddevice as sd
    except OSError as e:  # the Python package is there but the PortAudio library is not
        raise NoInputDevice(f"cannot use the sound system ({e}); install libportaudio2, or tag a file with "
                            f"--input FILE.wav") from None
    return sd


def list_devices() -> str:
    """The sound devices PortAudio sees, as sounddevice prints them (or a line saying there are none)."""
    sd = _import_sounddevice()
    try:
        devices = sd.query_devices()
    except sd.PortAudioError as e:
        return f"no sound devices found ({e})"
    if len(devices) == 0:
        return "no sound devices found; tag a file with --input FILE.wav"
    return str(devices)


def parse_device(device: str | None) -> int | str | None:
    """--input_device as PortAudio wants it: an index (digits) or a name substring."""
    if device is None or device == "":
        return None
    return int(device) if device.strip().isdigit() else device


def check_microphone(device: int | str | None) -> tuple[dict[str, Any], int]:
    """The input device's info and the rate to record at: 32 kHz when it can, else its own rate >= 32 kHz
    (resampled on the fly). Raises NoInputDevice with what to do otherwise."""
    sd = _import_sounddevice()
    hint = "see --list_devices and pick one with --input_device, or tag a file with --input FILE.wav"
    try:
        info = sd.query_devices(device, kind="input")
    except (sd.PortAudioError, ValueError) as e:
        what = "no default input device" if device is None else f"no input device {device!r}"
        raise NoInputDevice(f"{what} ({str(e).strip() or 'none found'}); {hint}") from None
    if not info or info.get("max_input_channels", 0) < 1:
        raise NoInputDevice(f"device {device!r} cannot record; {hint}")
    index = info.get("index", device)
    try:
        sd.check_input_settings(index, channels=1, dtype="int16", samplerate=SAMPLE_RATE)
        return info, SAMPLE_RATE
    except (sd.PortAudioError, ValueError):
        pass
    rate = int(info.get("default_samplerate") or 0)
    # below 32 kHz the filterbank's top bands (up to 14 kHz) would be empty: features unlike the training data
    if rate < SAMPLE_RATE:
        raise NoInputDevice(f"device {info.get('name', device)!r} cannot record at {SAMPLE_RATE} Hz (its rate is "
                            f"{rate} Hz) and the model needs {SAMPLE_RATE} Hz; {hint}")
    try:
        sd.check_input_settings(index, channels=1, dtype="int16", samplerate=rate)
    except (sd.PortAudioError, ValueError) as e:
        raise NoInputDevice(f"device {info.get('name', device)!r} cannot record mono at {rate} Hz ({e}); "
                            f"{hint}") from None
    return info, rate


class MicSource:
    """The microphone through sounddevice: PortAudio's callback thread queues blocks, read() takes all queued.
    `overflows` counts the blocks PortAudio reported input lost before (the machine too busy to keep up)."""

    def __init__(self, device: int | str | None = None, block: int = 4 * HOP_SIZE):
        self.info, self.rate = check_microphone(device)
        self.device = self.info.get("index", device)
        self.block = block
        self._queue: queue.SimpleQueue[Block] = queue.SimpleQueue()
        self._resampler = None
        if self.rate != SAMPLE_RATE:
            import soxr

            self._resampler = soxr.ResampleStream(self.rate, SAMPLE_RATE, 1, dtype="float32")
        self._stream = None
        self._started = False
        self.overflows = 0

    def _callback(self, indata, frames, time_info, status) -> None:  # PortAudio's thread: copy and return
        if status.input_overflow:
            self.overflows += 1
        self._queue.put(Block(indata[:, 0].copy(), time.perf_counter()))

    def start(self) -> None:
        sd = _import_sounddevice()
        try:
            self._stream = sd.InputStream(device=self.device, channels=1, samplerate=self.rate, dtype="int16",
                                          blocksize=int(self.block * self.rate / SAMPLE_RATE),
                                          callback=self._callback)
            self._stream.start()
        except sd.PortAudioError as e:
            raise NoInputDevice(f"cannot open input device {self.info.get('name')!r} ({e}); see --list_devices, "
                                f"or tag a file with --input FILE.wav") from None

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None

    def read(self, timeout: float = 2.0) -> Block | None:
        """Everything recorded since the last call (waiting for at least one block). The first block may take
        longer: a sound server's idle input can start seconds late (a PulseAudio null sink took up to 1.8 s)."""
        try:
            blocks = [self._queue.get(timeout=timeout if self._started else max(timeout, 5.0))]
            self._started = True
        except queue.Empty:
            raise NoInputDevice("the input device delivers no audio; see --list_devices, or tag a file with "
                                "--input FILE.wav") from None
        while True:
            try:
                blocks.append(self._queue.get_nowait())
            except queue.Empty:
                break
        samples = np.concatenate([b.samples for b in blocks])
        if self._resampler is not None:
            samples = to_int16(self._resampler.resample_chunk(samples.astype(np.float32) / 32768.0))
        return Block(samples, blocks[-1].arrival)
