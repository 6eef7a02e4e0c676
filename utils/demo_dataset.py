"""Build the embedded default dataset: FSDKaggle2018's layout, labels and label noise, from synthesized sounds.

Everything is planned up front from one seed (names, labels, formats), then rendered in independent chunks,
each clip from its own generator, so the result is byte-identical for any --jobs. Audio is written first and
the CSVs last: a folder without both CSVs and a matching demo_dataset.json is never taken as finished.
"""

import json
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from utils.atomic import save_json, save_text
from utils.demo_synth import CLASS_VOICES, CLASSES, LICENSES, ClipSpec, check_tools, render_chunk

FORMAT_VERSION = 1  # bump when the generator changes, so old builds are not reused
PARAMS_FILE = "demo_dataset.json"
TRAIN_CSV, TEST_CSV = "train.csv", "test_post_competition.csv"
TRAIN_HEADER = "fname,label,manually_verified,true_label"
TEST_HEADER = "fname,label,usage,freesound_id,license"

VERIFIED_SHARE = 0.4
WRONG_SHARE = 0.3  # among unverified train clips
MIX_SHARE = 0.05
PUBLIC_SHARE = 0.19
SAMPLE_RATES = {44100: 0.8, 48000: 0.08, 22050: 0.07, 16000: 0.05}
CHANNELS = {1: 0.85, 2: 0.15}
SUBTYPES = {"PCM_16": 0.92, "PCM_24": 0.08}
CHUNK_SIZE = 8

# Classes a tired annotator, or a similar-sounding recording, would swap for each other.
CONFUSABLE = {
    "Acoustic_guitar": ("Electric_piano", "Double_bass"),
    "Applause": ("Tambourine", "Gunshot_or_gunfire"),
    "Bass_drum": ("Snare_drum", "Gunshot_or_gunfire"),
    "Cello": ("Violin_or_fiddle", "Double_bass"),
    "Chime": ("Glockenspiel", "Telephone"),
    "Clarinet": ("Oboe", "Saxophone", "Flute"),
    "Cowbell": ("Chime", "Tambourine"),
    "Double_bass": ("Cello", "Acoustic_guitar"),
    "Electric_piano": ("Acoustic_guitar", "Glockenspiel"),
    "Flute": ("Clarinet", "Oboe"),
    "Glockenspiel": ("Chime", "Electric_piano"),
    "Gunshot_or_gunfire": ("Bass_drum", "Snare_drum"),
    "Harmonica": ("Saxophone", "Clarinet"),
    "Hi-hat": ("Tambourine", "Snare_drum"),
    "Oboe": ("Clarinet", "Saxophone"),
    "Saxophone": ("Oboe", "Clarinet", "Trumpet"),
    "Snare_drum": ("Bass_drum", "Hi-hat"),
    "Tambourine": ("Hi-hat", "Applause"),
    "Telephone": ("Chime", "Glockenspiel"),
    "Trumpet": ("Saxophone", "Oboe"),
    "Violin_or_fiddle": ("Cello", "Flute"),
}


@dataclass(frozen=True)
class DemoParams:
    clips_per_class: int
    test_clips_per_class: int
    seed: int
    classes: tuple[str, ...]
    format_version: int = FORMAT_VERSION


@dataclass(frozen=True)
class ClipRow:
    spec: ClipSpec
    split: str  # "train" | "test"
    label: str
    verified: int
    usage: str
    freesound_id: int


def _exact_counts(n: int, shares: Sequence[float]) -> list[int]:
    """Split n by shares with the largest-remainder rule, so small builds still get every kind."""
    raw = np.asarray(shares, dtype=np.float64) * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def _assign(rng: np.random.Generator, n: int, table: dict) -> list:
    """n values from table's keys in exactly the table's proportions, in random order."""
    values = [v for v, c in zip(table, _exact_counts(n, list(table.values())), strict=True) for _ in range(c)]
    return [values[i] for i in rng.permutation(n)]


