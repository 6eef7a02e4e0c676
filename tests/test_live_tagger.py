"""The live tagger: streamed features equal offline ones, a streamed clip gets the offline posteriors, the
headless view, the no-device error, and skipped predictions when the model is slower than the audio."""

import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

import audio_tagger
import prepare_spectrograms
from tests.helpers import tone
from utils.demo.dataset import build_demo_dataset
from utils.live.features import HOP_SIZE, SAMPLE_RATE, stream_spectrogram
from utils.live.predictors import load_predictor
from utils.live.sources import Block, FileSource, MicSource, NoInputDevice
from utils.live.tagger import LiveTagger, run_stream
from utils.live.views import ViewFigure, draw_view, save_view
from utils.model_files import load_model_file, model_settings
from utils.spectrogram import spectrogram_v2, to_int16

MODEL = "models/vgg_gap_demo_no_pp.py"
# five classes, so that "in the top 3" (test_room_recorded_clip_in_the_top_3) is not a given
CLASSES = ["Bass_drum", "Cello", "Flute", "Glockenspiel", "Hi-hat"]
WINDOW = 256


# ---- features ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("block", [1, 127, 128, 1000, 4096])
def test_streamed_features_equal_offline(block):
    rng = np.random.default_rng(block)
    x = (0.2 * rng.standard_normal(32000 + 333)).astype(np.float32)
    x = x[:20_000] if block == 1 else x  # one sample at a time is slow
    streamed = stream_spectrogram(x, block)
    offline = spectrogram_v2(x, norm=False)
    assert streamed.shape == offline.shape
    np.testing.assert_allclose(streamed, offline, rtol=0, atol=1e-5)


def test_short_stream_matches_offline_padding():
    x = np.full(300, 0.5, dtype=np.float32)  # shorter than one frame: offline pads to 3 frames
    np.testing.assert_allclose(stream_spectrogram(x, 100), spectrogram_v2(x, norm=False), atol=1e-5)


# ---- a demo-trained model ---------------------------------------------------------------------------------------

