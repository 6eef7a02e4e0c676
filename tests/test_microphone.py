"""The microphone path for real: a private PulseAudio daemon with a null sink plays a tone-burst clip in a loop;
the sink's monitor is the input PortAudio reaches through ALSA's pulse plugin (ALSA device 'pulse'), and MicSource
and audio_tagger.py record it through sounddevice, as they would a microphone.

Nothing global is touched: the daemon's socket, cookie and state live in a temporary folder, and only the
subprocesses started here are told where it is (PULSE_SERVER). MicSource runs in a subprocess too, because
PortAudio lists the devices once, when sounddevice is imported, and a test process may have imported it before
the daemon was there. Needs the Debian packages below (`make test` installs them); without them the tests fail.
"""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.helpers import tone
from utils.live.features import SAMPLE_RATE, OnlineV2
from utils.live.predictors import TorchPredictor
from utils.model_files import load_model_file, model_settings
from utils.paths import REPO
from utils.predict import load_trained_model

PACKAGES = "pulseaudio pulseaudio-utils libasound2-plugins"
MODEL = "models/vgg_gap_demo_no_pp.py"
CLASSES = ["a", "b", "c"]
DEVICE = "pulse"  # ALSA's pcm.pulse: the daemon's default source, which is the null sink's monitor
SINK = "fsdtag_mic"
TONE_HZ = 1000.0
WINDOW = 256

pytestmark = pytest.mark.slow  # a daemon, a player and two Python subprocesses: ~20 s


@dataclass
class VirtualMic:
    env: dict[str, str]  # the test process's environment plus where the daemon is, for its clients
    clip: np.ndarray     # int16, the clip the player loops


def _burst_clip() -> np.ndarray:
    """0.4 s of a 1 kHz tone then 0.1 s of silence, four times: onsets like a demo clip's, one clear pitch."""
    burst = np.concatenate([tone(0.4, SAMPLE_RATE, TONE_HZ), np.zeros(SAMPLE_RATE // 10, dtype=np.float32)])
    return np.round(np.tile(burst, 4) * 32767).astype(np.int16)


def _wait_for(what: str, ready, daemon: subprocess.Popen, log: Path, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if daemon.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what}; PulseAudio's log ({log}):\n{log.read_text()[-3000:]}", pytrace=False)
        time.sleep(0.1)


def _pactl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["pactl", *args], env=env, capture_output=True, text=True, timeout=10)


def _sink_latency(env: dict[str, str]) -> float:
    """Seconds of audio the null sink has rendered ahead (pactl list sinks: 'Latency: N usec, configured M usec')."""
    found = re.search(r"Latency: (\d+) usec", _pactl({**env, "LC_ALL": "C"}, "list", "sinks").stdout)
    return int(found[1]) / 1e6 if found else float("inf")


@pytest.fixture(scope="module")
def virtual_mic(tmp_path_factory: pytest.TempPathFactory):
    missing = [tool for tool in ("pulseaudio", "pactl", "paplay") if shutil.which(tool) is None]
    if not glob.glob("/usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so") + glob.glob(
            "/usr/lib/alsa-lib/libasound_module_pcm_pulse.so"):
        missing.append("ALSA's pulse plugin")
    if missing:
        pytest.fail(f"the microphone test needs {', '.join(missing)}: install the Debian packages {PACKAGES} "
                    f"(make apt does)", pytrace=False)
    run = tmp_path_factory.mktemp("pulse")
    run.chmod(0o700)
    socket = run / "native"
    assert len(str(socket)) < 100, f"{socket}: too long for a unix socket"
    script = run / "daemon.pa"
    script.write_text(f"load-module module-null-sink sink_name={SINK} rate={SAMPLE_RATE} channels=1\n"
                      f"load-module module-native-protocol-unix socket={socket} auth-anonymous=1 "
                      f"auth-cookie-enabled=0\n"
                      f"set-default-sink {SINK}\n"
                      f"set-default-source {SINK}.monitor\n")
    (run / "client.conf").write_text("autospawn = no\n")
    # The daemon gets a bare environment: its home, runtime and state folders here, and a session bus that does
    # not exist, so it neither touches the user's files nor registers on (or launches) a real D-Bus.
    daemon_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(run), "XDG_RUNTIME_DIR": str(run),
                  "PULSE_RUNTIME_PATH": str(run), "PULSE_STATE_PATH": str(run / "state"),
                  "DBUS_SESSION_BUS_ADDRESS": f"unix:path={run / 'no-bus'}"}
    env = {**os.environ, "PULSE_SERVER": f"unix:{socket}", "PULSE_COOKIE": str(run / "cookie"),
           "PULSE_CLIENTCONFIG": str(run / "client.conf")}
    clip = _burst_clip()
    sf.write(run / "clip.wav", clip, SAMPLE_RATE, subtype="PCM_16")
    log = run / "daemon.log"
    # --system=no: as root it warns and runs as a per-user daemon; no priority or realtime scheduling on CI's cores
    with open(log, "w") as log_file:
        daemon = subprocess.Popen(["pulseaudio", "-n", "-F", str(script), "--daemonize=no", "--exit-idle-time=-1",
                                   "--use-pid-file=no", "--system=no", "--disable-shm=yes", "--high-priority=no",
                                   "--realtime=no", "--log-target=stderr"],
                                  env=daemon_env, stdout=log_file, stderr=log_file, start_new_session=True)
    player = None
    try:
        _wait_for("the PulseAudio daemon did not start", lambda: _pactl(env, "info").returncode == 0, daemon, log)
        player = subprocess.Popen(["bash", "-c", f'while paplay --device={SINK} --latency-msec=20 "$0"; do :; done',
                                   str(run / "clip.wav")], env=env, start_new_session=True)
        _wait_for("paplay is not playing into the null sink",
                  lambda: _pactl(env, "list", "short", "sink-inputs").stdout.strip() != "", daemon, log)
        # an idle null sink renders 2 s ahead; until that block is out, a new recording gets its first audio only
        # ~2 s after it starts (no microphone does that), so wait until the player's 20 ms latency holds
        _wait_for("the null sink's latency did not come down to the player's", lambda: _sink_latency(env) < 0.1,
                  daemon, log)
        yield VirtualMic(env, clip)
    finally:
        for proc in (player, daemon):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


# records 1.5 s through MicSource in a fresh process (see the docstring), saves the samples, prints what it opened
PROBE = """
import json, sys
import numpy as np
from utils.live.sources import MicSource, list_devices
source = MicSource(sys.argv[1])
source.start()
blocks = []
try:
    while sum(len(b) for b in blocks) < 1.5 * source.rate:
        blocks.append(source.read().samples)
finally:
    source.stop()
np.save(sys.argv[2], np.concatenate(blocks))
print(json.dumps({"devices": list_devices(), "name": source.info["name"], "rate": source.rate,
                  "dtype": str(blocks[0].dtype)}))
"""


def test_mic_source_records_the_played_clip(virtual_mic, tmp_path):
    run = subprocess.run([sys.executable, "-c", PROBE, DEVICE, str(tmp_path / "rec.npy")], cwd=REPO,
                         env=virtual_mic.env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout)
    assert DEVICE in info["devices"]
    assert (info["name"], info["rate"], info["dtype"]) == (DEVICE, SAMPLE_RATE, "int16")
    # the last second, after any start-up silence: two periods of the clip, so its level is the clip's
    x = np.load(tmp_path / "rec.npy")[-SAMPLE_RATE:].astype(np.float64)
    clip = virtual_mic.clip.astype(np.float64)
    rms, clip_rms = np.sqrt(np.mean(x ** 2)), np.sqrt(np.mean(clip ** 2))
    assert 0.85 < rms / clip_rms < 1.15, (rms, clip_rms)  # kept at the recorded level, as the module says
    peak = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)[np.abs(np.fft.rfft(x)).argmax()]
    assert abs(peak - TONE_HZ) <= 2, peak


