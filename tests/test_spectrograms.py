"""Spectrogram versions 1 and 2 against their references, SoX trimming, and the prepare_spectrograms CLI."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

import prepare_spectrograms
from tests.helpers import tone
from utils.audio import load_audio
from utils.paths import REPO
from utils.spec_store import open_store
from utils.spectrogram import (
    compute_spectrogram,
    frame_signal,
    log_filterbank,
    spectrogram_from_file,
    spectrogram_v2,
    to_int16,
    v2_frames_to_spectrogram,
)
from utils.spectrogram_cache import SOURCES_NAME

GOLDEN = Path(__file__).parent / "data" / "madmom_v2"
GOLDEN_CLIPS = sorted(p.stem for p in GOLDEN.glob("*.wav"))
SR = 32000


# ---- version 2: the madmom port -------------------------------------------------------------------------

def test_filterbank_matches_madmom():
    golden = np.load(GOLDEN / "filterbank.npy")
    assert log_filterbank().shape == golden.shape == (512, 128)
    np.testing.assert_allclose(log_filterbank(), golden, rtol=0, atol=1e-7)


@pytest.mark.parametrize("name", GOLDEN_CLIPS)
def test_v2_matches_madmom(name):
    signal, sr = sf.read(GOLDEN / f"{name}.wav", dtype="int16")
    assert sr == SR
    golden = np.load(GOLDEN / f"{name}.madmom_v2.npy")  # (frames, 128)
    spec = compute_spectrogram(signal, 2)
    assert spec.dtype == np.float32 and spec.shape == golden.T.shape
    np.testing.assert_allclose(spec, golden.T, rtol=0, atol=1e-5)
    # a float signal is rounded to int16 first, as madmom's decoder would
    np.testing.assert_allclose(compute_spectrogram(signal / 32768.0, 2), golden.T, rtol=0, atol=1e-5)


@pytest.mark.parametrize("n", [1, 127, 128, 129, 32000])
def test_v2_shape(n):
    spec = compute_spectrogram(np.random.default_rng(0).uniform(-0.5, 0.5, n), 2)
    assert spec.shape == (128, -(-n // 128))
    assert np.isfinite(spec).all()


def test_v2_frame_level_steps_compose():
    # what an online tagger does: cut frames itself, run the per-frame steps, no whole-clip normalisation
    x = to_int16(tone(0.5) * 0.1)
    frames = frame_signal(x / 32767.0, 1024, 128)  # the per-frame steps take int16 / 32767 full scale
    online = v2_frames_to_spectrogram(frames).T
    np.testing.assert_allclose(online, spectrogram_v2(x, norm=False), rtol=0, atol=1e-6)
    # norm=True scales a quiet clip up to full scale, so it differs
    assert spectrogram_v2(x, norm=True).max() > online.max() + 0.5


def test_v2_silent_clip_is_zero_not_nan():
    spec = compute_spectrogram(np.zeros(4000, np.int16), 2)
    assert np.array_equal(spec, np.zeros_like(spec))


# ---- version 1: librosa ---------------------------------------------------------------------------------

def direct_v1(y: np.ndarray) -> np.ndarray:
    """The writeup's code, with librosa 0.11's keyword-only arguments."""
    stft = np.abs(librosa.stft(y, n_fft=1024, hop_length=192, win_length=None, window="hann", center=True,
                               pad_mode="reflect"))
    freqs = librosa.fft_frequencies(sr=SR, n_fft=1024)
    stft = librosa.perceptual_weighting(stft ** 2, freqs, ref=1.0, amin=1e-10, top_db=99.0)
    return librosa.feature.melspectrogram(S=stft, sr=SR, n_mels=128)


@pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore:n_fft=1024 is too large")
@pytest.mark.parametrize("name", ["Flute", "short_click"])
def test_v1_matches_librosa(name):
    y, _ = sf.read(GOLDEN / f"{name}.wav", dtype="float32")
    spec = compute_spectrogram(y, 1)
    expected = direct_v1(y)
    assert spec.dtype == np.float32 and spec.shape == expected.shape == (128, 1 + len(y) // 192)
    np.testing.assert_allclose(spec, expected, rtol=1e-5, atol=1e-5)


def test_compute_spectrogram_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        compute_spectrogram(np.zeros(0, np.float32), 1)
    with pytest.raises(ValueError, match="mono"):
        compute_spectrogram(np.zeros((100, 2), np.float32), 2)
    with pytest.raises(ValueError, match="version"):
        compute_spectrogram(np.zeros(100, np.float32), 3)


# ---- SoX silence clipping -------------------------------------------------------------------------------

@pytest.mark.parametrize("lead, trail", [(1.0, 1.0), (1.0, 0.0), (0.0, 1.0)])
def test_sox_trims_leading_and_trailing_silence(tmp_path, lead, trail):
    sr = 44100
    x = np.concatenate([np.zeros(int(lead * sr)), tone(2.0, sr), np.zeros(int(trail * sr))])
    path = tmp_path / "padded.wav"
    sf.write(path, x, sr, subtype="PCM_16")
    clipped = load_audio(path, preprocess=True)
    assert abs(len(clipped) / SR - 2.0) < 0.05  # only the 2 s tone is left
    full = spectrogram_from_file(path, 1, preprocess=False).shape[1]
    trimmed = spectrogram_from_file(path, 1, preprocess=True).shape[1]
    assert abs((full - trimmed) - (lead + trail) * SR / 192) < 0.05 * SR / 192
    # no silent frames left at either end (the last 8 frames run into madmom's zero padding)
    energy = spectrogram_from_file(path, 2, preprocess=True).sum(axis=0)
    assert energy[:-8].min() > 0.5 * np.median(energy)


# ---- the CLI ----------------------------------------------------------------------------------------------

def write_clips(folder: Path, n: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        x = np.concatenate([np.zeros(4410), tone(0.5 + 0.25 * i, 44100, freq=300.0 * (i + 1)), np.zeros(4410)])
        paths.append(folder / f"clip{i}.wav")
        sf.write(paths[-1], x, 44100, subtype="PCM_16")
    return paths


def run_cli(*argv: str) -> int:
    return prepare_spectrograms.main(prepare_spectrograms.parse_args([*argv, "--no_progress"]))


def test_cli_writes_manifest_and_skips_up_to_date(tmp_path, capsys):
    audio, specs = tmp_path / "audio", tmp_path / "specs"
    clips = write_clips(audio)
    assert run_cli("--audio_path", str(audio), "--spec_path", str(specs), "--spec_version", "2",
                   "--dump", "--jobs", "2") == 0
    for clip in clips:
        spec = np.load(specs / f"{clip.stem}.npy")
        assert spec.dtype == np.float32 and spec.shape[0] == 128
        # workers run BLAS single-threaded, which may change float32 summation order in the last bit
        np.testing.assert_allclose(spec, spectrogram_from_file(clip, 2), rtol=1e-6, atol=1e-6)
    manifest = json.loads((specs / "manifest.json").read_text())
    assert manifest["spec_version"] == 2 and manifest["preprocessing"]["sox_silence_clipping"] is True
    assert manifest["params"]["hop_size"] == 128 and "librosa" in manifest["library_versions"]
    assert not (specs / "failed.txt").exists()
    capsys.readouterr()

    assert run_cli("--audio_path", str(audio), "--spec_path", str(specs), "--spec_version", "2", "--dump") == 0
    assert "3 skipped" in capsys.readouterr().out
    # the same bytes under other times (touch, a copy) are still current: the content hash decides
    later = os.stat(specs / "clip1.npy").st_mtime + 10
    os.utime(clips[1], (later, later))
    shutil.copy2(clips[2], tmp_path / "copy.wav")
    os.replace(tmp_path / "copy.wav", clips[2])  # a new inode and ctime, the old mtime
    assert run_cli("--audio_path", str(audio), "--spec_path", str(specs), "--spec_version", "2", "--dump",
                   "--jobs", "1") == 0
    assert "3 skipped" in capsys.readouterr().out
    # and the record follows them, so the next run need not hash them again
    recorded = json.loads((specs / SOURCES_NAME).read_text())
    assert recorded["clip1"]["audio"]["identity"][1] == os.stat(clips[1]).st_mtime_ns
    assert recorded["clip2"]["audio"]["identity"][2] == os.stat(clips[2]).st_ino


def prepared(audio: Path, specs: Path, capsys: pytest.CaptureFixture, *extra: str) -> str:
    """Run --dump --spec_version 2 (status 0) and open the store as training would; what the run printed."""
    assert run_cli("--audio_path", str(audio), "--spec_path", str(specs), "--spec_version", "2", "--dump",
                   *extra) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("shift_s", [-3600, 3600])
def test_replaced_audio_is_redone_whatever_its_mtime(tmp_path, capsys, shift_s):
    """Audio replaced by another clip of the same size, its mtime set an hour before or after the .npy's (cp -p,
    rsync -a, tar x, a restored backup): the .npy and the store hold the new clip."""
    audio, specs = tmp_path / "audio", tmp_path / "specs"
    clips = write_clips(audio, 2)
    prepared(audio, specs, capsys, "--jobs", "2")
    old = np.load(specs / "clip1.npy")
    assert open_store(specs).get("clip1.wav").shape == old.shape

    new_clip = tmp_path / "other.wav"  # clip1 at another pitch
    sf.write(new_clip, np.concatenate([np.zeros(4410), tone(0.75, 44100, freq=2500.0), np.zeros(4410)]), 44100,
             subtype="PCM_16")
    assert new_clip.stat().st_size == clips[1].stat().st_size
    when = os.stat(specs / "clip1.npy").st_mtime_ns + shift_s * 10**9
    os.replace(new_clip, clips[1])
    os.utime(clips[1], ns=(when, when))

    assert "1 written, 1 skipped" in prepared(audio, specs, capsys)
    expected = spectrogram_from_file(clips[1], 2)
    got = np.load(specs / "clip1.npy")
    assert got.shape != old.shape or not np.allclose(got, old)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(open_store(specs).get("clip1.wav"), got)
    assert "2 skipped" in prepared(audio, specs, capsys)


def test_a_spectrogram_without_its_record_is_redone(tmp_path, capsys):
    audio, specs = tmp_path / "audio", tmp_path / "specs"
    write_clips(audio, 2)
    prepared(audio, specs, capsys)
    # a folder that predates the records, or a run killed before it saved them: everything is redone
    (specs / SOURCES_NAME).unlink()
    assert "2 written" in prepared(audio, specs, capsys)
    # a .npy replaced by another (here the other clip's, under its own old mtime) is redone too
    shutil.copy2(specs / "clip0.npy", specs / "clip1.npy")
    assert "1 written, 1 skipped" in prepared(audio, specs, capsys)
    assert np.load(specs / "clip1.npy").shape != np.load(specs / "clip0.npy").shape


def test_audio_replaced_by_a_broken_file_loses_its_old_spectrogram(tmp_path, capsys):
    audio, specs = tmp_path / "audio", tmp_path / "specs"
    clips = write_clips(audio, 2)
    prepared(audio, specs, capsys)
    clips[1].write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    assert run_cli("--audio_path", str(audio), "--spec_path", str(specs), "--spec_version", "2", "--dump") == 1
    assert "removed" in (specs / "failed.txt").read_text() and not (specs / "clip1.npy").exists()
    assert "clip1.wav" not in open_store(specs) and "clip0.wav" in open_store(specs)


def test_cli_refuses_other_settings(tmp_path, capsys):
    audio, specs = tmp_path / "audio", tmp_path / "specs"
    write_clips(audio, 1)
    assert run_cli("--audio_path", str(audio), "--out_dir", str(specs), "--spec_version", "2",
                   "--dump", "--no_preprocessing") == 0
    capsys.readouterr()
    for other in (["--spec_version", "1"], ["--spec_version", "2"]):  # version, then preprocessing, differ
        assert run_cli("--audio_path", str(audio), "--out_dir", str(specs), "--dump", *other) == 2
        err = capsys.readouterr().err
        assert "other settings" in err and "pick another --out_dir or delete" in err
    # npy files without a manifest are not trusted either
    (specs / "manifest.json").unlink()
    assert run_cli("--audio_path", str(audio), "--out_dir", str(specs), "--spec_version", "2", "--dump",
                   "--no_preprocessing") == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_cli_bad_files_reported_others_finish(tmp_path, capsys):
    audio, specs = tmp_path / "audio", tmp_path / "specs"
    write_clips(audio, 2)
    (audio / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    (audio / "notes.txt").write_text("not audio, not listed")
    assert run_cli("--audio_path", str(audio), "--spec_path", str(specs), "--spec_version", "1",
                   "--dump", "--jobs", "2") == 1
    assert (specs / "clip0.npy").exists() and (specs / "clip1.npy").exists()
    failed = (specs / "failed.txt").read_text().splitlines()
    assert len(failed) == 1 and "broken.wav" in failed[0]
    captured = capsys.readouterr()
    assert "2 written" in captured.out and "broken.wav" in captured.err

    # a listed file that is missing is a failure too; a clean rerun of the rest removes failed.txt
    (tmp_path / "list.csv").write_text("fname,label\nclip0.wav,x\nclip1.wav,y\ngone.wav,z\n")
    assert run_cli("--audio_path", str(audio), "--file_list", str(tmp_path / "list.csv"),
                   "--spec_path", str(specs), "--spec_version", "1", "--dump") == 1
    assert "gone.wav: file not found" in (specs / "failed.txt").read_text()
    (audio / "broken.wav").unlink()
    assert run_cli("--audio_path", str(audio), "--spec_path", str(specs), "--spec_version", "1", "--dump") == 0
    assert not (specs / "failed.txt").exists()


def test_cli_show_saves_png_headless(tmp_path, monkeypatch):
    audio, specs = tmp_path / "audio", tmp_path / "specs"
    write_clips(audio, 2)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert run_cli("--audio_path", str(audio), "--spec_path", str(specs), "--spec_version", "2",
                   "--show", "2") == 0
    png = specs / "spectrograms_v2.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(specs.glob("*.npy"))  # --show alone writes no spectrograms


# ---- worker processes -------------------------------------------------------------------------------------

def children(pid: int) -> list[int]:
    try:
        return [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
                for c in (task / "children").read_text().split()]
    except OSError:
        return []


def cmdline(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan that has ended waits as a zombie until init reaps it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_workers_end_when_the_run_is_killed(tmp_path):
    """kill -9 gives prepare_spectrograms.py no chance to stop its pool: the workers must end by themselves."""
    audio = tmp_path / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    for i in range(300):  # ~10 s of work for two workers, so they are busy when the parent dies
        sf.write(audio / f"n{i:03d}.wav", 0.1 * rng.standard_normal(3 * SR).astype(np.float32), SR)
    proc = subprocess.Popen([sys.executable, "prepare_spectrograms.py", "--audio_path", str(audio), "--out_dir",
                             str(tmp_path / "specs"), "--dump", "--jobs", "2", "--no_progress"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        own = cmdline(proc.pid)
        while time.monotonic() < deadline and proc.poll() is None and len(workers) < 2:
            # forked workers share the parent's command line (the SoX version check does not)
            workers = [c for c in children(proc.pid) if cmdline(c) == own]
            time.sleep(0.05)
        assert len(workers) == 2 and proc.poll() is None, "the run ended before its workers were seen"
        os.kill(proc.pid, signal.SIGKILL)  # the parent alone
        proc.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(running(w) for w in workers):
            time.sleep(0.1)
        assert not [w for w in workers if running(w)], "workers outlived their parent"
    finally:
        for w in workers:  # this test's own workers, should they have survived
            if running(w):
                os.kill(w, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()

