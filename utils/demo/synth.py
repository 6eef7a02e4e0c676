"""Render the demo dataset's sounds: note events per class, played by several independent sample sources.

Only sounds from Debian packages are used, grouped in source families so that a model can be tested on a
family it never heard (benchmarks/cross_source.py): three General MIDI soundfonts (fluid-soundfont-gm,
musescore-general-soundfont-small, csound-soundfont; melodic programs and their drum kits), two recorded drum
kits (avldrums.lv2-soundfont) and five Hydrogen kits (hydrogen-drumkits, utils/demo/hydrogen.py). Each layer
first draws a family the class has, then a voice in it, so no family dominates a class. Soundfonts play
through fluidsynth, which starts slowly, so every call renders a whole chunk of clips, each in its own time
slot of one MIDI file, and the slots are cut apart afterwards; Hydrogen kits play in numpy. Every clip then
goes through a recorded-like chain (utils/demo/room.py): room, microphone, level, compression, noise.
"""

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np
import soundfile as sf
import soxr

from utils.atomic import atomic_write
from utils.demo import hydrogen
from utils.demo.room import Chain, apply_chain, draw_chain
from utils.errors import StepFailed

SF2_DIR, SF3_DIR = Path("/usr/share/sounds/sf2"), Path("/usr/share/sounds/sf3")
SOUNDFONTS = {
    "fluid": SF2_DIR / "FluidR3_GM.sf2",
    "musescore": SF3_DIR / "MuseScore_General_Lite.sf3",
    "csound": SF2_DIR / "sf_GMbank.sf2",
    "avl_black_pearl": SF2_DIR / "Black_Pearl_4_LV2.sf2",
    "avl_red_zeppelin": SF2_DIR / "Red_Zeppelin_4_LV2.sf2",
}
GM_SOUNDFONTS = ("fluid", "musescore", "csound")
H2 = "h2:"  # a source key "h2:<kit>" names a Hydrogen kit
LICENSES = {
    "fluid": "MIT (FluidR3_GM)",
    "musescore": "MIT (MuseScore General Lite)",
    "csound": "LGPL-2.1+ (Csound sf_GMbank)",
    "avl_black_pearl": "CC-BY-SA-3.0 (AVL Drumkits Black Pearl)",
    "avl_red_zeppelin": "CC-BY-SA-3.0 (AVL Drumkits Red Zeppelin)",
    **{H2 + kit: text for kit, text in hydrogen.LICENSES.items()},
}
APT_PACKAGES = ("fluidsynth", "fluid-soundfont-gm", "musescore-general-soundfont-small", "csound-soundfont",
                "avldrums.lv2-soundfont", "hydrogen-drumkits")
RENDER_SR = 44100
SLOT_GAP = 2.5  # seconds between slots: longer than any release tail we keep, so slots never bleed
SILENT_PEAK = 1e-4  # fluidsynth's default gain puts real notes around 0.02-0.1 peak
MAX_ATTEMPTS = 6
CHAIN_PEAK = 0.5  # the level a clip enters the recorded-like chain at, so its compressor and clipper bite alike

DRUM_CHANNEL = 9
# General MIDI drum kits (bank 128 programs), in all three GM soundfonts: Standard, Room, Power, Electronic,
# TR-808, Jazz, Brush
GM_KITS = (0, 8, 16, 24, 25, 32, 40)


def family(source: str) -> str:
    """The source family of a source key: each GM soundfont, 'avldrums' or 'hydrogen'."""
    if source.startswith(H2):
        return "hydrogen"
    return "avldrums" if source.startswith("avl_") else source


@dataclass(frozen=True)
class Voice:
    source: str  # key of SOUNDFONTS, or "h2:<kit>"
    program: int  # GM program (0-based); on the drum channel, the kit number; 0 for Hydrogen kits
    drum: bool  # True: GM kit on MIDI channel 10; avldrums play on an ordinary channel
    notes: tuple[int, ...]  # the notes this voice may play (a range for pitched voices; kit instrument indices)

    @property
    def family(self) -> str:
        return family(self.source)

    def describe(self) -> str:
        if self.source.startswith(H2):
            names = [hydrogen.load_kit(self.source[len(H2):])[i].name for i in self.notes]
            return f"{self.source[len(H2):]}: {'/'.join(names)}"
        return f"{self.source} {'kit' if self.drum else 'program'} {self.program}"