def _durations(rng: np.random.Generator, n: int) -> np.ndarray:
    # Freesound-like: most clips a few seconds, a long tail; median ~3 s
    return np.round(np.clip(rng.lognormal(np.log(3.0), 0.8, n), 0.3, 15.0), 3)


def _wrong_label(rng: np.random.Generator, truth: str, classes: Sequence[str]) -> str:
    near = [c for c in CONFUSABLE[truth] if c in classes]
    pool = near or [c for c in classes if c != truth]
    return pool[int(rng.integers(len(pool)))]


def plan_dataset(params: DemoParams) -> list[ClipRow]:
    """Every clip's name, split, labels and format; cheap and deterministic for params."""
    rng = np.random.default_rng([params.seed, 0])
    classes = list(params.classes)
    splits = [("train", c) for c in classes for _ in range(params.clips_per_class)]
    splits += [("test", c) for c in classes for _ in range(params.test_clips_per_class)]
    n = len(splits)
    names: set[str] = set()
    fnames = []
    while len(fnames) < n:
        name = f"{int(rng.integers(0, 2**32)):08x}.wav"
        if name not in names:
            names.add(name)
            fnames.append(name)
    rates, channels = _assign(rng, n, SAMPLE_RATES), _assign(rng, n, CHANNELS)
    subtypes, durations = _assign(rng, n, SUBTYPES), _durations(rng, n)
    mixed = set(rng.permutation(n)[: round(MIX_SHARE * n)].tolist()) if len(classes) > 1 else set()
    mix_class = {i: _wrong_label(rng, splits[i][1], classes) for i in sorted(mixed)}

    # Train label noise: exactly VERIFIED_SHARE verified (spread over classes), WRONG_SHARE of the rest wrong.
    train_idx = [i for i, (split, _) in enumerate(splits) if split == "train"]
    n_verified = round(VERIFIED_SHARE * len(train_idx))
    per_class = _exact_counts(n_verified, [1.0 / len(classes)] * len(classes))
    verified = set()
    for c, k in zip(classes, [per_class[j] for j in rng.permutation(len(classes))], strict=True):
        idx = [i for i in train_idx if splits[i][1] == c]
        verified |= {idx[j] for j in rng.permutation(len(idx))[:k]}
    unverified = [i for i in train_idx if i not in verified]
    n_wrong = round(WRONG_SHARE * len(unverified)) if len(classes) > 1 else 0
    wrong = {unverified[j] for j in rng.permutation(len(unverified))[:n_wrong]}

    test_idx = [i for i, (split, _) in enumerate(splits) if split == "test"]
    public = {test_idx[j] for j in rng.permutation(len(test_idx))[: round(PUBLIC_SHARE * len(test_idx))]}
    ids = rng.choice(np.arange(10_000, 460_000), size=n, replace=False)

    rows = []
    for i, (split, truth) in enumerate(splits):
        label = truth
        if i in wrong:
            # a mix is mislabelled with its quieter class, a single sound with a confusable one
            label = mix_class[i] if i in mix_class else _wrong_label(rng, truth, classes)
        spec = ClipSpec(index=i, fname=fnames[i], audio_dir=f"audio_{split}", true_label=truth,
                        mix_class=mix_class.get(i), sample_rate=rates[i], channels=channels[i],
                        subtype=subtypes[i], duration=float(durations[i]))
        rows.append(ClipRow(spec=spec, split=split, label=label, verified=int(i in verified),
                            usage="Public" if i in public else "Private", freesound_id=int(ids[i])))
    return rows


def _csv_texts(rows: list[ClipRow], soundfonts: dict[str, str]) -> tuple[str, str]:
    train = sorted((r for r in rows if r.split == "train"), key=lambda r: r.spec.fname)
    test = sorted((r for r in rows if r.split == "test"), key=lambda r: r.spec.fname)
    train_lines = [TRAIN_HEADER] + [f"{r.spec.fname},{r.label},{r.verified},{r.spec.true_label}" for r in train]
    test_lines = [TEST_HEADER] + [
        f"{r.spec.fname},{r.label},{r.usage},{r.freesound_id},{LICENSES[soundfonts[r.spec.fname]]}" for r in test]
    return "\n".join(train_lines) + "\n", "\n".join(test_lines) + "\n"


