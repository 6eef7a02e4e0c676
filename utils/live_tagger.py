"""The live audio tagger: a stream of samples in, v2 features frame by frame, a class posterior every k frames.

Pieces, each usable on its own (the benchmark and the tests drive them directly):
- OnlineV2: the features of prepare_spectrograms.py --spec_version 2 --no_preprocessing, computed as samples
  arrive, by the same per-frame code (utils.spectrogram.v2_frames_to_spectrogram) on the same framing (frame
  1024, hop 128, 32 kHz, madmom's origin='future', zero-padded end on flush).
- FileSource / MicSource: blocks of int16 samples at 32 kHz with the wall-clock time they arrived.
- LiveTagger: a rolling window of the newest `window` frames, and the scheduling rule: a prediction is due every
  k frames; when the model is slower than the stream, only the newest window is predicted and the due
  predictions in between are counted as skipped (never queued, so the tagger never falls behind the audio).
- Predictors (torch eager, torch optimised, ONNX Runtime) and the views (terminal line, matplotlib figure).

Level: offline v2 rescales each clip to full int16 scale (madmom's norm=True) before framing, which needs the whole
clip. A file is known in full, so FileSource does the same rescaling by default and its stream reproduces the
offline spectrogram exactly. A microphone cannot: its features keep the recorded level (norm=False), so speak or
play near full scale for predictions comparable to the training data.
"""

import queue
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from utils.predict import softmax
from utils.spec_data import fix_length
from utils.spectrogram import N_BINS, V2_PARAMS, normalize_int16, to_int16, v2_frames_to_spectrogram

SAMPLE_RATE = V2_PARAMS["sample_rate"]
FRAME_SIZE = V2_PARAMS["frame_size"]
HOP_SIZE = V2_PARAMS["hop_size"]
FRAMES_PER_SECOND = SAMPLE_RATE / HOP_SIZE  # 250
_INT16_MAX = float(np.iinfo(np.int16).max)


class NoInputDevice(RuntimeError):
    """No microphone to record from at a usable rate; the message says what to do instead."""


# ---- features ------------------------------------------------------------------------------------------------

class OnlineV2:
    """Version-2 spectrogram frames of a stream, each as soon as its 1024 samples have arrived.

    Samples are quantised to int16 exactly as spectrogram_v2 does (madmom decodes files to int16), then scaled by
    1/32767 and framed with hop 128; frame i covers samples [128 i, 128 i + 1024). flush() emits the zero-padded
    tail frames offline framing has (ceil(N / 128) frames in all), so a whole stream equals the offline result.
    """

    def __init__(self) -> None:
        self._buf = np.zeros(0, dtype=np.float64)  # samples not yet fully framed: the overlap of the next frames
        self.n_samples = 0
        self.n_frames = 0

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Append samples (int16, or float in [-1, 1]); returns the newly completed frames, (n, 128) float32."""
        x = to_int16(np.asarray(samples).reshape(-1)).astype(np.float64) / _INT16_MAX
        self.n_samples += len(x)
        self._buf = np.concatenate([self._buf, x])
        if len(self._buf) < FRAME_SIZE:
            return np.zeros((0, N_BINS), dtype=np.float32)
        n = (len(self._buf) - FRAME_SIZE) // HOP_SIZE + 1
        return self._emit(self._buf, n)

    def flush(self) -> np.ndarray:
        """The end of the stream: the remaining frames, zero-padded as offline framing pads them."""
        n = -(-self.n_samples // HOP_SIZE) - self.n_frames
        if n <= 0:
            return np.zeros((0, N_BINS), dtype=np.float32)
        padded = np.zeros((n - 1) * HOP_SIZE + FRAME_SIZE, dtype=np.float64)
        padded[:len(self._buf)] = self._buf[:len(padded)]
        return self._emit(padded, n)

    def _emit(self, buf: np.ndarray, n: int) -> np.ndarray:
        frames = np.lib.stride_tricks.sliding_window_view(buf, FRAME_SIZE)[::HOP_SIZE][:n]
        out = v2_frames_to_spectrogram(frames)
        self._buf = buf[n * HOP_SIZE:].copy()
        self.n_frames += n
        return out


def stream_spectrogram(signal: np.ndarray, block: int = 1000) -> np.ndarray:
    """(128, frames) spectrogram of a signal pushed through OnlineV2 in blocks; equals spectrogram_v2(norm=False)."""
    online = OnlineV2()
    parts = [online.push(signal[i:i + block]) for i in range(0, len(signal), block)]
    parts.append(online.flush())
    return np.concatenate(parts).T


# ---- sources -------------------------------------------------------------------------------------------------

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

    def __init__(self, path: str | Path, speed: float = 1.0, block: int = 4 * HOP_SIZE, normalize: bool = True):
        from utils.audio import load_audio

        if speed < 0:
            raise ValueError(f"--speed must be >= 0, got {speed}")
        x = to_int16(load_audio(path, SAMPLE_RATE, preprocess=False))
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
    """--device as PortAudio wants it: an index (digits) or a name substring."""
    if device is None or device == "":
        return None
    return int(device) if device.strip().isdigit() else device


def check_microphone(device: int | str | None) -> tuple[dict[str, Any], int]:
    """The input device's info and the rate to record at: 32 kHz when it can, else its own rate >= 32 kHz
    (resampled on the fly). Raises NoInputDevice with what to do otherwise."""
    sd = _import_sounddevice()
    hint = "see --list_devices and pick one with --device, or tag a file with --input FILE.wav"
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
    """The microphone through sounddevice: PortAudio's callback thread queues blocks, read() takes all queued."""

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

    def _callback(self, indata, frames, time_info, status) -> None:  # PortAudio's thread: copy and return
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
        """Everything recorded since the last call (waiting for at least one block)."""
        try:
            blocks = [self._queue.get(timeout=timeout)]
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