def _melodic(programs: tuple[int, ...], low: int, high: int) -> tuple[Voice, ...]:
    return tuple(Voice(font, p, False, tuple(range(low, high + 1))) for font in GM_SOUNDFONTS for p in programs)


def _drums(label: str, gm_notes: tuple[int, ...], avl_notes: tuple[int, ...] = ()) -> tuple[Voice, ...]:
    voices = [Voice(font, kit, True, gm_notes) for font in GM_SOUNDFONTS for kit in GM_KITS]
    if avl_notes:
        # avldrums ship one preset (bank 0, program 0); its kick/snare/hi-hat notes follow the GM map
        voices += [Voice(kit, 0, False, avl_notes) for kit in ("avl_black_pearl", "avl_red_zeppelin")]
    for kit in hydrogen.KITS:
        instruments = hydrogen.instruments_for(kit, label) if (hydrogen.KIT_DIR / kit).is_dir() else ()
        if instruments:
            voices.append(Voice(H2 + kit, 0, False, instruments))
    return tuple(voices)


# The 21 FSDKaggle2018 classes this package can make sound for, with how each one is played.
CLASS_VOICES: dict[str, tuple[Voice, ...]] = {
    "Acoustic_guitar": _melodic((24, 25), 40, 79),
    "Applause": _melodic((126,), 48, 76),
    "Bass_drum": _drums("Bass_drum", (35, 36), (36,)),
    "Cello": _melodic((42,), 36, 74),
    "Chime": _melodic((14,), 60, 81),
    "Clarinet": _melodic((71,), 50, 86),
    "Cowbell": _drums("Cowbell", (56,)),
    "Double_bass": _melodic((43,), 28, 57),
    "Electric_piano": _melodic((4, 5), 40, 88),
    "Flute": _melodic((73,), 60, 93),
    "Glockenspiel": _melodic((9,), 72, 105),
    "Gunshot_or_gunfire": _melodic((127,), 36, 72),
    "Harmonica": _melodic((22,), 60, 84),
    "Hi-hat": _drums("Hi-hat", (42, 44, 46), (42, 44, 46)),
    "Oboe": _melodic((68,), 58, 89),
    "Saxophone": _melodic((64,), 60, 87) + _melodic((65,), 49, 80) + _melodic((66,), 44, 75) + _melodic((67,), 36, 68),
    "Snare_drum": _drums("Snare_drum", (38, 40), (38, 40)),
    "Tambourine": _drums("Tambourine", (54,)),
    "Telephone": _melodic((124,), 60, 84),
    "Trumpet": _melodic((56,), 54, 84),
    "Violin_or_fiddle": _melodic((40, 110), 55, 96),
}
CLASS_STYLE = {
    "Acoustic_guitar": "guitar", "Applause": "applause", "Bass_drum": "hits", "Cello": "phrase",
    "Chime": "bells", "Clarinet": "phrase", "Cowbell": "hits", "Double_bass": "phrase",
    "Electric_piano": "keys", "Flute": "phrase", "Glockenspiel": "keys", "Gunshot_or_gunfire": "shots",
    "Harmonica": "phrase", "Hi-hat": "hits", "Oboe": "phrase", "Saxophone": "phrase",
    "Snare_drum": "hits", "Tambourine": "shaker", "Telephone": "ring", "Trumpet": "phrase",
    "Violin_or_fiddle": "phrase",
}
CLASSES = tuple(sorted(CLASS_VOICES))

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
CHORDS = ((0, 4, 7), (0, 3, 7), (0, 4, 7, 11), (0, 3, 7, 10), (0, 4, 7, 10), (0, 5, 7))


@dataclass(frozen=True)
class Note:
    start: float  # seconds from the slot start
    length: float
    pitch: int
    velocity: int


@dataclass(frozen=True)
class ClipSpec:
    """What one clip is: the planner decides these, the renderer draws everything else from the seed."""

    index: int
    fname: str
    audio_dir: str
    true_label: str
    mix_class: str | None  # a quieter second class layered under the first, or None
    sample_rate: int
    channels: int
    subtype: str
    duration: float


def _vel(rng: np.random.Generator, base: float, spread: float = 12) -> int:
    return int(np.clip(round(rng.normal(base, spread)), 20, 127))


def _scale_notes(rng: np.random.Generator, notes: tuple[int, ...]) -> list[int]:
    root = int(rng.integers(0, 12))
    steps = MAJOR if rng.random() < 0.6 else MINOR
    return [n for n in notes if (n - root) % 12 in steps] or list(notes)


