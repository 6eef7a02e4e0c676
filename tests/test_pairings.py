"""Faults that used to pass silently or end in a traceback: params run under a model file (or spectrogram folder)
of other features, NaN/inf samples, clips shorter than the live tagger's window, unreadable params files and
bad tagger flags. Real files throughout: small wavs, and demo networks with random weights saved as training
saves them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import audio_tagger
import prepare_spectrograms
from utils.audio import AudioError, load_audio
from utils.live.predictors import load_predictor
from utils.live.sources import FileSource
from utils.live.tagger import LiveTagger, run_stream
from utils.model_files import load_model_file, model_settings
from utils.paths import MANIFEST_NAME, REPO
from utils.predict import check_pairing, check_spec_folder, load_params, load_state, load_trained_model
from utils.spec_data import fix_length
from utils.spectrogram import spectrogram_from_file
from utils.spectrogram_cache import FAILED_NAME

CLASSES = ["Bass_drum", "Cello", "Flute"]
V1 = "models/vgg_gap_demo.py"             # spectrogram v1, SoX preprocessing
V2 = "models/vgg_gap_demo_v2.py"          # v2, SoX preprocessing
V2_NO_PP = "models/vgg_gap_demo_no_pp.py"  # v2, no preprocessing: the live tagger's
SR = 32000


def save_params(path: Path, model_file: str, legacy: bool = False, seed: int = 0) -> Path:
    """Random weights of the model file's network, saved as utils/training.py saves them. legacy: a config without
    the training settings (no 'settings', no 'spec_dir'), which no fsdtag version writes."""
    torch.manual_seed(seed)
    model = load_model_file(model_file).build_model(n_classes=len(CLASSES))
    settings = model_settings(load_model_file(model_file))
    if legacy:
        config = {"classes": CLASSES, "model": model_file}
    else:
        spec_dir = f"specs_train_v{settings['spec_version']}" + ("" if settings["preprocessing"] else "_no_pp")
        config = {"model": model_file, "spec_dir": spec_dir, "fold": 1, "tag": "it0", "max_len": 3000,
                  "settings": settings, "classes": CLASSES, "epochs": 1}
    torch.save({"state_dict": model.state_dict(), "config": config}, path)
    return path


def write_wav(path: Path, seconds: float, subtype: str = "PCM_16", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = 0.4 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t))
    sf.write(path, x.astype(np.float32), SR, subtype=subtype)
    return path


def run_script(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env.pop("DISPLAY", None)
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=180, env=env)


def assert_one_line_error(run: subprocess.CompletedProcess, *expected: str) -> str:
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.stderr
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


# ---- 1. params under a model file / spectrogram folder of other features ---------------------------------------

@pytest.mark.parametrize("trained, used, versions", [
    (V1, V2, ("version 1 with SoX", "version 2 with SoX")),
    (V2, V1, ("version 2 with SoX", "version 1 with SoX")),
    (V2, V2_NO_PP, ("version 2 with SoX", "version 2 without SoX")),
    (V2_NO_PP, V2, ("version 2 without SoX", "version 2 with SoX")),
])
def test_params_under_model_file_of_other_features_are_refused(tmp_path, trained, used, versions):
    params = save_params(tmp_path / "params_1_it0.pt", trained)
    with pytest.raises(ValueError) as info:
        load_trained_model(used, params)
    message = str(info.value)
    assert "\n" not in message
    assert str(params) in message and used in message
    assert message.index(versions[0]) < message.index(versions[1])


@pytest.mark.parametrize("model_file", [V1, V2, V2_NO_PP])
def test_matching_params_load_and_params_without_settings_are_refused(tmp_path, model_file):
    params = save_params(tmp_path / "p.pt", model_file)
    model, config = load_trained_model(model_file, params)
    assert config["classes"] == CLASSES
    assert model(torch.zeros(1, 1, 128, 256)).shape == (1, len(CLASSES))
    # without recorded settings the pairing cannot be checked: not a file train.py writes
    with pytest.raises(ValueError, match="not an fsdtag parameter file .*training settings"):
        load_trained_model(model_file, save_params(tmp_path / "bare.pt", model_file, legacy=True))


def test_fine_tuning_init_goes_through_the_same_check(tmp_path):
    """training.py loads --ini_params with load_params + load_state: the check lives in load_state."""
    params = save_params(tmp_path / "params_1_it0.pt", V1)
    model = load_model_file(V2).build_model(n_classes=len(CLASSES))
    with pytest.raises(ValueError, match="version 1.*version 2"):
        load_state(model, load_params(params), params, V2)
    # the model file's settings can be passed in instead of loaded again
    check_pairing(load_params(params)["config"], params, V1, model_settings(load_model_file(V1)))


def write_manifest(folder: Path, version: int, preprocessing: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST_NAME).write_text(json.dumps(
        {"spec_version": version, "preprocessing": {"sox_silence_clipping": preprocessing}, "params": {}}))
    return folder


def test_spec_folder_of_other_features_is_refused(tmp_path):
    params = save_params(tmp_path / "params_1_it0.pt", V2)
    config = load_params(params)["config"]
    check_spec_folder(write_manifest(tmp_path / "specs_train_v2", 2, True), config, params)
    for name, version, pp, made in [("v1", 1, True, "version 1 with SoX"),
                                    ("v2_no_pp", 2, False, "version 2 without SoX")]:
        folder = write_manifest(tmp_path / f"specs_train_{name}", version, pp)
        with pytest.raises(ValueError) as info:
            check_spec_folder(folder, config, params)
        message = str(info.value)
        assert "\n" not in message and str(folder) in message and str(params) in message
        assert made in message and "version 2 with SoX" in message
    # a folder prepare_spectrograms.py did not make, or none at all, is refused too
    (tmp_path / "bare").mkdir()
    with pytest.raises(ValueError, match="has no manifest.json, so its features are unknown"):
        check_spec_folder(tmp_path / "bare", config, params)
    with pytest.raises(FileNotFoundError, match="spectrogram folder .*nowhere not found"):
        check_spec_folder(tmp_path / "nowhere", config, params)


def test_spec_folder_check_reads_prepare_spectrograms_manifests(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    write_wav(audio / "a.wav", 0.5)
    spec_dir = tmp_path / "specs_train_v2_no_pp"
    assert prepare_spectrograms.main(prepare_spectrograms.parse_args(
        ["--audio_path", str(audio), "--spec_path", str(spec_dir), "--spec_version", "2", "--no_preprocessing",
         "--dump", "--jobs", "1", "--no_progress"])) == 0
    good = save_params(tmp_path / "good.pt", V2_NO_PP)
    check_spec_folder(spec_dir, load_params(good)["config"], good)
    bad = save_params(tmp_path / "bad.pt", V2)
    with pytest.raises(ValueError, match="without SoX.*with SoX"):
        check_spec_folder(spec_dir, load_params(bad)["config"], bad)


@pytest.mark.slow
def test_live_tagger_and_export_refuse_wrong_pairing(tmp_path):
    params = save_params(tmp_path / "params_1_it0.pt", V2)  # trimmed-audio params under the no-SoX model file
    with pytest.raises(ValueError, match="without SoX"):
        load_predictor(V2_NO_PP, params, "torch", 256)
    wav = write_wav(tmp_path / "clip.wav", 1.5)
    run = run_script("audio_tagger.py", "--model", V2_NO_PP, "--params", str(params), "--input", str(wav),
                     "--speed", "0", "--headless")
    assert_one_line_error(run, str(params), V2_NO_PP, "version 2 with SoX", "version 2 without SoX")
    run = run_script("export_onnx.py", "--model", V2_NO_PP, "--params", str(params), "--out", str(tmp_path / "m.onnx"))
    assert_one_line_error(run, str(params), V2_NO_PP)
    assert not (tmp_path / "m.onnx").exists()


# ---- 2. NaN / inf samples -------------------------------------------------------------------------------------------

def write_non_finite(path: Path, value: float, subtype: str) -> Path:
    x = np.full((SR // 2, 2), 0.1, dtype=np.float64)
    x[1000:1010, 1] = value
    sf.write(path, x, SR, subtype=subtype)
    return path


@pytest.mark.parametrize("preprocess", [True, False])
@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_an_audio_error(tmp_path, preprocess, subtype, value):
    path = write_non_finite(tmp_path / "bad.wav", value, subtype)
    with pytest.raises(AudioError, match="10 NaN/inf sample.*first at sample 1000") as info:
        load_audio(path, preprocess=preprocess)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(AudioError):
        spectrogram_from_file(path, 2, preprocess=preprocess)


def test_finite_float_wav_still_reads(tmp_path):
    path = tmp_path / "ok.wav"
    sf.write(path, np.full(SR // 2, 0.1, dtype=np.float32), SR, subtype="FLOAT")
    assert np.isfinite(load_audio(path, preprocess=False)).all()


def test_prepare_spectrograms_lists_nan_file_as_failed(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    write_wav(audio / "good.wav", 0.5)
    write_non_finite(audio / "nan.wav", np.nan, "FLOAT")
    spec_dir = tmp_path / "specs"
    assert prepare_spectrograms.main(prepare_spectrograms.parse_args(
        ["--audio_path", str(audio), "--spec_path", str(spec_dir), "--spec_version", "1", "--dump", "--jobs", "1",
         "--no_progress"])) == 1
    failed = (spec_dir / FAILED_NAME).read_text()
    assert "nan.wav" in failed and "NaN/inf" in failed
    assert {p.name for p in spec_dir.glob("*.npy")} == {"good.npy"}


@pytest.mark.slow
def test_live_tagger_file_input_refuses_nan(tmp_path):
    path = write_non_finite(tmp_path / "nan.wav", np.nan, "FLOAT")
    with pytest.raises(AudioError, match="NaN/inf"):
        FileSource(path, speed=0)
    params = save_params(tmp_path / "p.pt", V2_NO_PP)
    run = run_script("audio_tagger.py", "--model", V2_NO_PP, "--params", str(params), "--input", str(path),
                     "--speed", "0", "--headless")
    assert_one_line_error(run, str(path), "NaN/inf")


# ---- 3. clips shorter than the live tagger's window -------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("seconds", [0.04, 0.5, 1.0])  # 0.04 s: just over one spectrogram frame
def test_short_clip_gets_one_prediction_on_tiled_frames(tmp_path, seconds):
    torch.set_num_threads(2)
    wav = write_wav(tmp_path / "short.wav", seconds)
    params = save_params(tmp_path / "p.pt", V2_NO_PP)
    predict, classes = load_predictor(V2_NO_PP, params, "torch", 256)
    tagger = LiveTagger(predict, window=256, predict_every_k=10)
    stats = run_stream(tagger, FileSource(wav, speed=0))
    offline = spectrogram_from_file(wav, 2, preprocess=False)  # what prepare_spectrograms writes
    assert offline.shape[1] < 256 and tagger.n_frames == offline.shape[1]
    assert stats.predictions == 1 and stats.tiled_from == offline.shape[1]
    # the posterior offline evaluation gives the clip tiled to the window (utils.spec_data.fix_length)
    model, _ = load_trained_model(V2_NO_PP, params)
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(fix_length(offline, 256)))[None, None]
        ref = torch.softmax(model.eval()(x).double(), 1)[0].numpy()
    np.testing.assert_allclose(tagger.last.probs, ref, atol=1e-4)
    assert "tiled" in stats.summary()


def test_clip_of_exactly_one_window_is_not_tiled(tmp_path):
    wav = write_wav(tmp_path / "w.wav", 256 * 128 / SR)  # 256 frames
    tagger = LiveTagger(lambda w: np.full(3, w.shape[1], dtype=float), window=256, predict_every_k=1)
    stats = run_stream(tagger, FileSource(wav, speed=0))
    assert tagger.n_frames == 256 and stats.predictions == 1 and stats.tiled_from == 0


@pytest.mark.slow
def test_short_clip_cli_predicts_and_says_so(tmp_path):
    wav = write_wav(tmp_path / "short.wav", 0.5)
    params = save_params(tmp_path / "p.pt", V2_NO_PP)
    run = run_script("audio_tagger.py", "--model", V2_NO_PP, "--params", str(params), "--input", str(wav),
                     "--speed", "0", "--headless")
    assert run.returncode == 0, run.stderr
    assert "last prediction:" in run.stdout
    assert "1 predictions" in run.stderr and "tiled to fill the window" in run.stderr


# ---- 4. one-line errors -------------------------------------------------------------------------------------------

def broken_params(tmp_path: Path) -> dict[str, Path]:
    good = save_params(tmp_path / "good.pt", V2_NO_PP)
    out = {"zero": tmp_path / "zero.pt", "random": tmp_path / "random.pt", "truncated": tmp_path / "truncated.pt"}
    out["zero"].write_bytes(b"")
    out["random"].write_bytes(np.random.default_rng(0).bytes(4096))
    data = good.read_bytes()
    out["truncated"].write_bytes(data[:len(data) // 2])
    not_params = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), not_params)
    out["not_params"] = not_params
    return out


@pytest.mark.parametrize("case", ["zero", "random", "truncated", "not_params"])
def test_unreadable_params_file_is_one_line_value_error(tmp_path, case):
    path = broken_params(tmp_path)[case]
    with pytest.raises(ValueError) as info:
        load_params(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message and "weights_only" not in message
    assert "fsdtag parameter file" in message
    if case != "not_params":
        assert "not a readable fsdtag parameter file" in message
    with pytest.raises(FileNotFoundError, match="is a folder"):
        load_params(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("script", ["audio_tagger", "export_onnx", "eval"])
def test_scripts_report_truncated_params_in_one_line(tmp_path, script):
    path = broken_params(tmp_path)["truncated"]
    wav = write_wav(tmp_path / "clip.wav", 1.2)
    args = {"audio_tagger": ["--input", str(wav), "--speed", "0", "--headless"],
            "export_onnx": ["--out", str(tmp_path / "m.onnx")],
            "eval": ["--set", "valid", "--data_root", str(tmp_path), "--exp_root", str(tmp_path)]}[script]
    run = run_script(f"{script}.py", "--model", V2_NO_PP, "--params", str(path), *args)
    assert_one_line_error(run, str(path), "not a readable fsdtag parameter file")
    assert "weights_only" not in run.stderr


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing", "corrupt", "folder", "zero_samples"])
def test_tagger_input_problems_are_one_line(tmp_path, case):
    params = save_params(tmp_path / "p.pt", V2_NO_PP)
    path = {"missing": tmp_path / "missing.wav", "corrupt": tmp_path / "corrupt.wav", "folder": tmp_path,
            "zero_samples": tmp_path / "empty.wav"}[case]
    if case == "corrupt":
        path.write_bytes(b"RIFF not really a wav" * 40)
    if case == "zero_samples":
        sf.write(path, np.zeros(0, dtype=np.float32), SR)
    run = run_script("audio_tagger.py", "--model", V2_NO_PP, "--params", str(params), "--input", str(path),
                     "--speed", "0", "--headless")
    assert_one_line_error(run, "--input", str(path))


@pytest.mark.parametrize("flag, value", [("--window", "10"), ("--window", "255"), ("--predict_every_k", "0"),
                                         ("--speed", "-1"), ("--top", "0"), ("--threads", "0"),
                                         ("--max_seconds", "0")])
def test_tagger_bad_flags_are_refused_up_front(flag, value):
    args = audio_tagger.parse_args(["--model", V2_NO_PP, "--params", "p.pt", flag, value])
    with pytest.raises(ValueError, match=flag):
        audio_tagger.check_args(args)


@pytest.mark.slow
def test_tagger_small_window_is_one_line(tmp_path):
    params = save_params(tmp_path / "p.pt", V2_NO_PP)
    wav = write_wav(tmp_path / "clip.wav", 1.2)
    run = run_script("audio_tagger.py", "--model", V2_NO_PP, "--params", str(params), "--input", str(wav),
                     "--headless", "--window", "10")
    assert_one_line_error(run, "--window must be at least 256", "got 10")


@pytest.mark.slow
def test_window_checked_by_library_and_export(tmp_path):
    params = save_params(tmp_path / "p.pt", V2_NO_PP)
    with pytest.raises(ValueError, match="--window must be at least 256"):
        load_predictor(V2_NO_PP, params, "torch", 10)
    with pytest.raises(ValueError, match="--window must be at least 256"):
        LiveTagger(lambda w: w, window=100)
    run = run_script("export_onnx.py", "--model", V2_NO_PP, "--params", str(params), "--out",
                     str(tmp_path / "m.onnx"), "--window", "10")
    assert_one_line_error(run, "--window must be at least 256")
