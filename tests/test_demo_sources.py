"""The default's sound sources: every class played by several independent source families, none dominating,
Hydrogen kits read from their own files, and sources.csv naming each clip's source and recorded-like chain."""

import csv
import json

import numpy as np
import pytest

from utils.dataset_csv import read_test_csv
from utils.demo import hydrogen
from utils.demo.dataset import PARAMS_FILE, SOURCES_CSV, SOURCES_HEADER, build_demo_dataset
from utils.demo.room import draw_chain
from utils.demo.synth import CLASS_VOICES, CLASSES, LICENSES, RENDER_SR, make_layer

DRUMS = ("Bass_drum", "Cowbell", "Hi-hat", "Snare_drum", "Tambourine")


def test_every_class_has_several_families_and_none_dominates():
    for label in CLASSES:
        families = {v.family for v in CLASS_VOICES[label]}
        assert {"fluid", "musescore", "csound"} <= families, label
        if label in ("Bass_drum", "Hi-hat", "Snare_drum", "Cowbell"):
            assert "hydrogen" in families, label
        rng = np.random.default_rng([5, CLASSES.index(label)])
        drawn = [make_layer(label, 1.0, rng).voice.family for _ in range(400)]
        shares = {f: drawn.count(f) / len(drawn) for f in families}
        # each family is drawn equally often, however many voices it has (FluidR3 has 7 drum kits)
        assert max(shares.values()) - min(shares.values()) < 0.12, (label, shares)


def test_only_the_allowed_kits_and_every_source_licensed():
    assert set(hydrogen.KITS) == {"The Black Pearl 1.0", "Gimme A Hand 1.0", "ColomboAcousticDrumkit", "Audiophob",
                                  "rumpf_kit_z01_h2"}
    sources = {v.source for voices in CLASS_VOICES.values() for v in voices}
    assert sources <= set(LICENSES)
    assert not any("," in text for text in LICENSES.values())  # a field of the test CSV, written unquoted
    assert {s for s in sources if s.startswith("h2:")} == {"h2:" + k for k in hydrogen.KITS}


@pytest.mark.parametrize("kit", hydrogen.KITS)
def test_hydrogen_hits_sound_where_they_are_played(kit):
    label = next(c for c in DRUMS if hydrogen.instruments_for(kit, c))
    index = hydrogen.instruments_for(kit, label)[0]
    soft = hydrogen.play(kit, [(0.5, 0.3, index, 30)], 1.0, 64, RENDER_SR)
    loud = hydrogen.play(kit, [(0.5, 0.3, index, 120)], 1.0, 64, RENDER_SR)
    assert loud.shape == (RENDER_SR, 2) and loud.dtype == np.float32
    assert not loud[: RENDER_SR // 2].any()  # silence before the hit
    assert np.abs(loud[RENDER_SR // 2:]).max() > 1e-3
    assert np.abs(loud).max() > 2 * np.abs(soft).max()  # velocity sets the loudness
    assert not loud[round(0.82 * RENDER_SR):].any()  # cut (with a fade) when the note ends


def test_sources_csv_names_each_clip_and_its_chain(tmp_path):
    root = tmp_path / "d"
    build_demo_dataset(root, clips_per_class=2, test_clips_per_class=1, seed=11, classes=["Cowbell", "Oboe"],
                       jobs=1)
    test = read_test_csv(root / "test_post_competition.csv")  # every licence fits its column
    assert set(test["license"]) <= set(LICENSES.values())
    with open(root / SOURCES_CSV, newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == SOURCES_HEADER
        rows = list(reader)
    rendered = {p.name for p in (root / "audio_train").glob("*.wav")} | {
        line.split(",")[0] for line in (root / "test_post_competition.csv").read_text().splitlines()[1:]}
    broken = set(json.loads((root / PARAMS_FILE).read_text())["stats"]["broken_wavs"])
    assert {row["fname"] for row in rows} == rendered - broken
    for row in rows:
        assert row["source"] in LICENSES and row["voice"]
        chain = dict(item.split("=") for item in row["chain"].split(";"))
        assert set(chain) == set(draw_chain(np.random.default_rng(0)).__dataclass_fields__)
        assert 5 <= float(chain["snr_db"]) <= 40