def _phrase(rng: np.random.Generator, notes: tuple[int, ...], budget: float) -> list[Note]:
    """A monophonic line: one held note, a repeated note, or a scale-wise walk with rests."""
    pool = _scale_notes(rng, notes)
    base_vel = rng.uniform(55, 115)
    mode = rng.choice(["hold", "repeat", "walk", "walk"])
    if mode == "hold" or budget < 0.6:
        pitch = int(rng.choice(pool))
        return [Note(0.0, budget * rng.uniform(0.6, 1.0), pitch, _vel(rng, base_vel))]
    beat = rng.uniform(0.15, 0.9)
    legato = rng.uniform(0.5, 1.0)
    out, t = [], 0.0
    i = int(rng.integers(len(pool)))
    while t < budget - 0.1:
        length = beat * float(rng.choice([0.5, 1, 1, 1, 2, 3]))
        if mode == "walk":
            i = int(np.clip(i + rng.choice([-2, -1, -1, 1, 1, 2, 3, -3]), 0, len(pool) - 1))
        if rng.random() > 0.1:  # the odd rest, as in played phrases
            out.append(Note(t, min(length * legato, budget - t), pool[i], _vel(rng, base_vel, 8)))
        t += length
    return out


def _keys(rng: np.random.Generator, notes: tuple[int, ...], budget: float) -> list[Note]:
    """Keyboard-like: chords, arpeggios or a melody."""
    mode = rng.choice(["chords", "arpeggio", "melody"])
    if mode == "melody":
        return _phrase(rng, notes, budget)
    beat = rng.uniform(0.12, 1.2) if mode == "arpeggio" else rng.uniform(0.5, 2.5)
    base_vel = rng.uniform(50, 115)
    low, high = notes[0], notes[-1]
    out, t = [], 0.0
    while t < budget - 0.05:
        root = int(rng.integers(low, max(low + 1, high - 11)))
        chord = [root + iv for iv in CHORDS[rng.integers(len(CHORDS))] if root + iv <= high]
        if mode == "chords":
            for p in chord:
                out.append(Note(t, min(beat * 0.95, budget - t), p, _vel(rng, base_vel, 6)))
            t += beat
        else:
            for p in chord:
                if t >= budget - 0.05:
                    break
                out.append(Note(t, min(beat * 1.5, budget - t), p, _vel(rng, base_vel, 8)))
                t += beat
    return out


def _guitar(rng: np.random.Generator, notes: tuple[int, ...], budget: float) -> list[Note]:
    """Strums (chord notes a few ms apart, down or up), picked arpeggios, or single notes."""
    if rng.random() < 0.4:
        return _keys(rng, notes, budget)
    beat = rng.uniform(0.25, 1.5)
    base_vel = rng.uniform(55, 120)
    low = notes[0]
    out, t = [], 0.0
    while t < budget - 0.05:
        root = int(rng.integers(low, low + 12))
        shape = [root, root + 7, root + 12, root + 16, root + 19, root + 24][: int(rng.integers(3, 7))]
        if rng.random() < 0.3:
            shape = shape[::-1]  # up-strum
        spread = rng.uniform(0.008, 0.035)
        for k, p in enumerate(shape):
            s = t + k * spread
            if s < budget - 0.02:
                out.append(Note(s, min(beat * 1.2, budget - s), p, _vel(rng, base_vel, 6)))
        t += beat * float(rng.choice([0.5, 1, 1, 2]))
    return out


def _hits(rng: np.random.Generator, notes: tuple[int, ...], budget: float, roll: float = 0.15) -> list[Note]:
    """Percussion: one hit, a rhythm with accents, or a roll; each hit rings until the next one on its note."""
    base_vel = rng.uniform(50, 120)
    mode = rng.random()
    if mode < 0.25 or budget < 0.4:
        times = [0.0]
    elif mode < 1 - roll:
        step = rng.uniform(0.1, 0.7)
        times = list(np.arange(0.0, budget - 0.05, step))
        if rng.random() < 0.3:  # swing
            times = [t + (step * 0.3 if k % 2 else 0.0) for k, t in enumerate(times)]
    else:
        step = rng.uniform(0.035, 0.08)
        times = list(np.arange(0.0, budget * rng.uniform(0.4, 1.0), step))
    pitches = [int(rng.choice(notes)) for _ in times]
    accent = int(rng.integers(2, 5))
    out = []
    for k, (t, p) in enumerate(zip(times, pitches, strict=True)):
        later = [u for u, q in zip(times[k + 1:], pitches[k + 1:], strict=True) if q == p]
        end = later[0] if later else budget
        vel = _vel(rng, base_vel + (15 if k % accent == 0 else 0), 8)
        out.append(Note(float(t), max(0.01, min(end, budget) - t - 0.005), p, vel))
    return [n for n in out if n.start < budget - 0.01]


