"""Shared fixtures: a small real-audio demo dataset with both spectrogram versions, built once per session."""

from pathlib import Path

import pytest

import prepare_spectrograms
from utils.demo_dataset import build_demo_dataset

# distinct-sounding classes, so a few CPU epochs of the demo net learn them
DEMO_CLASSES = ["Bass_drum", "Flute", "Glockenspiel", "Hi-hat", "Trumpet"]


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root: 5 classes x 24 train clips (noisy unverified labels) + 6 test clips, specs v1 and v2."""
    root = tmp_path_factory.mktemp("demo")
    build_demo_dataset(root, clips_per_class=24, test_clips_per_class=6, seed=3, classes=DEMO_CLASSES, jobs=2)
    for version in (1, 2):
        for split in ("train", "test"):
            code = prepare_spectrograms.main(prepare_spectrograms.parse_args([
                "--audio_path", str(root / f"audio_{split}"), "--spec_path", str(root / f"specs_{split}_v{version}"),
                "--spec_version", str(version), "--dump", "--jobs", "2", "--no_progress"]))
            assert code == 0
    return root