def _stats(rows: list[ClipRow]) -> dict:
    train = [r for r in rows if r.split == "train"]
    unverified = [r for r in train if not r.verified]
    test = [r for r in rows if r.split == "test"]
    return {
        "n_train": len(train), "n_test": len(test),
        "n_verified": sum(r.verified for r in train),
        "n_unverified_wrong": sum(r.label != r.spec.true_label for r in unverified),
        "n_mixed": sum(r.spec.mix_class is not None for r in rows),
        "n_public": sum(r.usage == "Public" for r in test),
        "seconds": round(sum(r.spec.duration for r in rows), 1),
    }


def is_complete(root: Path, params: DemoParams) -> bool:
    """True when root holds a finished build made with exactly these parameters."""
    try:
        stored = json.loads((root / PARAMS_FILE).read_text())
    except (OSError, ValueError):
        return False
    if stored.get("params") != json.loads(json.dumps(asdict(params))):
        return False
    if not (root / TRAIN_CSV).exists() or not (root / TEST_CSV).exists():
        return False
    for csv_name, audio_dir in ((TRAIN_CSV, "audio_train"), (TEST_CSV, "audio_test")):
        for line in (root / csv_name).read_text().splitlines()[1:]:
            if not (root / audio_dir / line.split(",", 1)[0]).exists():
                return False
    return True


def build_demo_dataset(root: Path, clips_per_class: int, test_clips_per_class: int, seed: int,
                       classes: list[str] | None = None, jobs: int = 1, progress: bool = False) -> bool:
    """Build the demo dataset under root; returns False when an identical finished build was already there."""
    root = Path(root)
    chosen = tuple(sorted(classes)) if classes else CLASSES
    unknown = [c for c in chosen if c not in CLASS_VOICES]
    if unknown:
        raise ValueError(f"unknown classes {unknown}; choose from {list(CLASSES)}")
    params = DemoParams(clips_per_class, test_clips_per_class, seed, chosen)
    if is_complete(root, params):
        return False
    if (root / TRAIN_CSV).exists() and not (root / PARAMS_FILE).exists():
        raise FileExistsError(f"{root} holds a dataset that is not a demo build; refusing to overwrite it")
    check_tools()
    rows = plan_dataset(params)
    # Unmark the folder before touching audio, so an interrupted rebuild is never read as finished.
    for name in (TRAIN_CSV, TEST_CSV, "folds.csv"):  # folds of an old train.csv would not fit the new one
        (root / name).unlink(missing_ok=True)
    if (root / PARAMS_FILE).exists():
        # our own earlier build: its clips would linger among the new ones
        for audio_dir in ("audio_train", "audio_test"):
            for old in (root / audio_dir).glob("*.wav"):
                old.unlink()
    save_json(root / PARAMS_FILE, {"params": asdict(params), "stats": _stats(rows)})
    specs = [r.spec for r in rows]
    chunks = [specs[i:i + CHUNK_SIZE] for i in range(0, len(specs), CHUNK_SIZE)]
    soundfonts: dict[str, str] = {}
    with tqdm(total=len(specs), desc="demo dataset", unit="clip", disable=not progress) as bar:
        if jobs <= 1:
            for chunk in chunks:
                soundfonts.update(render_chunk(chunk, seed, str(root)))
                bar.update(len(chunk))
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futures = [pool.submit(render_chunk, chunk, seed, str(root)) for chunk in chunks]
                for future in as_completed(futures):
                    done = future.result()
                    soundfonts.update(done)
                    bar.update(len(done))
    train_text, test_text = _csv_texts(rows, soundfonts)
    save_text(root / TEST_CSV, test_text)
    save_text(root / TRAIN_CSV, train_text)
    return True


def default_jobs() -> int:
    return os.cpu_count() or 1