def _applause(rng: np.random.Generator, notes: tuple[int, ...], budget: float) -> list[Note]:
    """Crowd texture: one to three overlapping held notes; the pitch changes the sample's rate and colour."""
    out = []
    for k in range(int(rng.integers(1, 4))):
        start = 0.0 if k == 0 else rng.uniform(0, budget * 0.5)
        out.append(Note(start, budget - start, int(rng.choice(notes)), _vel(rng, 95, 15)))
    return out


def _ring(rng: np.random.Generator, notes: tuple[int, ...], budget: float) -> list[Note]:
    """Telephone: ring bursts separated by pauses."""
    pitch, on, off = int(rng.choice(notes)), rng.uniform(0.6, 2.0), rng.uniform(0.3, 3.0)
    out, t = [], 0.0
    while t < budget - 0.05:
        out.append(Note(t, min(on, budget - t), pitch, _vel(rng, 100, 10)))
        t += on + off
    return out


def _shots(rng: np.random.Generator, notes: tuple[int, ...], budget: float) -> list[Note]:
    """Gunfire: single shots, spaced shots, or an automatic burst."""
    mode = rng.random()
    step = rng.uniform(0.07, 0.15) if mode < 0.35 else rng.uniform(0.4, 2.0)
    pitch = int(rng.choice(notes))
    times = [0.0] if mode > 0.75 else list(np.arange(0.0, budget - 0.05, step))
    return [Note(float(t), min(step, budget - t), pitch, _vel(rng, 105, 12)) for t in times]


def _bells(rng: np.random.Generator, notes: tuple[int, ...], budget: float) -> list[Note]:
    """Tubular bells: single strokes that ring, a few apart, or a short peal."""
    if rng.random() < 0.5:
        return _keys(rng, notes, budget)
    step = rng.uniform(0.4, 2.0)
    pool = _scale_notes(rng, notes)
    times = list(np.arange(0.0, budget - 0.05, step))
    return [Note(float(t), budget - t, int(rng.choice(pool)), _vel(rng, 95, 15)) for t in times]


def make_notes(style: str, rng: np.random.Generator, notes: tuple[int, ...], budget: float) -> list[Note]:
    if style == "hits":
        out = _hits(rng, notes, budget)
    elif style == "shaker":
        out = _hits(rng, notes, budget, roll=0.5)
    else:
        generators = {"phrase": _phrase, "keys": _keys, "guitar": _guitar, "applause": _applause,
                      "ring": _ring, "shots": _shots, "bells": _bells}
        out = generators[style](rng, notes, budget)
    # a phrase made only of rests would render silence
    return out or [Note(0.0, budget, int(rng.choice(notes)), _vel(rng, 90))]


@dataclass(frozen=True)
class Layer:
    voice: Voice
    notes: list[Note]
    budget: float  # seconds of audio kept from the slot
    pan: int  # MIDI CC10


def make_layer(label: str, budget: float, rng: np.random.Generator) -> Layer:
    voices = CLASS_VOICES[label]
    families = sorted({v.family for v in voices})
    chosen = families[int(rng.integers(len(families)))]
    pool = [v for v in voices if v.family == chosen]
    voice = pool[int(rng.integers(len(pool)))]
    notes = make_notes(CLASS_STYLE[label], rng, voice.notes, budget)
    return Layer(voice, notes, budget, int(np.clip(rng.normal(64, 25), 0, 127)))


