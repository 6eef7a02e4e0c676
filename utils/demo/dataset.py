"""Build the embedded default dataset: FSDKaggle2018's layout, labels and label noise, from synthesized sounds.

Everything is planned up front from one seed (names, labels, formats), then rendered in independent chunks,
each clip from its own generator, so the result is byte-identical for any --jobs. Audio is written first and
the CSVs last: a folder without its CSVs and a matching demo_dataset.json is never taken as finished.
sources.csv records where each clip's sound came from (source family, soundfont or kit, voice) and the
recorded-like chain it went through, for benchmarks/cross_source.py and for anyone who wants to know.

Like the real test_post_competition.csv, the test set also holds Kaggle's padding: 'Ignored' rows labelled
'None' (rendered clips of a random class, never scored), and a few broken wavs (valid WAVs with 0 samples, or
random bytes), some Ignored and some scored. These extra rows are planned from their own generator after the
main plan, so the train clips and the scored test clips stay those of a build without them.
"""

import csv
import io
import json
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from utils.atomic import WriteError, atomic_write, save_json, save_text
from utils.demo.synth import CLASS_VOICES, CLASSES, LICENSES, ClipSource, ClipSpec, check_tools, render_chunk
from utils.errors import InputError

FORMAT_VERSION = 3  # bump when the generator changes, so old builds are not reused
PARAMS_FILE = "demo_dataset.json"
TRAIN_CSV, TEST_CSV, SOURCES_CSV = "train.csv", "test_post_competition.csv", "sources.csv"
TRAIN_HEADER = "fname,label,manually_verified,true_label"
TEST_HEADER = "fname,label,usage,freesound_id,license"
SOURCES_HEADER = ["fname", "split", "true_label", "family", "source", "voice", "mix_class", "mix_voice", "chain"]

VERIFIED_SHARE = 0.4
WRONG_SHARE = 0.3  # among unverified train clips
MIX_SHARE = 0.05
PUBLIC_SHARE = 0.19
SAMPLE_RATES = {44100: 0.8, 48000: 0.08, 22050: 0.07, 16000: 0.05}
CHANNELS = {1: 0.85, 2: 0.15}
SUBTYPES = {"PCM_16": 0.92, "PCM_24": 0.08}
CHUNK_SIZE = 32  # clips per fluidsynth call per source: MuseScore's soundfont alone takes 2 s to load
IGNORED_LABEL = "None"  # the label of Kaggle's padding rows in test_post_competition.csv
EMPTY, UNREADABLE = "empty", "unreadable"  # the two kinds of broken wav
BROKEN_LICENSE = LICENSES["fluid"]
# The durations of the default build: log-normal median (s), sigma, longest clip (s); shortest is always 0.3 s.
SMALL_DURATIONS = (3.0, 0.8, 15.0)

# The real FSDKaggle2018: 9,473 train clips (3,710 verified), 1,600 scored test clips (301 Public, 1,299
# Private) and 7,800 Ignored padding clips, 3 of them empty wavs; 0.3-30 s, median ~4 s.
FULL_SIZE = dict(train_clips=9473, scored_test_clips=1600, padding_clips=7797, empty_clips=3, unreadable_clips=0,
                 broken_scored=0, verified_share=3710 / 9473, public_share=301 / 1600, durations=(4.0, 1.0, 30.0))
# Between the two: FSDKaggle2018's verified share and test set shape at 2,100 train clips (100 per class), the
# default's clip lengths and label noise. Its ~820 verified clips alone are too few for a good model, so the
# unverified ones matter: the setting benchmarks/self_verification.py measures self-verification in.
MEDIUM_TRAIN_CLIPS = 2100
_MEDIUM_SCALE = MEDIUM_TRAIN_CLIPS / FULL_SIZE["train_clips"]
MEDIUM_SIZE = dict(train_clips=MEDIUM_TRAIN_CLIPS, scored_test_clips=round(1600 * _MEDIUM_SCALE),
                   padding_clips=round(7797 * _MEDIUM_SCALE), empty_clips=1, unreadable_clips=0, broken_scored=0,
                   verified_share=FULL_SIZE["verified_share"], public_share=FULL_SIZE["public_share"],
                   durations=SMALL_DURATIONS)
