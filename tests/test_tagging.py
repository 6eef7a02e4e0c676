"""Bundles and tag_files.py: round trip, equality with the offline eval.py + fusion.py path, segments, bad inputs,
and the CSV's rows and order."""

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import eval as eval_script
import export_bundle
import fusion
import prepare_spectrograms
import tag_files
import train
from utils.demo.dataset import build_demo_dataset
from utils.spectrogram import spectrogram_from_file
from utils.tagging import BUNDLE_FORMAT, BundleError, Tagger, load_bundle, save_bundle

SR = 22050  # not the networks' 32 kHz, so resampling is on the path
BAND_MODEL = '''"""Test network: a linear map of the time-averaged spectrogram, so its answer is known in advance."""
import torch
from torch import nn

SETTINGS = {"spec_version": 2, "preprocessing": True}


class Bands(nn.Module):
    def __init__(self, n_classes):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_classes, 128))

    def forward(self, x):
        return x.mean(dim=(1, 3)) @ self.weight.T


def build_model(n_classes=2):
    return Bands(n_classes)
'''


# ---- fixtures -------------------------------------------------------------------------------------------------

def low_clip(seconds: float = 4.0, sr: int = SR) -> np.ndarray:
    """Drum-like: 60 Hz hits twice a second."""
    t = np.arange(int(seconds * sr)) / sr
    return (0.8 * np.sin(2 * np.pi * 60 * t) * np.exp(-8 * (t % 0.5))).astype(np.float32)


def high_clip(seconds: float = 4.0, sr: int = SR) -> np.ndarray:
    """Flute-like: a steady 1.5 kHz tone with harmonics and vibrato."""
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * 1500 * t + 3 * np.sin(2 * np.pi * 5 * t)
    return (0.3 * np.sin(phase) + 0.1 * np.sin(2 * phase) + 0.05 * np.sin(3 * phase)).astype(np.float32)


@pytest.fixture(scope="module")
def band_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of the Bands network whose weights are matched filters of the two clips' spectra: 'low' answers
    the drum hits, 'high' the tone, by a wide margin whatever machine computes it. Made through export_bundle.py
    from a params file, as a trained one would be."""
    tmp = tmp_path_factory.mktemp("bands")
    model_file = tmp / "bands.py"
    model_file.write_text(BAND_MODEL)
    means = []
    for name, signal in (("low", low_clip()), ("high", high_clip())):
        sf.write(tmp / f"{name}.wav", signal, SR, subtype="PCM_16")
        spec = spectrogram_from_file(tmp / f"{name}.wav", 2)
        means.append(spec.mean(axis=1) / np.linalg.norm(spec.mean(axis=1)))
    diff = torch.from_numpy(means[0] - means[1])
    weight = torch.stack([diff, -diff]) * 50.0
    params = tmp / "params_bands.pt"
    torch.save({"state_dict": {"weight": weight},
                "config": {"classes": ["low", "high"], "max_len": 400,
                           "settings": {"spec_version": 2, "preprocessing": True}}}, params)
    bundle = tmp / "bands_bundle.pt"
    export_bundle.main(export_bundle.parse_args(["--model", str(model_file), "--params", str(params),
                                                 "--out", str(bundle)]))
    return bundle


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny demo dataset, two 1-epoch demo networks (v1 and v2 features) from train.py, their test-set
    posteriors from eval.py --dump_results fused by fusion.py, and the same two params files bundled."""
    root, exp = tmp_path_factory.mktemp("tag_demo"), tmp_path_factory.mktemp("tag_exp")
    build_demo_dataset(root, clips_per_class=11, test_clips_per_class=3, seed=5, classes=["Bass_drum", "Flute"],
                       padding_clips=0, empty_clips=0, unreadable_clips=0, broken_scored=0, jobs=2)
    roots = ["--data_root", str(root), "--exp_root", str(exp)]
    results, bundle_args = [], []
    for model, version in (("models/vgg_gap_demo.py", 1), ("models/vgg_gap_demo_v2.py", 2)):
        for split in ("train", "test"):
            assert prepare_spectrograms.main(prepare_spectrograms.parse_args([
                "--audio_path", str(root / f"audio_{split}"), "--spec_path", str(root / f"specs_{split}_v{version}"),
                "--spec_version", str(version), "--dump", "--jobs", "2", "--no_progress"])) == 0
        train.main(train.parse_args(["--model", model, "--spec_dir", f"specs_train_v{version}", "--fold", "1",
                                     "--epochs", "1", "--max_len", "400", "--device", "cpu", *roots]))
        params = exp / Path(model).stem / "params_1_it0.pt"
        eval_script.main(eval_script.parse_args(["--model", model, "--params", str(params), "--set", "test",
                                                 "--dump_results", "--out_dir", str(exp), "--device", "cpu", *roots]))
        results.append(str(exp / f"probs_test_specs_train_v{version}_1_it0.npz"))
        bundle_args += ["--model", model, "--params", str(params)]
    fusion.main(fusion.parse_args(["test", *results, "--out", str(exp / "fused.npz")]))
    export_bundle.main(export_bundle.parse_args([*bundle_args, "--out", str(exp / "bundle.pt")]))
    return {"root": root, "fused": exp / "fused.npz", "bundle": exp / "bundle.pt", "exp": exp}


