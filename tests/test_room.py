"""The simulated room and microphone: deterministic per seed, bounded, and audibly a recording of the input."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from tests.helpers import tone
from utils.demo.room import Chain, apply_chain, draw_chain
from utils.live.sources import FileSource
from utils.paths import REPO

SR = 32000


def chained(seed: int, x: np.ndarray) -> tuple[Chain, np.ndarray]:
    rng = np.random.default_rng(seed)
    chain = draw_chain(rng)
    return chain, apply_chain(x, SR, chain, rng)


def test_same_seed_same_recording_other_seed_other_one():
    x = tone(1.0, SR)
    chain_a, a = chained(1, x)
    chain_b, b = chained(1, x)
    chain_c, c = chained(2, x)
    assert chain_a == chain_b and np.array_equal(a, b)
    assert chain_a != chain_c and not np.allclose(a, c)
    assert a.shape == x.shape and a.dtype == np.float32 and np.abs(a).max() <= 1.0


@pytest.mark.parametrize("colour", ["white", "pink"])
def test_noise_sits_at_the_drawn_snr(colour):
    """Run twice with the same chain, once with the noise generator's draws and once without (an all-zero
    generator stand-in): the difference is the noise, whose level is the drawn SNR below the chained signal."""
    x = tone(2.0, SR)
    chain = Chain(room_size=0.3, wet=0.2, damping=0.5, highpass_hz=100, lowpass_hz=8000, peak_hz=2000, peak_db=3,
                  gain_db=-6, squash="none", snr_db=20.0, noise=colour)

    class Silent:
        def standard_normal(self, n):
            return np.zeros(n)

    noisy = apply_chain(x, SR, chain, np.random.default_rng(0))
    clean = apply_chain(x, SR, chain, Silent())
    snr = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean((noisy - clean).astype(np.float64) ** 2))
    assert abs(snr - 20.0) < 0.5, snr


def test_reverb_leaves_a_tail_and_the_band_limits_cut():
    impulse = np.zeros(SR, np.float32)
    impulse[100] = 0.9
    room = dict(room_size=0.8, wet=0.4, damping=0.2, highpass_hz=300, peak_hz=1000, peak_db=0, gain_db=0,
                squash="none", snr_db=200.0, noise="white")
    dull = apply_chain(impulse, SR, Chain(lowpass_hz=4000, **room), np.random.default_rng(0))
    bright = apply_chain(impulse, SR, Chain(lowpass_hz=15000, **room), np.random.default_rng(0))
    assert np.abs(dull[SR // 4:]).max() > 1e-3  # a room: sound 0.25 s after the click

    def treble_share(x):
        spectrum, freqs = np.abs(np.fft.rfft(x)), np.fft.rfftfreq(len(x), 1 / SR)
        return spectrum[freqs > 10000].mean() / spectrum[(freqs > 800) & (freqs < 2000)].mean()

    assert treble_share(dull) < 0.5 * treble_share(bright)  # the microphone's high cut takes the treble


def test_stereo_keeps_its_channels():
    left, right = tone(1.0, SR), 0.5 * tone(1.0, SR, freq=880.0)
    x = np.stack([left, right], axis=1)
    chain, y = chained(4, x)
    assert y.shape == x.shape and y.dtype == np.float32
    # each channel is its own recording: the right one keeps its pitch, not the left one's
    spectrum = np.abs(np.fft.rfft(y[:, 1]))
    assert np.fft.rfftfreq(len(y), 1 / SR)[spectrum.argmax()] == pytest.approx(880.0, abs=2.0)


def test_silence_stays_silent():
    assert not apply_chain(np.zeros(SR, np.float32), SR, draw_chain(np.random.default_rng(0)),
                           np.random.default_rng(0)).any()


def test_file_source_plays_through_the_room(tmp_path):
    path = tmp_path / "clip.wav"
    sf.write(path, tone(1.0, SR), SR)
    plain, room = FileSource(path, speed=0), FileSource(path, speed=0, room_seed=3)
    assert plain.chain is None and room.chain == draw_chain(np.random.default_rng(3))
    assert len(room.samples) == len(plain.samples) and not np.array_equal(room.samples, plain.samples)
    assert np.array_equal(FileSource(path, speed=0, room_seed=3).samples, room.samples)


@pytest.mark.slow  # a script in a subprocess
def test_room_needs_an_input_file():
    run = subprocess.run([sys.executable, "audio_tagger.py", "--model", "m.py", "--params", "p.pt", "--room", "1"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "--room needs --input" in run.stderr
