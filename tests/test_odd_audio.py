"""One rule for odd audio in every entry point (prepare_spectrograms.py, tag_files.py, the live tagger's --input):
decode whatever libsndfile decodes, whatever the extension says; refuse the rest with the reason, the same reason
everywhere; and let no library warning through."""

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

import audio_tagger
import prepare_spectrograms
from tests.helpers import tone
from utils.audio import AudioError
from utils.live.sources import FileSource
from utils.spectrogram import spectrogram_from_file
from utils.tagging import Failure, FileTags, Member, Tagger, tag_one

SR = 32000
ONE_SAMPLE = "too short to tag: 1 sample "


class MeanBands(nn.Module):
    """Two logits from the spectrogram's mean in its first two bands: any clip it is given gets a tag."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=3)[:, 0, :2]


@pytest.fixture
def odd(tmp_path: Path) -> dict[str, Path]:
    """In audio/: .wav files holding MP3 and FLAC, a 1-sample clip, and an MP3 cut short (its decoder prints notes
    to stderr); outside it, the same MP3 and FLAC under their own extensions."""
    audio = tmp_path / "audio"
    audio.mkdir()
    x = np.concatenate([np.zeros(SR // 4, np.float32), tone(1.0, SR, freq=880.0), np.zeros(SR // 4, np.float32)])
    files = {"mp3": tmp_path / "real.mp3", "flac": tmp_path / "real.flac"}
    sf.write(files["mp3"], x, SR, format="MP3")
    sf.write(files["flac"], x, SR, subtype="PCM_16")
    for kind in ("mp3", "flac"):
        files[f"{kind}_in_wav"] = audio / f"{kind}_inside.wav"
        shutil.copy(files[kind], files[f"{kind}_in_wav"])
    files["one"] = audio / "one_sample.wav"
    sf.write(files["one"], x[SR // 2:SR // 2 + 1], SR)
    files["cut"] = audio / "cut_mp3.wav"
    files["cut"].write_bytes(files["mp3"].read_bytes()[:3000])
    return files


def test_prepare_spectrograms(odd: dict[str, Path], tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    specs = tmp_path / "specs"
    code = prepare_spectrograms.main(prepare_spectrograms.parse_args([
        "--audio_path", str(odd["one"].parent), "--out_dir", str(specs), "--spec_version", "1", "--dump",
        "--jobs", "2", "--no_progress"]))
    assert code == 1
    for kind in ("mp3", "flac"):  # through SoX (preprocessing is on), as the file under its own extension
        np.testing.assert_allclose(np.load(specs / f"{kind}_inside.npy"), spectrogram_from_file(odd[kind], 1),
                                   rtol=1e-5, atol=1e-4)
    assert np.load(specs / "cut_mp3.npy").shape[0] == 128
    (failed,) = (specs / "failed.txt").read_text().splitlines()
    assert failed.startswith(f"{odd['one']}: {ONE_SAMPLE}")
    out, err = capfd.readouterr()
    assert "3 written, 1 failed, 1 with warnings" in out
    # the decoder's notes on the cut MP3 come once, naming it; nothing else reaches stderr unnamed
    notes = [line for line in err.splitlines() if "Xing" in line or "Note:" in line]
    assert len(notes) == 1 and notes[0].startswith(f"warning: {odd['cut']}: the decoder says:")
    assert "UserWarning" not in err and "librosa" not in err


def test_tag_files(odd: dict[str, Path]) -> None:
    # both feature versions with SoX trimming, as a bundle of the demo networks would need them
    tagger = Tagger(["a", "b"], [Member(MeanBands(), 1, True, 400), Member(MeanBands(), 2, True, 400)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none may escape tag_one, which tag_files.py runs on each file
        for kind in ("mp3", "flac"):
            tags = tag_one(tagger, str(odd[f"{kind}_in_wav"]), None, None)
            assert isinstance(tags, FileTags) and not tags.warnings
            np.testing.assert_allclose(tags.probs[0], tagger.tag(odd[kind]), atol=1e-6)
        cut = tag_one(tagger, str(odd["cut"]), None, None)
        assert isinstance(cut, FileTags) and len(cut.warnings) == 1 and "the decoder says" in cut.warnings[0]
        for segment in (None, 0.5):
            refused = tag_one(tagger, str(odd["one"]), segment, None)
            assert isinstance(refused, Failure) and refused.reason.startswith(ONE_SAMPLE)


def test_live_tagger_input(odd: dict[str, Path]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        source = FileSource(odd["mp3_in_wav"], speed=0)
        assert abs(source.seconds - 1.5) < 0.1 and not source.warnings
        with pytest.raises(AudioError, match=f"one_sample.wav: {ONE_SAMPLE}"):
            FileSource(odd["one"], speed=0)
    assert len(FileSource(odd["cut"], speed=0).warnings) == 1
    # the command line refuses it before loading any model
    args = audio_tagger.parse_args(["--model", "no_model.py", "--params", "no_params.pt", "--input",
                                    str(odd["one"]), "--headless"])
    with pytest.raises(ValueError, match=f"--input {odd['one']}: {ONE_SAMPLE}"):
        audio_tagger.main(args)