SIZES = ("small", "medium", "full")
# bytes per sample for the estimate of the disk space a build takes
SUBTYPE_BYTES = {"PCM_16": 2, "PCM_24": 3}
WAV_HEADER_BYTES = 44
UNREADABLE_BYTES = (256, 4096)  # size range of an unreadable wav's random bytes

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
    clips_per_class: int  # train clips per class, unless train_clips is set
    test_clips_per_class: int  # scored test clips per class, unless scored_test_clips is set
    seed: int
    classes: tuple[str, ...]
    padding_clips: int = 0  # Ignored test rows labelled None, rendered from a random class
    empty_clips: int = 0  # Ignored test rows whose wav holds 0 samples
    unreadable_clips: int = 0  # Ignored test rows whose wav is random bytes
    broken_scored: int = 0  # extra scored (Public/Private, labelled) test rows with a broken wav
    train_clips: int | None = None  # total over the classes (spread evenly), instead of per class
    scored_test_clips: int | None = None
    verified_share: float = VERIFIED_SHARE
    public_share: float = PUBLIC_SHARE
    durations: tuple[float, float, float] = SMALL_DURATIONS  # log-normal median, sigma; longest clip
    format_version: int = FORMAT_VERSION


@dataclass(frozen=True)
class ClipRow:
    spec: ClipSpec
    split: str  # "train" | "test"
    label: str
    verified: int
    usage: str  # "Public" | "Private" (scored) | "Ignored"
    freesound_id: int
    broken: str | None = None  # EMPTY or UNREADABLE: the wav is written as such, not rendered


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


def _durations(rng: np.random.Generator, n: int, shape: tuple[float, float, float] = SMALL_DURATIONS) -> np.ndarray:
    # Freesound-like: most clips a few seconds, a long tail (default: median ~3 s, at most 15 s)
    median, sigma, longest = shape
    return np.round(np.clip(rng.lognormal(np.log(median), sigma, n), 0.3, longest), 3)


def _wrong_label(rng: np.random.Generator, truth: str, classes: Sequence[str]) -> str:
    near = [c for c in CONFUSABLE[truth] if c in classes]
    pool = near or [c for c in classes if c != truth]
    return pool[int(rng.integers(len(pool)))]


def _per_class(total: int | None, per_class: int, n_classes: int) -> list[int]:
    return [per_class] * n_classes if total is None else _exact_counts(total, [1.0 / n_classes] * n_classes)


def _new_names(rng: np.random.Generator, n: int, taken: set[str]) -> list[str]:
    """n fresh random 8-hex-digit wav names, none of them in taken (which grows by them)."""
    fnames = []
    while len(fnames) < n:
        name = f"{int(rng.integers(0, 2**32)):08x}.wav"
        if name not in taken:
            taken.add(name)
            fnames.append(name)
    return fnames


def plan_dataset(params: DemoParams) -> list[ClipRow]:
    """Every clip's name, split, labels and format; cheap and deterministic for params.

    The train clips and the scored test clips come first, from generator [seed, 0]; the padding and broken
    test rows follow, from generator [seed, 4], so adding them changes nothing before them."""
    rows = _plan_main(params)
    return rows + _plan_extra(params, rows)


def _plan_main(params: DemoParams) -> list[ClipRow]:
    rng = np.random.default_rng([params.seed, 0])
    classes = list(params.classes)
    train_counts = _per_class(params.train_clips, params.clips_per_class, len(classes))
    test_counts = _per_class(params.scored_test_clips, params.test_clips_per_class, len(classes))
    splits = [("train", c) for c, k in zip(classes, train_counts, strict=True) for _ in range(k)]
    splits += [("test", c) for c, k in zip(classes, test_counts, strict=True) for _ in range(k)]
    n = len(splits)
    fnames = _new_names(rng, n, set())
    rates, channels = _assign(rng, n, SAMPLE_RATES), _assign(rng, n, CHANNELS)
    subtypes, durations = _assign(rng, n, SUBTYPES), _durations(rng, n, params.durations)
    mixed = set(rng.permutation(n)[: round(MIX_SHARE * n)].tolist()) if len(classes) > 1 else set()
    mix_class = {i: _wrong_label(rng, splits[i][1], classes) for i in sorted(mixed)}

    # Train label noise: exactly verified_share verified (spread over classes), WRONG_SHARE of the rest wrong.
    train_idx = [i for i, (split, _) in enumerate(splits) if split == "train"]
    n_verified = round(params.verified_share * len(train_idx))
    per_class = _exact_counts(n_verified, [1.0 / len(classes)] * len(classes))
    verified = set()
    for c, k in zip(classes, [per_class[j] for j in rng.permutation(len(classes))], strict=True):
        idx = [i for i in train_idx if splits[i][1] == c]
        verified |= {idx[j] for j in rng.permutation(len(idx))[:k]}
    unverified = [i for i in train_idx if i not in verified]
    n_wrong = round(WRONG_SHARE * len(unverified)) if len(classes) > 1 else 0
    wrong = {unverified[j] for j in rng.permutation(len(unverified))[:n_wrong]}

    test_idx = [i for i, (split, _) in enumerate(splits) if split == "test"]
    public = {test_idx[j] for j in rng.permutation(len(test_idx))[: round(params.public_share * len(test_idx))]}
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