def tag(argv: list[str]) -> int:
    return tag_files.main(tag_files.parse_args([*argv, "--jobs", "1", "--no_progress"]))


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---- bundles --------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_bundle_round_trip(offline: dict) -> None:
    raw = torch.load(offline["bundle"], map_location="cpu", weights_only=True)  # plain data, no pickled code
    assert raw["format"] == BUNDLE_FORMAT and raw["classes"] == ["Bass_drum", "Flute"]
    assert [(m["model"], m["spec_version"], m["preprocessing"], m["max_len"]) for m in raw["members"]] == [
        ("models/vgg_gap_demo.py", 1, True, 400), ("models/vgg_gap_demo_v2.py", 2, True, 400)]
    params = torch.load(raw["members"][0]["source"], map_location="cpu", weights_only=True)
    tagger = Tagger.from_bundle(offline["bundle"], "cpu")
    for key, value in params["state_dict"].items():
        assert torch.equal(tagger.members[0].network.state_dict()[key], value)


@pytest.mark.slow
def test_bundle_faults_are_one_line_errors(offline: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bundle = load_bundle(offline["bundle"])
    missing = {**bundle, "members": [{**bundle["members"][0], "model": "models/no_such_model.py"}]}
    save_bundle(tmp_path / "missing.pt", missing)
    with pytest.raises(BundleError, match="no_such_model.py not found"):
        Tagger.from_bundle(tmp_path / "missing.pt")
    other = {**bundle, "members": [{**bundle["members"][0], "model": "models/vgg_gap_spec1_1.py"}]}
    save_bundle(tmp_path / "other.pt", other)
    with pytest.raises(BundleError, match="do not fit"):
        Tagger.from_bundle(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a bundle")
    with pytest.raises(BundleError, match="not a readable bundle"):
        Tagger.from_bundle(tmp_path / "junk.pt")
    # through the command line: one line, status 1
    with pytest.raises(SystemExit) as e:
        tag_files.run_cli(tag_files.main, tag_files.parse_args(["--bundle", str(tmp_path / "missing.pt"),
                                                                str(tmp_path), "--out", str(tmp_path / "t.csv")]))
    assert e.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "no_such_model.py" in err and "\n" not in err


# ---- equality with the offline path ---------------------------------------------------------------------------

@pytest.mark.slow
def test_same_posteriors_as_eval_and_fusion(offline: dict, tmp_path: Path) -> None:
    out, post = tmp_path / "tags.csv", tmp_path / "post.npz"
    assert tag(["--bundle", str(offline["bundle"]), str(offline["root"] / "audio_test"), "--out", str(out),
                "--posteriors", str(post)]) == 0
    fused = np.load(offline["fused"])
    got = np.load(post)
    index = {Path(p).name: i for i, p in enumerate(got["paths"])}
    assert sorted(index) == sorted(fused["fnames"])
    assert list(got["classes"]) == list(fused["classes"])
    probs = np.stack([got["probs"][index[f]] for f in fused["fnames"]])
    # identical features and weights; only the batch size differs (8 in eval.py, 1 here)
    np.testing.assert_allclose(probs, fused["probs"], atol=1e-6)
    # the Python API gives the same
    tagger = Tagger.from_bundle(offline["bundle"], "cpu")
    first = offline["root"] / "audio_test" / str(fused["fnames"][0])
    np.testing.assert_allclose(tagger.tag(first), fused["probs"][0], atol=1e-6)


# ---- segments and plots ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_segments_name_each_class_in_its_half(band_bundle: Path, tmp_path: Path) -> None:
    long = tmp_path / "low_then_high.wav"
    sf.write(long, np.concatenate([low_clip(), high_clip()]), SR, subtype="PCM_16")
    out = tmp_path / "timeline.csv"
    assert tag(["--bundle", str(band_bundle), str(long), "--segment", "2", "--plot", "--out", str(out)]) == 0
    rows = read_csv(out)
    assert [(float(r["start"]), float(r["end"])) for r in rows] == [(0, 2), (2, 4), (4, 6), (6, 8)]
    assert [r["label_1"] for r in rows] == ["low", "low", "high", "high"]
    assert all(float(r["prob_1"]) > 0.9 for r in rows)  # a wide margin, not a coin toss
    assert (tmp_path / "timeline_plots" / "low_then_high.png").stat().st_size > 0
    # the API, on an array: the same two halves
    tagger = Tagger.from_bundle(band_bundle, "cpu")
    assert tagger.top(tagger.tag(high_clip(), SR), 1)[0][0] == "high"
    tags = tagger.tag_file(long, segment=4)
    assert np.argmax(tags.probs, axis=1).tolist() == [0, 1]


# ---- bad inputs, rows and order -------------------------------------------------------------------------------

def test_bad_files_are_listed_and_the_others_finish(band_bundle: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    sf.write(folder / "a_good.wav", low_clip(1.0), SR)
    sf.write(folder / "z_good.flac", high_clip(1.0), SR)
    (folder / "corrupt.wav").write_bytes(os.urandom(2000))
    (folder / "empty.wav").write_bytes(b"")
    sf.write(folder / "no_samples.wav", np.zeros(0, np.float32), SR)
    (folder / "text.mp3").write_text("these are not audio frames\n" * 20)
    (folder / "folder.wav").mkdir()
    (folder / "dangling.wav").symlink_to(tmp_path / "gone.wav")
    out = tmp_path / "tags.csv"
    assert tag(["--bundle", str(band_bundle), str(folder), str(tmp_path / "missing.ogg"), "--out", str(out)]) == 1
    assert [Path(r["path"]).name for r in read_csv(out)] == ["a_good.wav", "z_good.flac"]
    err = capsys.readouterr().err
    assert "7 of 9 file(s) could not be tagged" in err
    reasons = {line.split(": ", 1)[0].strip(): line.split(": ", 1)[1] for line in err.splitlines()
               if line.startswith("  ")}
    assert "not a readable audio file" in reasons[str(folder / "corrupt.wav")]
    assert "not a readable audio file" in reasons[str(folder / "text.mp3")]
    assert "empty" in reasons[str(folder / "empty.wav")] or "not a readable" in reasons[str(folder / "empty.wav")]
    assert "empty audio file" in reasons[str(folder / "no_samples.wav")]
    assert "a folder" in reasons[str(folder / "folder.wav")]
    assert "broken link" in reasons[str(folder / "dangling.wav")]
    assert "not found" in reasons[str(tmp_path / "missing.ogg")]


@pytest.mark.slow
def test_csv_rows_follow_the_inputs(band_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    # at the networks' 32 kHz: the worker processes then need no resampler (librosa), which is slow to import
    files = {"one.wav": low_clip(1.0, 32000), "dir/b.wav": high_clip(1.0, 32000),
             "dir/sub/a.wav": low_clip(1.0, 32000), "dir/.hidden.wav": low_clip(1.0, 32000),
             "last.aiff": high_clip(1.0, 32000)}
    for name, signal in files.items():
        sf.write(tmp_path / name, signal, 32000)
    (tmp_path / "list.txt").write_text("# a file list\nlast.aiff\none.wav\n\n")
    out, post = tmp_path / "tags.csv", tmp_path / "post.jsonl"
    argv = ["--bundle", str(band_bundle), str(tmp_path / "one.wav"), str(tmp_path / "dir"),
            str(tmp_path / "list.txt"), "--out", str(out), "--top_k", "1", "--posteriors", str(post),
            "--jobs", "2", "--no_progress"]  # two worker processes: order must not depend on who finishes first
    monkeypatch.setattr(tag_files, "FILES_PER_WORKER", 1)  # workers even for a handful of files
    assert tag_files.main(tag_files.parse_args(argv)) == 0
    rows = read_csv(out)
    assert list(rows[0]) == ["path", "label_1", "prob_1"]
    assert [r["path"] for r in rows] == [str(tmp_path / n) for n in ("one.wav", "dir/b.wav", "dir/sub/a.wav",
                                                                       "last.aiff")]
    assert [r["label_1"] for r in rows] == ["low", "high", "low", "high"]
    lines = post.read_text().splitlines()
    assert len(lines) == 4 and '"probs": {"low": ' in lines[0]


def test_paths_to_one_file_are_tagged_once(band_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture) -> None:
    sf.write(tmp_path / "f.wav", low_clip(1.0), SR)
    sf.write(tmp_path / "g.wav", high_clip(1.0), SR)
    (tmp_path / "link.wav").symlink_to(tmp_path / "f.wav")
    monkeypatch.chdir(tmp_path)
    # F, F again, ./F, a link to F, and F once more inside its folder: one file, under its first spelling
    paths = ["f.wav", "f.wav", "./f.wav", "link.wav", "g.wav", str(tmp_path), "gone.wav", "./gone.wav"]
    out = tmp_path / "tags.csv"
    assert tag(["--bundle", str(band_bundle), *paths, "--out", str(out)]) == 1
    assert [r["path"] for r in read_csv(out)] == ["f.wav", "g.wav"]
    captured = capsys.readouterr()
    assert "tagged 2 of 3 file(s) (2 rows)" in captured.out
    assert "; 7 path(s) named a file already listed, tagged once" in captured.out  # link.wav in the folder too
    assert "1 of 3 file(s) could not be tagged" in captured.err and "  gone.wav: " in captured.err