# ---- predictors ------------------------------------------------------------------------------------------------

def fold_batchnorm(model):
    """An inference copy of a VGG-GAP: each Conv+BatchNorm pair folded into one conv, dropout dropped.
    Same outputs up to float rounding, fewer passes over memory."""
    import copy

    import torch
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    def fold(seq: nn.Sequential) -> nn.Sequential:
        layers, mods = [], list(seq)
        i = 0
        while i < len(mods):
            m = mods[i]
            if isinstance(m, nn.Conv2d) and i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d):
                layers.append(fuse_conv_bn_eval(m, mods[i + 1]))
                i += 2
                continue
            if not isinstance(m, nn.Dropout):
                layers.append(m)
            i += 1
        return nn.Sequential(*layers)

    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        model.features = fold(model.features)
        model.classifier = fold(model.classifier)
    return model


class TorchPredictor:
    """Softmax posteriors of one (128, T) window with a torch model.

    optimize=False is the plain eager forward (the baseline); True folds BatchNorm into the convs, runs under
    inference_mode, and traces+freezes the graph with the oneDNN (mkldnn) fusions for this window size.
    """

    def __init__(self, model, optimize: bool = True, window: int = 256):
        import torch

        self.torch = torch
        model = model.eval()
        self.optimized = optimize and hasattr(model, "features")
        if self.optimized:
            model = fold_batchnorm(model)
            # trace/freeze are deprecated in favour of torch.compile, which takes minutes on 2 cores; they still
            # give the oneDNN fusions, so their warnings are kept off the user's terminal
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                example = torch.zeros(1, 1, N_BINS, window)
                model = torch.jit.freeze(torch.jit.trace(model, example))
                for _ in range(2):  # the first calls of a frozen graph optimise it further
                    model(example)
        self.model = model

    def __call__(self, window: np.ndarray) -> np.ndarray:
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32))[None, None]
        with torch.inference_mode():
            logits = self.model(x)[0].double()
        return torch.softmax(logits, 0).numpy()


class OnnxPredictor:
    """Softmax posteriors with ONNX Runtime on a model exported by export_onnx.py (or export_onnx_model)."""

    def __init__(self, onnx_path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, window: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(window, dtype=np.float32)[None, None]
        logits = self.session.run(None, {self.input_name: x})[0].astype(np.float64)
        return softmax(logits)[0]


def check_window(window: int) -> None:
    """A window the network can take; checked before any tracing or export, whose torch errors say nothing
    about the flag."""
    from utils.vgg_gap import MIN_FRAMES

    if window < MIN_FRAMES:
        raise ValueError(f"--window must be at least {MIN_FRAMES} frames (the network's smallest input, "
                         f"{MIN_FRAMES / FRAMES_PER_SECOND:.2f} s), got {window}")


def export_onnx_model(model, out: str | Path, window: int = 256) -> Path:
    """Write the model (BatchNorm folded, eval mode) as ONNX with a dynamic time axis; returns the path."""
    import torch

    check_window(window)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = fold_batchnorm(model)
    tmp = out.with_name(out.name + ".tmp")
    with warnings.catch_warnings():  # the legacy (TorchScript) exporter's deprecation notes
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (torch.zeros(1, 1, N_BINS, window),), str(tmp), input_names=["spectrogram"],
                          output_names=["logits"], opset_version=17, dynamo=False,
                          dynamic_axes={"spectrogram": {0: "batch", 3: "frames"}, "logits": {0: "batch"}})
    tmp.replace(out)  # a half-written model file is never left under the real name
    return out