def _plan_extra(params: DemoParams, main: list[ClipRow]) -> list[ClipRow]:
    """Kaggle's test padding (Ignored, label None, audio of a random class) and the broken test wavs."""
    kinds = ([("padding", None)] * params.padding_clips + [("ignored", EMPTY)] * params.empty_clips
             + [("ignored", UNREADABLE)] * params.unreadable_clips
             + [("scored", (EMPTY, UNREADABLE)[k % 2]) for k in range(params.broken_scored)])
    m = len(kinds)
    if m == 0:
        return []
    rng = np.random.default_rng([params.seed, 4])
    classes = list(params.classes)
    fnames = _new_names(rng, m, {r.spec.fname for r in main})
    rates, channels = _assign(rng, m, SAMPLE_RATES), _assign(rng, m, CHANNELS)
    subtypes, durations = _assign(rng, m, SUBTYPES), _durations(rng, m, params.durations)
    truths = [classes[int(k)] for k in rng.integers(len(classes), size=m)]
    padding = [j for j, (kind, _) in enumerate(kinds) if kind == "padding"]
    n_mixed = round(MIX_SHARE * len(padding)) if len(classes) > 1 else 0
    mixed = sorted(padding[j] for j in rng.permutation(len(padding))[:n_mixed])
    mix_class = {j: _wrong_label(rng, truths[j], classes) for j in mixed}
    public = rng.random(m) < params.public_share
    taken = np.sort(np.array([r.freesound_id for r in main], dtype=np.int64))
    free = np.setdiff1d(np.arange(10_000, 460_000), taken, assume_unique=True)
    ids = rng.choice(free, size=m, replace=False)
    rows = []
    for j, (kind, broken) in enumerate(kinds):
        spec = ClipSpec(index=len(main) + j, fname=fnames[j], audio_dir="audio_test", true_label=truths[j],
                        mix_class=mix_class.get(j), sample_rate=rates[j], channels=channels[j],
                        subtype=subtypes[j], duration=0.0 if broken else float(durations[j]))
        scored = kind == "scored"
        rows.append(ClipRow(spec=spec, split="test", label=truths[j] if scored else IGNORED_LABEL, verified=0,
                            usage=("Public" if public[j] else "Private") if scored else "Ignored",
                            freesound_id=int(ids[j]), broken=broken))
    return rows


def _csv_texts(rows: list[ClipRow], sources: dict[str, ClipSource]) -> tuple[str, str]:
    train = sorted((r for r in rows if r.split == "train"), key=lambda r: r.spec.fname)
    test = sorted((r for r in rows if r.split == "test"), key=lambda r: r.spec.fname)
    train_lines = [TRAIN_HEADER] + [f"{r.spec.fname},{r.label},{r.verified},{r.spec.true_label}" for r in train]
    test_lines = [TEST_HEADER] + [
        f"{r.spec.fname},{r.label},{r.usage},{r.freesound_id},"
        f"{BROKEN_LICENSE if r.broken else LICENSES[sources[r.spec.fname].source]}" for r in test]
    return "\n".join(train_lines) + "\n", "\n".join(test_lines) + "\n"


