"""Awkward inputs: each gives a correct spectrogram or one clear AudioError naming the file."""

import subprocess
import warnings

import numpy as np
import pytest
import soundfile as sf

from tests.helpers import tone
from utils.audio import SOX_EFFECTS, AudioError, AudioWarning, load_audio, min_samples, sox_clip_silence
from utils.spectrogram import spectrogram_from_file

SR = 32000


def write(path, x, sr, subtype="PCM_16"):
    sf.write(path, x, sr, subtype=subtype)
    return path


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("sr", [8000, 11025, 44100, 48000, 96000])
def test_odd_sample_rates_are_resampled(tmp_path, sr, version):
    path = write(tmp_path / f"sr{sr}.wav", tone(1.0, sr), sr)
    signal = load_audio(path, preprocess=False)
    assert signal.dtype == np.float32 and len(signal) == SR
    spec = spectrogram_from_file(path, version, preprocess=False)
    assert spec.shape == (128, 1 + SR // 192 if version == 1 else SR // 128)
    assert np.isfinite(spec).all()
    # a 440 Hz tone stays a 440 Hz tone: the resampled signal correlates with a fresh 32 kHz one
    assert np.corrcoef(signal[1000:-1000], tone(1.0, SR)[1000:-1000])[0, 1] > 0.99


def test_stereo_is_averaged_to_mono(tmp_path):
    x = tone(0.5, SR, channels=2)
    path = write(tmp_path / "stereo.wav", x, SR)
    signal = load_audio(path, preprocess=False)
    expected = sf.read(path, dtype="float32")[0].mean(axis=1)
    np.testing.assert_allclose(signal, expected, atol=1e-7)
    assert spectrogram_from_file(path, 2).shape[0] == 128


@pytest.mark.parametrize("subtype, tol", [("PCM_U8", 1 / 64), ("PCM_16", 1e-4), ("PCM_24", 1e-6),
                                          ("PCM_32", 1e-6), ("FLOAT", 1e-7)])
def test_bit_depths_read_correctly(tmp_path, subtype, tol):
    x = tone(0.5, SR, amp=0.8)
    path = write(tmp_path / f"{subtype}.wav", x, SR, subtype)
    np.testing.assert_allclose(load_audio(path, preprocess=False), x, atol=tol)


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
@pytest.mark.parametrize("channels", [1, 2, 3])
def test_sox_pipe_equals_sox_temp_file(tmp_path, subtype, channels):
    # the piped output must be what the seed got from `sox in.wav tmp.wav ...` (repeatable dither, -R), though
    # SoX now reads the samples libsndfile decoded rather than the file
    x = np.concatenate([np.zeros((SR // 2, channels)).squeeze(), tone(0.5, SR, channels=channels),
                        np.zeros((SR // 4, channels)).squeeze()])
    path = write(tmp_path / "in.wav", x, SR, subtype)
    subprocess.run(["sox", "-R", str(path), str(tmp_path / "out.wav"), *SOX_EFFECTS], check=True)
    expected, _ = sf.read(tmp_path / "out.wav", dtype="float32", always_2d=True)
    piped, sr = sox_clip_silence(path)
    assert sr == SR and piped.shape == expected.shape
    np.testing.assert_array_equal(piped, expected)


def test_all_silent_keeps_unclipped_audio_with_warning(tmp_path):
    path = write(tmp_path / "silent.wav", np.zeros(SR), SR)
    with pytest.warns(AudioWarning, match="silent.wav.*unclipped"):
        spec = spectrogram_from_file(path, 1)
    assert spec.shape == (128, 1 + SR // 192) and np.isfinite(spec).all()
    with pytest.warns(AudioWarning):
        spec2 = spectrogram_from_file(path, 2)
    assert spec2.shape == (128, SR // 128) and not spec2.any()


@pytest.mark.parametrize("sr", [8000, 32000, 44100])
def test_shortest_clip_is_one_frame(tmp_path, sr):
    # the shortest clip resamples to one whole 1024-sample frame at 32 kHz: spectrograms without a warning
    n = min_samples(sr)
    assert -(-n * SR // sr) >= 1024 > -(-(n - 1) * SR // sr)
    path = write(tmp_path / "short.wav", np.random.default_rng(0).uniform(-0.5, 0.5, n), sr)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for version in (1, 2):
            for preprocess in (True, False):
                spec = spectrogram_from_file(path, version, preprocess=preprocess)
                assert spec.shape[0] == 128 and spec.shape[1] >= 1 and np.isfinite(spec).all()
        assert len(load_audio(path, preprocess=False)) >= 1024
    # one sample less is refused, naming the file and the minimum at its rate
    write(path, np.random.default_rng(0).uniform(-0.5, 0.5, n - 1), sr)
    with pytest.raises(AudioError, match=f"short.wav: too short to tag: {n - 1} samples .*at least {n} "):
        spectrogram_from_file(path, 1, preprocess=False)


def test_clip_sox_trims_below_one_frame_keeps_unclipped_audio(tmp_path):
    # 30 ms of tone in 1 s of silence: SoX keeps 959 samples, less than one frame, so the clip stays whole
    x = np.concatenate([np.zeros(SR // 2), tone(0.03, SR), np.zeros(SR // 2)])
    path = write(tmp_path / "blip.wav", x, SR)
    with pytest.warns(AudioWarning, match="blip.wav: SoX trimmed all but .* samples.*unclipped"):
        signal = load_audio(path, preprocess=True)
    assert len(signal) == len(x)


def bad_inputs(tmp_path):
    empty = write(tmp_path / "empty.wav", np.zeros(0), SR)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all\n" * 50)
    truncated = write(tmp_path / "truncated.wav", tone(1.0, SR), SR)
    truncated.write_bytes(truncated.read_bytes()[:20])
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    return {"empty": empty, "junk": junk, "truncated": truncated, "text": text,
            "missing": tmp_path / "missing.wav", "folder": tmp_path}


@pytest.mark.parametrize("preprocess", [True, False])
@pytest.mark.parametrize("case, match", [("empty", "empty audio file"), ("junk", "not a readable audio file"),
                                         ("truncated", "not a readable audio file"),
                                         ("text", "not a readable audio file"), ("missing", "file not found"),
                                         ("folder", "is a folder, not an audio file")])
def test_bad_files_raise_one_line_audio_error(tmp_path, case, match, preprocess):
    path = bad_inputs(tmp_path)[case]
    with pytest.raises(AudioError, match=match) as info:
        spectrogram_from_file(path, 1, preprocess=preprocess)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_missing_sox_binary_is_an_audio_error(tmp_path):
    path = write(tmp_path / "ok.wav", tone(0.2, SR), SR)
    with pytest.raises(AudioError, match="ok.wav.*not installed"):
        sox_clip_silence(path, sox_binary="no-such-sox-binary")