def load_predictor(model_file: str | Path, params_file: str | Path, backend: str = "torch", window: int = 256,
                   threads: int | None = None) -> tuple[Callable[[np.ndarray], np.ndarray], list[str]]:
    """The predictor for a model file and its params, and the class list the params were trained with."""
    import tempfile

    import torch

    from utils.model_files import load_model_file, model_settings
    from utils.predict import load_trained_model

    check_window(window)
    settings = model_settings(load_model_file(model_file))
    if settings["spec_version"] != 2:
        raise ValueError(f"{model_file} is trained on spectrogram version {settings['spec_version']}; the live "
                         f"tagger computes version 2 (use e.g. models/vgg_gap_spec2_no_pp.py)")
    if settings["preprocessing"]:
        print(f"note: {model_file} was trained on SoX-trimmed audio; a stream cannot be trimmed, so models trained "
              f"with --no_preprocessing fit better", file=sys.stderr)
    if threads:
        torch.set_num_threads(threads)
    model, config = load_trained_model(model_file, params_file)
    classes = list(config["classes"])
    if backend == "torch":
        return TorchPredictor(model, optimize=True, window=window), classes
    if backend == "onnx":
        with tempfile.TemporaryDirectory() as tmp:
            # the session holds the model in memory once created, so the file can go
            return OnnxPredictor(export_onnx_model(model, Path(tmp) / "model.onnx", window), threads), classes
    raise ValueError(f"unknown backend {backend!r}; expected torch or onnx")


# ---- the tagger -----------------------------------------------------------------------------------------------

@dataclass
class Prediction:
    end_frame: int           # the window is frames [end_frame - window, end_frame) of the stream (all of
                             # them, tiled, when the stream is shorter than the window)
    probs: np.ndarray        # (n_classes,) float64
    latency: float           # seconds from the arrival of the window's newest audio to the posterior
    compute: float           # seconds the model took
    skipped: int             # due predictions dropped just before this one because the model was behind


@dataclass
class TaggerStats:
    predictions: int = 0
    skipped: int = 0
    frames: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    started: float | None = None  # perf_counter() of the first audio, for the live predictions-per-second
    latencies: list[float] = field(default_factory=list)
    computes: list[float] = field(default_factory=list)
    tiled_from: int = 0  # frames of a stream shorter than the window, tiled to fill it for its one prediction

    def summary(self) -> str:
        rate = self.predictions / self.wall_seconds if self.wall_seconds > 0 else 0.0
        due = self.predictions + self.skipped
        parts = [f"{self.predictions} predictions in {self.wall_seconds:.1f} s ({rate:.1f}/s) over "
                 f"{self.audio_seconds:.1f} s of audio", f"{self.skipped} skipped of {due} due"]
        if self.tiled_from:
            parts.append(f"the audio gave only {self.tiled_from} frames, tiled to fill the window as offline "
                         f"evaluation tiles short clips")
        if self.latencies:
            lat = np.array(self.latencies) * 1000
            comp = np.array(self.computes) * 1000
            parts.append(f"latency mean {lat.mean():.0f} ms, p95 {np.percentile(lat, 95):.0f} ms, "
                         f"max {lat.max():.0f} ms; model {comp.mean():.1f} ms per prediction")
        return "; ".join(parts)