def _write_midi(layers: list[Layer], path: Path) -> list[float]:
    """One slot per layer, SLOT_GAP apart; returns each slot's start time in seconds."""
    tick = 1000  # ticks per second: tempo 1 s per beat, 1000 ticks per beat
    events: list[tuple[int, int, mido.Message]] = []
    starts, t0 = [], 0.0
    for layer in layers:
        starts.append(t0)
        ch = DRUM_CHANNEL if layer.voice.drum else 0
        at = round(t0 * tick)
        events.append((at, 0, mido.Message("program_change", channel=ch, program=layer.voice.program)))
        events.append((at, 0, mido.Message("control_change", channel=ch, control=10, value=layer.pan)))
        for n in layer.notes:
            on = round((t0 + n.start) * tick) + 1  # after the program change
            off = max(on + 1, round((t0 + n.start + n.length) * tick))
            events.append((on, 2, mido.Message("note_on", channel=ch, note=n.pitch, velocity=n.velocity)))
            events.append((off, 1, mido.Message("note_off", channel=ch, note=n.pitch, velocity=0)))
        t0 += layer.budget + SLOT_GAP
    events.sort(key=lambda e: (e[0], e[1]))  # note-offs before note-ons on the same tick: no stuck retriggers
    mid = mido.MidiFile(ticks_per_beat=tick)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=1_000_000, time=0))
    last = 0
    for at, _, msg in events:
        track.append(msg.copy(time=at - last))
        last = at
    track.append(mido.MetaMessage("end_of_track", time=round(t0 * tick) - last))
    mid.save(path)
    return starts