def _train(model: torch.nn.Module, specs: list[np.ndarray], labels: list[int], steps: int = 200) -> None:
    """A few Adam steps on random 256-frame excerpts with the true labels (this tests the tagger, not training)."""
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        idx = rng.integers(0, len(specs), 8)
        batch = []
        for i in idx:
            s = specs[i]
            s = np.tile(s, (1, -(-WINDOW // s.shape[1]))) if s.shape[1] < WINDOW else s
            start = rng.integers(0, s.shape[1] - WINDOW + 1)
            batch.append(s[:, start:start + WINDOW])
        x = torch.from_numpy(np.stack(batch))[:, None]
        loss = torch.nn.functional.cross_entropy(model(x), torch.from_numpy(np.array(labels)[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("live_demo")
    # scored clips only: the tagger is tested on clips it can tag, not on the real test set's broken ones
    build_demo_dataset(root, clips_per_class=10, test_clips_per_class=3, seed=3, classes=CLASSES, padding_clips=0,
                       empty_clips=0, unreadable_clips=0, broken_scored=0)
    for split in ("train", "test"):
        code = prepare_spectrograms.main(prepare_spectrograms.parse_args(
            ["--audio_path", str(root / f"audio_{split}"), "--spec_path", str(root / f"specs_{split}_v2_no_pp"),
             "--spec_version", "2", "--no_preprocessing", "--dump", "--jobs", "1", "--no_progress"]))
        assert code == 0
    train = pd.read_csv(root / "train.csv")
    specs = [np.load(root / "specs_train_v2_no_pp" / f.replace(".wav", ".npy")) for f in train.fname]
    module = load_model_file(MODEL)
    model = module.build_model(len(CLASSES))
    _train(model, specs, [CLASSES.index(c) for c in train.true_label])
    params = root / "params.pt"
    torch.save({"state_dict": model.state_dict(),
                "config": {"classes": CLASSES, "model": MODEL, "settings": model_settings(module)}}, params)
    out = {"root": root, "model": model, "params": params}
    out["clip"] = _pick_clip(out)
    return out


def _offline_window_probs(model: torch.nn.Module, spec: np.ndarray, end: int) -> np.ndarray:
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(spec[:, end - WINDOW:end]))[None, None]
        return torch.softmax(model(x).double(), 1)[0].numpy()


def _pick_clip(demo: dict) -> tuple[Path, str, np.ndarray]:
    """The test clip (long enough for several windows) whose offline windows the model tags right most often.
    The share is asked to beat chance (1/5) widely, not to reach a figure one machine's training happens to give."""
    root, model = demo["root"], demo["model"]
    test = pd.read_csv(root / "test_post_competition.csv")
    best, best_share = None, 0.0
    for fname, label in zip(test.fname, test.label, strict=True):
        spec = np.load(root / "specs_test_v2_no_pp" / fname.replace(".wav", ".npy"))
        if spec.shape[1] < WINDOW + 50:
            continue
        ends = range(WINDOW, spec.shape[1] + 1, 25)
        share = np.mean([CLASSES[int(np.argmax(_offline_window_probs(model, spec, e)))] == label for e in ends])
        if share > best_share:
            best, best_share = (root / "audio_test" / fname, label, spec), share
    if best is not None and best_share >= 0.6:
        return best
    pytest.fail("the demo model tags no test clip right offline: training too short?")


@pytest.mark.slow
def test_streamed_file_reproduces_offline_prediction(demo):
    audio, label, offline_spec = demo["clip"]
    predict, classes = load_predictor(MODEL, demo["params"], "torch", WINDOW)
    assert classes == CLASSES
    tagger = LiveTagger(predict, window=WINDOW, predict_every_k=25)
    source = FileSource(audio, speed=0)
    preds = []
    stats = run_stream(tagger, source, lambda t, p: p is not None and preds.append(p))
    assert stats.skipped == 0 and len(preds) == stats.predictions > 0
    # the streamed features are the prepare_spectrograms ones, and each posterior is the offline window's
    assert tagger.n_frames == offline_spec.shape[1]
    np.testing.assert_allclose(tagger.current_window(), offline_spec[:, -WINDOW:], atol=1e-5)
    for p in preds:
        np.testing.assert_allclose(p.probs, _offline_window_probs(demo["model"], offline_spec, p.end_frame),
                                   atol=1e-4)
    # the stream tags the clip as offline does: its windows' majority is the true label (chosen so offline)
    streamed_top = [classes[int(np.argmax(p.probs))] for p in preds]
    assert max(set(streamed_top), key=streamed_top.count) == label


@pytest.mark.slow
def test_room_recorded_clip_in_the_top_3(demo, capsys):
    """The clip as a microphone in a room would hear it (a chain the build never drew) still has its class among
    the tagger's top 3 of 5."""
    audio, label, _ = demo["clip"]
    args = audio_tagger.parse_args(["--model", MODEL, "--params", str(demo["params"]), "--input", str(audio),
                                    "--room", "2026", "--speed", "0", "--headless", "--top", "3"])
    assert audio_tagger.main(args) == 0
    out = capsys.readouterr()
    assert "through a simulated room and microphone (room_size=" in out.err
    last = out.out.split("last prediction: ")[-1].strip()
    top3 = [item.rsplit(" ", 1)[0] for item in last.split(", ")]
    assert len(top3) == 3 and label in top3, (label, last)


@pytest.mark.slow
def test_onnx_backend_matches_torch(demo):
    audio, _, offline_spec = demo["clip"]
    x = np.ascontiguousarray(offline_spec[:, :WINDOW])
    torch_pred, _ = load_predictor(MODEL, demo["params"], "torch", WINDOW)
    onnx_pred, _ = load_predictor(MODEL, demo["params"], "onnx", WINDOW)
    np.testing.assert_allclose(onnx_pred(x), torch_pred(x), atol=1e-4)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's header; fails on anything that is not a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def assert_view_size(png: Path) -> None:
    # the 7 x 6 in figure at 120 dpi (840 x 720), trimmed of its blank margins by bbox_inches='tight'
    width, height = png_size(png)
    assert 0.8 * 840 <= width <= 840 and 0.8 * 720 <= height <= 720


@pytest.mark.slow
def test_headless_view_saves_spectrogram_and_bars(demo, tmp_path, capsys):
    audio, label, _ = demo["clip"]
    png = tmp_path / "view.png"
    args = audio_tagger.parse_args(["--model", MODEL, "--params", str(demo["params"]), "--input", str(audio),
                                    "--speed", "0", "--headless", "--top", "3", "--save_view", str(png)])
    assert audio_tagger.main(args) == 0
    out = capsys.readouterr()
    assert "last prediction:" in out.out and "waiting for audio" in out.out
    assert "predictions in" in out.err and "skipped" in out.err
    assert_view_size(png)  # what the view draws: test_view_draws_the_window_and_the_top_classes


def fed_tagger(frames: int, probs: np.ndarray) -> LiveTagger:
    """A tagger whose model always answers `probs`, fed a tone until it holds `frames` frames."""
    tagger = LiveTagger(lambda window: probs, window=WINDOW, predict_every_k=10)
    samples = to_int16(tone(2.0, SAMPLE_RATE, amp=0.3))
    for i in range(0, len(samples), HOP_SIZE):
        if tagger.n_frames >= frames:
            break
        tagger.feed(Block(samples[i:i + HOP_SIZE], 0.0))
    assert tagger.n_frames == frames
    return tagger


def test_view_draws_the_window_and_the_top_classes(tmp_path):
    from matplotlib.figure import Figure

    classes = ["a", "b", "c", "d"]
    tagger = fed_tagger(300, np.array([0.1, 0.5, 0.3, 0.1]))
    fig = Figure()
    draw_view(fig, tagger, classes, top=2)
    ax_spec, ax_bars = fig.axes
    np.testing.assert_array_equal(ax_spec.images[0].get_array(), tagger.current_window())
    bars = sorted(ax_bars.patches, key=lambda p: p.get_y())
    assert [p.get_width() for p in bars] == [0.5, 0.3]  # the top 2, most likely first
    assert [t.get_text() for t in ax_bars.get_yticklabels()] == ["b", "c"]
    assert ax_bars.yaxis_inverted()  # so the first is drawn on top
    assert_view_size(save_view(tagger, classes, tmp_path / "view.png", top=2))


def test_view_before_the_window_is_full(tmp_path):
    from matplotlib.figure import Figure

    tagger = fed_tagger(100, np.full(3, 1 / 3))
    fig = Figure()
    draw_view(fig, tagger, ["a", "b", "c"])
    ax_spec, ax_bars = fig.axes
    image = ax_spec.images[0].get_array()
    # new frames enter on the right: the 100 frames so far, and nothing yet to their left
    np.testing.assert_array_equal(image[:, -100:], tagger.current_window())
    assert not image[:, :-100].any()
    assert not any(p.get_visible() for p in ax_bars.patches)
    assert [t.get_text() for t in ax_bars.texts] == [f"waiting for audio (100/{WINDOW} frames)"]


def test_view_updates_in_place():
    """The live view changes its artists' data frame by frame, and shows what a freshly drawn view would."""
    from matplotlib.figure import Figure

    classes = ["a", "b", "c", "d"]
    view = ViewFigure(Figure(), WINDOW, classes, top=2)
    view.show(fed_tagger(100, np.full(4, 0.25)))
    assert not any(b.get_visible() for b in view.bars)
    later = fed_tagger(300, np.array([0.1, 0.2, 0.3, 0.4]))
    view.show(later)
    assert view.waiting.get_text() == "" and all(b.get_visible() for b in view.bars)
    assert [b.get_width() for b in view.bars] == [0.4, 0.3]
    assert [t.get_text() for t in view.ax_bars.get_yticklabels()] == ["d", "c"]
    np.testing.assert_array_equal(view.image.get_array(), later.current_window())
    assert len(view.ax_spec.images) == 1 and len(view.ax_bars.patches) == 2  # nothing added per frame


# ---- devices ----------------------------------------------------------------------------------------------------

def test_no_device_is_one_line_error(monkeypatch):
    import sounddevice as sd

    def no_device(device=None, kind=None):
        raise sd.PortAudioError("Error querying device -1")

    monkeypatch.setattr(sd, "query_devices", no_device)
    with pytest.raises(NoInputDevice, match="--list_devices.*--input"):
        MicSource(None)


def test_device_without_usable_rate(monkeypatch):
    import sounddevice as sd

    monkeypatch.setattr(sd, "query_devices", lambda device=None, kind=None: {
        "name": "old headset", "index": 3, "max_input_channels": 1, "default_samplerate": 16000.0})

    def refuse(*a, **kw):
        raise sd.PortAudioError("Invalid sample rate")

    monkeypatch.setattr(sd, "check_input_settings", refuse)
    with pytest.raises(NoInputDevice, match="cannot record at 32000 Hz.*--list_devices.*--input"):
        MicSource("3")


@pytest.mark.slow
def test_cli_without_sound_card_prints_one_line(tmp_path):
    import sounddevice as sd

    try:
        sd.query_devices(kind="input")
        pytest.skip("this machine has an input device")
    except sd.PortAudioError:
        pass
    run = subprocess.run([sys.executable, "audio_tagger.py", "--model", MODEL, "--params", str(tmp_path / "p.pt"),
                          "--headless"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "--input" in lines[0]
    assert "Traceback" not in run.stderr


# ---- scheduling -------------------------------------------------------------------------------------------------

def test_a_late_block_gets_one_prediction_on_the_newest_window():
    """A slow model makes the next read return more audio at once: the due points it passes are skipped, not
    queued, and the one prediction is of the newest window."""
    samples = to_int16(tone(2.0, SAMPLE_RATE, amp=0.3))
    windows = []
    tagger = LiveTagger(lambda window: windows.append(window.copy()) or np.full(3, 1 / 3), window=WINDOW,
                        predict_every_k=10)
    pos = 0

    def feed(hops: int):
        nonlocal pos
        pred = tagger.feed(Block(samples[pos:pos + hops * HOP_SIZE], 0.0))
        pos += hops * HOP_SIZE
        return pred

    # one hop a frame once the first 1024 samples are in: 277 hops are 270 frames, due points at 260 and 270
    preds = [feed(1) for _ in range(277)]
    assert tagger.n_frames == 270 and [p.end_frame for p in preds if p] == [260, 270]
    assert all(p.skipped == 0 for p in preds if p)
    late = feed(45)  # 45 frames at once: due points 280, 290, 300 and 310 passed
    assert tagger.n_frames == 315
    assert late.end_frame == 315 and late.skipped == 3 and len(windows) == 3
    offline = spectrogram_v2(samples, norm=False)
    np.testing.assert_allclose(windows[-1], offline[:, 315 - WINDOW:315], atol=1e-5)
    assert feed(1) is None  # frame 316: nothing due
    assert tagger.stats.predictions == 3 and tagger.stats.skipped == 3


def test_slow_model_on_a_timed_stream_skips_instead_of_queueing(tmp_path):
    wav = tmp_path / "tone.wav"
    sf.write(wav, tone(2.0, SAMPLE_RATE), SAMPLE_RATE)

    def slow(window: np.ndarray) -> np.ndarray:
        time.sleep(0.1)  # a prediction is due every 10 frames, 10 ms of this 4x stream: far too slow
        return np.full(3, 1 / 3)

    tagger = LiveTagger(slow, window=WINDOW, predict_every_k=10)
    stats = run_stream(tagger, FileSource(wav, speed=4.0))
    due = tagger.n_frames // 10 - (WINDOW - 1) // 10
    # a queue would make every due prediction (none skipped); the tagger makes some and counts the rest
    assert 0 < stats.predictions and 0 < stats.skipped and stats.predictions + stats.skipped == due
    assert f"{stats.skipped} skipped of {due} due" in stats.summary()


def test_mic_source_counts_lost_input(monkeypatch):
    """PortAudio flags a block recorded after input was lost; the source counts them so the tagger can say so."""
    import sounddevice as sd

    monkeypatch.setattr(sd, "query_devices", lambda device=None, kind=None: {
        "name": "busy mic", "index": 1, "max_input_channels": 1, "default_samplerate": 32000.0})
    monkeypatch.setattr(sd, "check_input_settings", lambda *a, **kw: None)
    source = MicSource("1")
    block = np.arange(8, dtype=np.int16).reshape(-1, 1)
    source._callback(block, 8, None, sd.CallbackFlags())
    lost = sd.CallbackFlags()
    lost.input_overflow = True
    source._callback(block, 8, None, lost)
    assert source.overflows == 1
    got = source.read(timeout=0.1)
    assert got.samples.tolist() == list(range(8)) * 2  # both blocks kept, in order