class LiveTagger:
    """Rolling window over OnlineV2 frames and the every-k-frames prediction rule.

    A prediction is due whenever the stream passes a multiple of k frames (once the window is full). feed() makes
    at most one prediction, on the newest window; due points it passed without predicting count as skipped.
    A stream that ends before filling one window gets one prediction at finish() on its frames tiled to the
    window (utils.spec_data.fix_length), as offline evaluation tiles a short clip, instead of none at all.
    """

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], window: int = 256, predict_every_k: int = 10):
        check_window(window)
        if predict_every_k < 1:
            raise ValueError("--predict_every_k must be at least 1")
        self.predict = predict
        self.window = window
        self.k = predict_every_k
        self.features = OnlineV2()
        # twice the window so appending is a copy only every `window` frames, not a roll per frame
        self._ring = np.zeros((2 * window, N_BINS), dtype=np.float32)
        self._fill = 0
        self._last_point = (window - 1) // self.k  # index of the last due point handled; the first is >= window
        self.last: Prediction | None = None
        self.stats = TaggerStats()

    @property
    def n_frames(self) -> int:
        return self.features.n_frames

    def current_window(self) -> np.ndarray:
        """The newest min(frames, window) frames, (128, n)."""
        n = min(self._fill, self.window)
        return self._ring[self._fill - n:self._fill].T

    def _append(self, frames: np.ndarray) -> None:
        if len(frames) >= self.window:
            frames = frames[-self.window:]
            self._ring[:self.window] = frames
            self._fill = self.window
            return
        if self._fill + len(frames) > len(self._ring):
            keep = self.window - len(frames)
            self._ring[:keep] = self._ring[self._fill - keep:self._fill]
            self._fill = keep
        self._ring[self._fill:self._fill + len(frames)] = frames
        self._fill += len(frames)

    def feed(self, block: Block) -> Prediction | None:
        """Take a block of audio; returns a prediction when one was due."""
        if self.stats.started is None:
            self.stats.started = time.perf_counter()
        self._append(self.features.push(block.samples))
        self.stats.audio_seconds += len(block.samples) / SAMPLE_RATE
        return self._maybe_predict(block.arrival)

    def finish(self, arrival: float | None = None) -> Prediction | None:
        """End of the stream: the zero-padded tail frames, and a last prediction if one is due (or, for a stream
        shorter than the window, its only prediction, on its frames tiled to the window)."""
        self._append(self.features.flush())
        arrival = time.perf_counter() if arrival is None else arrival
        n = self.n_frames
        if 0 < n < self.window:
            self.stats.frames = n
            self.stats.tiled_from = n
            return self._predict(fix_length(self.current_window(), self.window), arrival, 0)
        return self._maybe_predict(arrival)

    def _maybe_predict(self, arrival: float) -> Prediction | None:
        n = self.n_frames
        self.stats.frames = n
        point = n // self.k
        if n < self.window or point <= self._last_point:
            return None
        skipped = point - self._last_point - 1
        self._last_point = point
        return self._predict(self.current_window(), arrival, skipped)

    def _predict(self, window: np.ndarray, arrival: float, skipped: int) -> Prediction:
        n = self.n_frames
        start = time.perf_counter()
        probs = self.predict(window)
        done = time.perf_counter()
        pred = Prediction(n, probs, done - arrival, done - start, skipped)
        self.stats.predictions += 1
        self.stats.skipped += skipped
        self.stats.latencies.append(pred.latency)
        self.stats.computes.append(pred.compute)
        self.last = pred
        return pred


def run_stream(tagger: LiveTagger, source, on_update: Callable[[LiveTagger, Prediction | None], None] | None = None,
               max_seconds: float | None = None) -> TaggerStats:
    """Feed a source to the tagger until it ends (or max_seconds of audio, or Ctrl-C); returns the stats.
    KeyboardInterrupt is caught here so the caller can still print the summary."""
    start = time.perf_counter()
    source.start()
    try:
        while True:
            block = source.read()
            if block is None:
                pred = tagger.finish()
                if on_update is not None:
                    on_update(tagger, pred)
                break
            pred = tagger.feed(block)
            if on_update is not None:
                on_update(tagger, pred)
            if max_seconds is not None and tagger.stats.audio_seconds >= max_seconds:
                break
    except KeyboardInterrupt:
        pass
    finally:
        source.stop()
        tagger.stats.wall_seconds = time.perf_counter() - start
    return tagger.stats


# ---- views ------------------------------------------------------------------------------------------------------

def top_classes(probs: np.ndarray, classes: Sequence[str], n: int) -> list[tuple[str, float]]:
    order = np.argsort(-probs, kind="stable")[:n]
    return [(classes[i], float(probs[i])) for i in order]


