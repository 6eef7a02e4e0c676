"""Live v2 features: the spectrogram of prepare_spectrograms.py --spec_version 2 --no_preprocessing, computed
frame by frame as samples arrive (same per-frame code, same framing: frame 1024, hop 128, 32 kHz, madmom's
origin='future', zero-padded end on flush)."""


import numpy as np

from utils.spectrogram import N_BINS, V2_PARAMS, to_int16, v2_frames_to_spectrogram

SAMPLE_RATE = V2_PARAMS["sample_rate"]
FRAME_SIZE = V2_PARAMS["frame_size"]
HOP_SIZE = V2_PARAMS["hop_size"]
FRAMES_PER_SECOND = SAMPLE_RATE / HOP_SIZE  # 250
_INT16_MAX = float(np.iinfo(np.int16).max)


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