@pytest.fixture(scope="module")
def params(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Untrained weights: this test checks the audio path, not what the network knows."""
    with torch.random.fork_rng():  # seeded, without reseeding the other tests' generator
        torch.manual_seed(0)
        module = load_model_file(MODEL)
        model = module.build_model(len(CLASSES))
    path = tmp_path_factory.mktemp("mic_params") / "params.pt"
    torch.save({"state_dict": model.state_dict(),
                "config": {"classes": CLASSES, "model": MODEL, "settings": model_settings(module)}}, path)
    return path


def test_audio_tagger_tags_the_microphone(virtual_mic, params):
    run = subprocess.run([sys.executable, "audio_tagger.py", "--headless", "--input_device", DEVICE,
                          "--max_seconds", "3", "--model", MODEL, "--params", str(params)],
                         cwd=REPO, env=virtual_mic.env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert f"tagging input device '{DEVICE}' at {SAMPLE_RATE} Hz with {len(CLASSES)} classes" in run.stderr
    summary = re.search(r"(\d+) predictions in [\d.]+ s \([\d.]+/s\) over ([\d.]+) s of audio; "
                        r"(\d+) skipped of (\d+) due", run.stderr)
    assert summary, run.stderr
    predictions, skipped, due = (int(summary[i]) for i in (1, 3, 4))
    assert float(summary[2]) >= 3.0
    # 3 s are 750 frames: a prediction due every 10 frames once 256 are there, ~50 in all
    assert predictions > 0 and predictions + skipped == due and 45 <= due <= 60
    last = re.search(r"last prediction: (.*)", run.stdout)
    assert last, run.stdout
    heard = {c: float(p) for c, p in (item.rsplit(" ", 1) for item in last[1].split(", "))}
    # the tagger heard the clip, not silence: its last posterior is not the one this network gives silence
    silent_window = OnlineV2().push(np.zeros(2 * SAMPLE_RATE, dtype=np.int16))[-WINDOW:].T
    silence = TorchPredictor(load_trained_model(MODEL, params)[0], optimize=False)(silent_window)
    assert max(abs(heard[c] - p) for c, p in zip(CLASSES, silence, strict=True)) > 0.003, (heard, silence)