def status_line(tagger: LiveTagger, classes: Sequence[str], top: int = 3) -> str:
    """The headless line: the top classes and their probabilities, or how far the window has filled."""
    if tagger.last is None:
        return f"waiting for audio ({min(tagger.n_frames, tagger.window)}/{tagger.window} frames)"
    s = tagger.stats
    rate = s.predictions / max(time.perf_counter() - (s.started or time.perf_counter()), 1e-9)
    tops = "  ".join(f"{c} {p:.2f}" for c, p in top_classes(tagger.last.probs, classes, top))
    return (f"{s.audio_seconds:6.1f} s  {tops}  | {rate:4.1f} pred/s, {tagger.last.latency * 1000:4.0f} ms, "
            f"{s.skipped} skipped")


class TerminalView:
    """A line rewritten in place (carriage return), at most `fps` times per second."""

    def __init__(self, classes: Sequence[str], top: int = 3, fps: float = 10.0, stream=None):
        self.classes = list(classes)
        self.top = top
        self.interval = 1.0 / fps
        self.stream = stream if stream is not None else sys.stdout
        self._next = 0.0
        self._width = 0

    def __call__(self, tagger: LiveTagger, pred: Prediction | None) -> None:
        now = time.perf_counter()
        if now < self._next:
            return
        self._next = now + self.interval
        line = status_line(tagger, self.classes, self.top)
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)

    def close(self) -> None:
        if self._width:
            self.stream.write("\n")
            self.stream.flush()


def draw_view(fig, tagger: LiveTagger, classes: Sequence[str], top: int = 5) -> None:
    """Draw the current spectrogram window and the top classes' probability bars into fig (cleared first)."""
    fig.clear()
    ax_spec, ax_bars = fig.subplots(2, 1, gridspec_kw={"height_ratios": [3, 2]})
    spec = tagger.current_window()
    canvas = np.zeros((N_BINS, tagger.window), dtype=np.float32)
    canvas[:, tagger.window - spec.shape[1]:] = spec  # new frames enter on the right, as the window scrolls
    ax_spec.imshow(canvas, origin="lower", aspect="auto", interpolation="nearest", cmap="magma",
                   vmin=0, vmax=max(float(canvas.max()), 1e-3))
    ax_spec.set_title(f"spectrogram: last {tagger.window} frames ({tagger.window / FRAMES_PER_SECOND:.2f} s)")
    ax_spec.set_ylabel("band")
    ax_spec.set_xticks([])
    if tagger.last is None:
        ax_bars.text(0.5, 0.5, f"waiting for audio ({min(tagger.n_frames, tagger.window)}/{tagger.window} frames)",
                     ha="center", va="center", transform=ax_bars.transAxes)
        ax_bars.set_axis_off()
    else:
        tops = top_classes(tagger.last.probs, classes, top)
        y = np.arange(len(tops))
        ax_bars.barh(y, [p for _, p in tops], color="tab:blue")
        ax_bars.set_yticks(y, [c for c, _ in tops])
        ax_bars.invert_yaxis()
        ax_bars.set_xlim(0, 1)
        ax_bars.set_xlabel("probability")
        ax_bars.grid(axis="x", alpha=0.3)
    fig.tight_layout()


class PlotView:
    """The matplotlib live view, redrawn at most `fps` times per second (drawing is slower than predicting)."""

    def __init__(self, classes: Sequence[str], top: int = 5, fps: float = 8.0):
        from utils.plots import pyplot

        self.plt = pyplot(interactive=True)
        self.plt.ion()
        self.fig = self.plt.figure(figsize=(7, 6))
        self.classes = list(classes)
        self.top = top
        self.interval = 1.0 / fps
        self._next = 0.0

    def __call__(self, tagger: LiveTagger, pred: Prediction | None) -> None:
        now = time.perf_counter()
        if now < self._next:
            return
        self._next = now + self.interval
        draw_view(self.fig, tagger, self.classes, self.top)
        self.plt.pause(0.001)

    def close(self) -> None:
        self.plt.close(self.fig)


def save_view(tagger: LiveTagger, classes: Sequence[str], path: str | Path, top: int = 5) -> Path:
    """Write the last view (spectrogram window and bars) as an image."""
    from utils.plots import pyplot, save_figure

    plt = pyplot()
    fig = plt.figure(figsize=(7, 6))
    try:
        draw_view(fig, tagger, classes, top)
        save_figure(fig, path)
    finally:
        plt.close(fig)
    return Path(path)
