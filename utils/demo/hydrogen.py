"""Drum hits from Hydrogen drum kits (Debian's hydrogen-drumkits): recorded samples, played in numpy.

A kit is a folder of wav/flac samples and a drumkit.xml that names each instrument and its velocity layers.
Hydrogen's files come in two dialects (with and without an XML namespace), so tags are matched by their
local name. Only the kits in KITS are used; the package's other kits are kept out of the project for
independent evaluation.
"""

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

KIT_DIR = Path("/usr/share/hydrogen/data/drumkits")
KITS = ("The Black Pearl 1.0", "Gimme A Hand 1.0", "ColomboAcousticDrumkit", "Audiophob", "rumpf_kit_z01_h2")
# circAfrique v4 (djembes and dunun) is allowed but holds no instrument of the 21 classes
LICENSES = {
    "The Black Pearl 1.0": "GPL (Glen MacArthur; Hydrogen kit)",
    "Gimme A Hand 1.0": "GPL (Glen MacArthur; Hydrogen kit)",
    "ColomboAcousticDrumkit": "GPL (Marcos Guglielmetti; Hydrogen kit)",
    "Audiophob": "CC0 (Audiophob; Hydrogen kit)",
    "rumpf_kit_z01_h2": "CC-BY-3.0 (Emanuel Rumpf; Hydrogen kit)",
}
# which instruments of a kit play a class, by name ("Sabian Hat Closed", "c3 - bass drum 1", "Closed HH", ...)
CLASS_PATTERNS = {
    "Bass_drum": r"kick|bass ?drum",
    "Snare_drum": r"snare",
    "Hi-hat": r"hat|\bhh\b",
    "Cowbell": r"cowbell",
    "Tambourine": r"tambourine",
}


@dataclass(frozen=True)
class Layer:
    path: Path
    low: float  # the velocity range (0..1) this sample plays
    high: float
    gain: float


@dataclass(frozen=True)
class Instrument:
    name: str
    gain: float
    layers: tuple[Layer, ...]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: ET.Element, name: str, default: str = "") -> str:
    for child in element:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return default


@cache
def load_kit(kit: str) -> tuple[Instrument, ...]:
    """The kit's instruments that have at least one sample file on disk."""
    folder = KIT_DIR / kit
    root = ET.parse(folder / "drumkit.xml").getroot()
    instruments = []
    for element in root.iter():
        if _local(element.tag) != "instrument":
            continue
        layers = [Layer(folder / _child(layer, "filename"), float(_child(layer, "min", "0")),
                        float(_child(layer, "max", "1")), float(_child(layer, "gain", "1")))
                  for layer in element if _local(layer.tag) == "layer"]
        if not layers and _child(element, "filename"):  # the oldest dialect: one sample, no layer element
            layers = [Layer(folder / _child(element, "filename"), 0.0, 1.0, 1.0)]
        layers = [layer for layer in layers if layer.path.is_file()]
        if layers:
            gain = float(_child(element, "gain", "1")) * float(_child(element, "volume", "1"))
            instruments.append(Instrument(_child(element, "name"), gain, tuple(layers)))
    return tuple(instruments)


def instruments_for(kit: str, label: str) -> tuple[int, ...]:
    """Indices into load_kit(kit) of the instruments that sound like label (empty if none)."""
    pattern = CLASS_PATTERNS.get(label)
    if pattern is None:
        return ()
    return tuple(i for i, inst in enumerate(load_kit(kit)) if re.search(pattern, inst.name, re.IGNORECASE))


@cache
def _sample(path: Path, sr: int) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    audio = audio[:, :2] if audio.shape[1] >= 2 else np.repeat(audio, 2, axis=1)
    if rate != sr:
        audio = soxr.resample(audio, rate, sr, quality="HQ").astype(np.float32)
    return audio


def play(kit: str, hits: list[tuple[float, float, int, int]], budget: float, pan: int, sr: int) -> np.ndarray:
    """hits: (start s, length s, instrument index, MIDI velocity) -> (samples, 2) float32 of budget seconds.

    Each hit plays the layer its velocity falls in, at the velocity's loudness, cut (with a short fade) when
    its length ends, as fluidsynth's note-off would."""
    instruments = load_kit(kit)
    out = np.zeros((max(1, round(budget * sr)), 2), dtype=np.float32)
    fade = max(1, int(0.01 * sr))
    for start, length, index, velocity in hits:
        inst = instruments[index]
        v = velocity / 127
        layer = next((la for la in inst.layers if la.low <= v <= la.high), inst.layers[-1])
        sample = _sample(layer.path, sr)
        a = round(start * sr)
        n = min(len(sample), round(length * sr) + fade, len(out) - a)
        if n <= 0:
            continue
        hit = sample[:n] * (inst.gain * layer.gain * v ** 2)
        hit[-min(fade, n):] *= np.linspace(1.0, 0.0, min(fade, n), dtype=np.float32)[:, None]
        out[a:a + n] += hit
    angle = pan / 127 * np.pi / 2  # equal-power pan, as MIDI CC10 in fluidsynth
    out *= np.array([np.cos(angle), np.sin(angle)], dtype=np.float32) * np.sqrt(2)
    return out