def render_layers(layers: list[Layer], tmp_dir: Path) -> list[np.ndarray]:
    """Render layers that share one source, soundfonts in a single fluidsynth call; (n, 2) float32 each."""
    source = layers[0].voice.source
    if source.startswith(H2):
        return [hydrogen.play(source[len(H2):], [(n.start, n.length, n.pitch, n.velocity) for n in layer.notes],
                              layer.budget, layer.pan, RENDER_SR) for layer in layers]
    mid_path, wav_path = tmp_dir / "in.mid", tmp_dir / "out.wav"
    starts = _write_midi(layers, mid_path)
    # dynamic sample loading decodes only the samples played: MuseScore's sf3 (Ogg-compressed) loads in 2 s, not 6
    cmd = ["fluidsynth", "-n", "-i", "-q", "-R", "0", "-C", "0", "-o", "synth.dynamic-sample-loading=1",
           "-r", str(RENDER_SR), "-O", "float", "-T", "wav", "-F", str(wav_path), str(SOUNDFONTS[source]),
           str(mid_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not wav_path.exists():
        raise StepFailed(f"fluidsynth failed ({proc.returncode}): {proc.stderr.strip()}")
    audio, _ = sf.read(wav_path, dtype="float32", always_2d=True)
    out = []
    for layer, start in zip(layers, starts, strict=True):
        a = round(start * RENDER_SR)
        n = max(1, round(layer.budget * RENDER_SR))
        seg = audio[a:a + n]
        out.append(np.pad(seg, ((0, n - len(seg)), (0, 0))))
    return out


def _fade_out(x: np.ndarray, seconds: float = 0.03) -> np.ndarray:
    n = min(len(x), int(seconds * RENDER_SR))
    if n > 0:
        x[-n:] *= np.linspace(1.0, 0.0, n, dtype=np.float32)[:, None]
    return x


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


@dataclass(frozen=True)
class AudioChoices:
    """The per-clip audio choices, drawn from the clip's own generator so chunking never changes them."""

    lead: float
    content: float
    mix_offset: float
    mix_budget: float
    mix_gain_db: float
    peak_db: float
    chain: Chain  # the room, microphone and noise it was recorded through


def _audio_choices(spec: ClipSpec, rng: np.random.Generator) -> AudioChoices:
    lead = spec.duration * rng.uniform(0.0, 0.2) * (rng.random() < 0.85)
    trail = spec.duration * rng.uniform(0.0, 0.25) * (rng.random() < 0.85)
    content = max(0.2, spec.duration - lead - trail)
    lead = min(lead, spec.duration - content)
    mix_budget = content * rng.uniform(0.4, 1.0)
    return AudioChoices(lead=float(lead), content=float(content),
                         mix_offset=float(rng.uniform(0, content - mix_budget)), mix_budget=float(mix_budget),
                         mix_gain_db=float(rng.uniform(-14, -6)), peak_db=float(rng.uniform(-18, -1)),
                         chain=draw_chain(rng))


@dataclass(frozen=True)
class ClipSource:
    """Where a clip's sound came from, for sources.csv and the licence column."""

    source: str  # the main sound's source key
    voice: str  # its voice, described
    mix_voice: str  # the quieter second class's voice, or ''
    chain: str  # the recorded-like chain, described

    @property
    def family(self) -> str:
        return family(self.source)


def render_chunk(specs: list[ClipSpec], seed: int, root: str) -> dict[str, ClipSource]:
    """Render and write a chunk of clips; re-roll any layer that comes out silent (a note outside a zone).

    Returns each clip's fname -> where its sound came from."""
    choices = {s.index: _audio_choices(s, np.random.default_rng([seed, 1, s.index])) for s in specs}
    wanted = {}  # (clip index, layer) -> (class, budget)
    for s in specs:
        wanted[(s.index, 0)] = (s.true_label, choices[s.index].content)
        if s.mix_class is not None:
            wanted[(s.index, 1)] = (s.mix_class, choices[s.index].mix_budget)
    rendered: dict[tuple[int, int], np.ndarray] = {}
    voices: dict[tuple[int, int], Voice] = {}
    tmp_dir = Path(tempfile.mkdtemp(prefix="fsdtag_demo_"))
    try:
        for attempt in range(MAX_ATTEMPTS):
            todo = [k for k in wanted if k not in rendered]
            if not todo:
                break
            layers = {k: make_layer(*wanted[k], np.random.default_rng([seed, 2, k[0], k[1], attempt]))
                      for k in todo}
            for source in sorted({layer.voice.source for layer in layers.values()}):
                keys = [k for k in todo if layers[k].voice.source == source]
                for k, audio in zip(keys, render_layers([layers[k] for k in keys], tmp_dir), strict=True):
                    if np.abs(audio).max() > SILENT_PEAK:
                        rendered[k] = audio
                        voices[k] = layers[k].voice
        missing = [k for k in wanted if k not in rendered]
        if missing:
            raise StepFailed(f"layers still silent after {MAX_ATTEMPTS} attempts: {missing}")
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    written = {}
    for s in specs:
        audio = assemble(s, choices[s.index], rendered[(s.index, 0)], rendered.get((s.index, 1)),
                         np.random.default_rng([seed, 3, s.index]))
        path = Path(root) / s.audio_dir / s.fname
        atomic_write(path, lambda tmp, a=audio, s=s: sf.write(tmp, a, s.sample_rate, subtype=s.subtype,
                                                             format="WAV"))
        mix = voices.get((s.index, 1))
        written[s.fname] = ClipSource(voices[(s.index, 0)].source, voices[(s.index, 0)].describe(),
                                      mix.describe() if mix else "", choices[s.index].chain.describe())
    return written


def assemble(spec: ClipSpec, ch: AudioChoices, main: np.ndarray, mix: np.ndarray | None,
             rng: np.random.Generator) -> np.ndarray:
    """Place the sound between silences, add the quieter class, record it through the clip's chain (room,
    microphone, noise), then set the level and the format."""
    content = _fade_out(main.copy())
    level = _rms(content[np.abs(content).max(axis=1) > SILENT_PEAK]) + 1e-9
    if mix is not None:
        mix = _fade_out(mix.copy())
        mix_level = _rms(mix[np.abs(mix).max(axis=1) > SILENT_PEAK]) + 1e-9
        a = round(ch.mix_offset * RENDER_SR)
        n = min(len(mix), len(content) - a)
        content[a:a + n] += mix[:n] * (level / mix_level) * 10 ** (ch.mix_gain_db / 20)
    n_total = round(spec.duration * RENDER_SR)
    clip = np.zeros((n_total, 2), dtype=np.float32)
    a = round(ch.lead * RENDER_SR)
    n = min(len(content), n_total - a)
    clip[a:a + n] = content[:n]
    if spec.channels == 1:
        clip = clip.mean(axis=1, keepdims=True)
    clip *= CHAIN_PEAK / (np.abs(clip).max() + 1e-9)
    clip = apply_chain(clip, RENDER_SR, ch.chain, rng)
    clip *= 10 ** (ch.peak_db / 20) / (np.abs(clip).max() + 1e-9)
    if spec.sample_rate != RENDER_SR:
        clip = soxr.resample(clip, RENDER_SR, spec.sample_rate, quality="HQ").astype(np.float32)
        clip = np.clip(clip, -1.0, 1.0)
    return clip[:, 0] if spec.channels == 1 else clip


def check_tools() -> None:
    """Fail early, with the fix, if fluidsynth, a soundfont or a drum kit is missing."""
    missing = [str(p) for p in SOUNDFONTS.values() if not p.exists()]
    missing += [str(hydrogen.KIT_DIR / kit) for kit in hydrogen.KITS if not (hydrogen.KIT_DIR / kit).is_dir()]
    if shutil.which("fluidsynth") is None:
        missing.append("fluidsynth")
    if missing:
        raise StepFailed(f"missing {', '.join(missing)}: apt-get install {' '.join(APT_PACKAGES)}")