def _sources_text(rows: list[ClipRow], sources: dict[str, ClipSource]) -> str:
    """sources.csv: each rendered clip's source family, source, voices and recorded-like chain."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SOURCES_HEADER)
    for r in sorted((r for r in rows if not r.broken), key=lambda r: (r.split, r.spec.fname)):
        src = sources[r.spec.fname]
        writer.writerow([r.spec.fname, r.split, r.spec.true_label, src.family, src.source, src.voice,
                         r.spec.mix_class or "", src.mix_voice, src.chain])
    return out.getvalue()


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
        "n_private": sum(r.usage == "Private" for r in test),
        "n_ignored": sum(r.usage == "Ignored" for r in test),
        "n_empty": sum(r.broken == EMPTY for r in test),
        "n_unreadable": sum(r.broken == UNREADABLE for r in test),
        "broken_wavs": sorted(r.spec.fname for r in test if r.broken),
        "broken_scored": sorted(r.spec.fname for r in test if r.broken and r.usage != "Ignored"),
        "seconds": round(sum(r.spec.duration for r in rows), 1),
        "estimated_bytes": estimate_bytes(rows),
    }


def estimate_bytes(rows: list[ClipRow]) -> int:
    """About the disk space the build's wavs take (headers, samples at each clip's rate, width and channels)."""
    total = 0
    for r in rows:
        s = r.spec
        if r.broken == UNREADABLE:
            total += UNREADABLE_BYTES[1]
        else:
            total += WAV_HEADER_BYTES + round(s.duration * s.sample_rate) * s.channels * SUBTYPE_BYTES[s.subtype]
    return total


def free_bytes(root: Path) -> int:
    """Free space on the file system that holds root (or would, once created)."""
    path = Path(root).absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def check_disk(root: Path, needed: int, margin: float = 1.1) -> None:
    free = free_bytes(root)
    if needed * margin > free:
        raise WriteError(f"{root}: the build needs about {needed / 1e9:.1f} GB but only {free / 1e9:.1f} GB are free")


def _write_broken(root: Path, row: ClipRow, seed: int) -> None:
    """An empty wav (a valid header, 0 samples) or an unreadable one (random bytes named .wav)."""
    path = root / row.spec.audio_dir / row.spec.fname
    if row.broken == EMPTY:
        empty = np.zeros((0, row.spec.channels), dtype=np.float32)
        atomic_write(path, lambda tmp: sf.write(tmp, empty, row.spec.sample_rate, subtype=row.spec.subtype,
                                                format="WAV"))
    else:
        rng = np.random.default_rng([seed, 5, row.spec.index])
        junk = rng.integers(0, 256, size=int(rng.integers(*UNREADABLE_BYTES)), dtype=np.uint8).tobytes()
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(junk))


def make_params(clips_per_class: int = 24, test_clips_per_class: int | None = None, seed: int = 0,
                classes: Sequence[str] | None = None, size: str = "small", padding_clips: int | None = None,
                empty_clips: int | None = None, unreadable_clips: int | None = None,
                broken_scored: int | None = None) -> DemoParams:
    """The parameters of a build. 'small' (the embedded default): clips_per_class train clips and
    test_clips_per_class scored test clips per class (default a third), as many padding rows as scored test
    clips, 2 empty + 1 unreadable Ignored wavs and 1 broken scored wav. 'full': FSDKaggle2018's counts and
    shares (FULL_SIZE) spread over the classes; 'medium': the same shares at 2,100 train clips (MEDIUM_SIZE);
    for both, clips_per_class and test_clips_per_class are not used."""
    chosen = tuple(sorted(classes)) if classes else CLASSES
    unknown = [c for c in chosen if c not in CLASS_VOICES]
    if unknown:
        raise InputError(f"unknown classes {unknown}; choose from {list(CLASSES)}")
    if size == "small":
        test = max(1, clips_per_class // 3) if test_clips_per_class is None else test_clips_per_class
        base = dict(clips_per_class=clips_per_class, test_clips_per_class=test,
                    padding_clips=test * len(chosen), empty_clips=2, unreadable_clips=1, broken_scored=1)
    elif size in ("medium", "full"):
        base = dict(clips_per_class=0, test_clips_per_class=0, **(MEDIUM_SIZE if size == "medium" else FULL_SIZE))
    else:
        raise InputError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    given = dict(padding_clips=padding_clips, empty_clips=empty_clips, unreadable_clips=unreadable_clips,
                 broken_scored=broken_scored)
    base.update({k: v for k, v in given.items() if v is not None})
    if any(base[k] < 0 for k in given):
        raise InputError(f"counts of extra test rows must not be negative: { {k: base[k] for k in given} }")
    return DemoParams(seed=seed, classes=chosen, **base)


def is_complete(root: Path, params: DemoParams) -> bool:
    """True when root holds a finished build made with exactly these parameters."""
    try:
        stored = json.loads((root / PARAMS_FILE).read_text())
    except (OSError, ValueError):
        return False
    if stored.get("params") != json.loads(json.dumps(asdict(params))):
        return False
    if not all((root / name).exists() for name in (TRAIN_CSV, TEST_CSV, SOURCES_CSV)):
        return False
    for csv_name, audio_dir in ((TRAIN_CSV, "audio_train"), (TEST_CSV, "audio_test")):
        for line in (root / csv_name).read_text().splitlines()[1:]:
            if not (root / audio_dir / line.split(",", 1)[0]).exists():
                return False
    return True


def build_demo_dataset(root: Path, clips_per_class: int = 24, test_clips_per_class: int | None = None,
                       seed: int = 0, classes: Sequence[str] | None = None, jobs: int = 1, progress: bool = False,
                       **options) -> bool:
    """Build the demo dataset under root; returns False when an identical finished build was already there.

    options: size, padding_clips, empty_clips, unreadable_clips, broken_scored (see make_params)."""
    params = make_params(clips_per_class, test_clips_per_class, seed, classes, **options)
    return build_from_params(Path(root), params, jobs=jobs, progress=progress)


def build_from_params(root: Path, params: DemoParams, jobs: int = 1, progress: bool = False,
                      rows: list[ClipRow] | None = None) -> bool:
    """Build params' dataset under root (rows: its plan, if already made); False when it was already there."""
    root = Path(root)
    if is_complete(root, params):
        return False
    if (root / TRAIN_CSV).exists() and not (root / PARAMS_FILE).exists():
        raise InputError(f"{root} holds a dataset that is not a demo build; refusing to overwrite it")
    check_tools()
    rows = plan_dataset(params) if rows is None else rows
    # Unmark the folder before touching audio, so an interrupted rebuild is never read as finished.
    for name in (TRAIN_CSV, TEST_CSV, SOURCES_CSV, "folds.csv"):  # folds of an old train.csv would not fit the new one
        (root / name).unlink(missing_ok=True)
    if (root / PARAMS_FILE).exists():
        # our own earlier build: its clips would linger among the new ones
        for audio_dir in ("audio_train", "audio_test"):
            for old in (root / audio_dir).glob("*.wav"):
                old.unlink()
    check_disk(root, estimate_bytes(rows))
    save_json(root / PARAMS_FILE, {"params": asdict(params), "stats": _stats(rows)})
    for audio_dir in ("audio_train", "audio_test"):
        (root / audio_dir).mkdir(parents=True, exist_ok=True)
    for r in rows:
        if r.broken:
            _write_broken(root, r, params.seed)
    # The main plan is chunked as it always was, the padding on its own: fluidsynth renders each chunk in
    # one call, so the main clips keep the very same calls, and bytes, as in a build without padding.
    main = [r.spec for r in rows if r.usage != "Ignored" and not r.broken]
    padding = [r.spec for r in rows if r.usage == "Ignored" and not r.broken]
    chunks = [part[i:i + CHUNK_SIZE] for part in (main, padding) for i in range(0, len(part), CHUNK_SIZE)]
    sources: dict[str, ClipSource] = {}
    with tqdm(total=len(main) + len(padding), desc="demo dataset", unit="clip", disable=not progress) as bar:
        if jobs <= 1:
            for chunk in chunks:
                sources.update(render_chunk(chunk, params.seed, str(root)))
                bar.update(len(chunk))
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futures = [pool.submit(render_chunk, chunk, params.seed, str(root)) for chunk in chunks]
                for future in as_completed(futures):
                    done = future.result()
                    sources.update(done)
                    bar.update(len(done))
    train_text, test_text = _csv_texts(rows, sources)
    save_text(root / SOURCES_CSV, _sources_text(rows, sources))
    save_text(root / TEST_CSV, test_text)
    save_text(root / TRAIN_CSV, train_text)
    return True


def default_jobs() -> int:
    return os.cpu_count() or 1
