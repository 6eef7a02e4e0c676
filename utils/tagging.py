"""Tagging new audio with a trained ensemble: the bundle (one file holding every member's weights and what it
was trained on) and the Tagger that runs it, for tag_files.py and notebooks.

    from utils.tagging import Tagger
    tagger = Tagger.from_bundle("bundle.pt")
    probs = tagger.tag("field_recording.flac")           # (C,) fused posteriors
    tagger.top(probs, 3)                                  # [("Flute", 0.91), ...]
    probs = tagger.tag(signal, sr=44100)                  # a numpy array works too

Nothing here is a second implementation of the offline path: each member's spectrogram comes from
utils.spectrogram.spectrogram_from_file with the member's version and preprocessing (what
prepare_spectrograms.py writes), the whole clip is tiled/clipped to the member's max_len and put through
utils.predict.predict_logits + scipy.special.softmax (what eval.py does), and members are averaged with
fusion.py's arithmetic. So a clip gets the same posteriors here as through eval.py --dump_results + fusion.py.

A bundle is a plain dict of tensors, strings and numbers (torch.load(weights_only=True) reads it; no pickled
code): the network code stays in models/, and the bundle names each member's model file."""

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.special
import soundfile as sf
import torch
from torch import nn

from utils.audio import TARGET_SR, AudioError, audio_info, decoder_messages, read_audio, resample, to_mono
from utils.device import pick_device
from utils.errors import InputError
from utils.model_files import build_network, load_model_file, model_settings, resolve_model_file
from utils.paths import REPO
from utils.predict import check_pairing, load_trained_model, predict_logits, weighted_average
from utils.spectrogram import V1_PARAMS, V2_PARAMS, compute_spectrogram, spectrogram_from_file
from utils.spectrogram_cache import end_with_parent

BUNDLE_FORMAT = "fsdtag-bundle"
BUNDLE_VERSION = 1
# segments are cut from the audio and predicted this many at a time, so an hour-long file never holds all its
# spectrograms at once
SEGMENTS_PER_PASS = 16
PLOT_COLUMNS = 2000  # time columns of a --plot spectrogram, however long the file
MEMBER_KEYS = ("model", "spec_version", "preprocessing", "max_len", "state_dict")


class BundleError(InputError):
    """A bundle that cannot be used; the message names the bundle and the reason (one line)."""


# ---- bundles -----------------------------------------------------------------------------------------------

def bundle_member(model_file: str | Path, params_file: str | Path) -> dict[str, Any]:
    """One member of a bundle from a model file and a params file; loading them first refuses params that do
    not fit the model file (architecture, or the features it was trained on)."""
    model, config = load_trained_model(resolve_model_file(model_file), params_file)
    settings = config["settings"]
    return {"model": portable_model_name(model_file), "spec_version": int(settings["spec_version"]),
            "preprocessing": bool(settings["preprocessing"]), "max_len": int(config["max_len"]),
            "batch_size": int(settings.get("valid_batch_size", 8)), "classes": list(config["classes"]),
            "source": str(params_file), "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()}}


def make_bundle(members: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The bundle dict; every member must predict the same classes in the same order, as fusion.py requires."""
    if not members:
        raise BundleError("a bundle needs at least one member")
    classes = members[0]["classes"]
    for m in members[1:]:
        if m["classes"] != classes:
            raise BundleError(f"{m['source']} predicts other classes than {members[0]['source']} (or in another "
                              "order); they cannot be fused into one bundle")
    return {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "classes": list(classes),
            "members": [{k: v for k, v in m.items() if k != "classes"} for m in members]}


def portable_model_name(model_file: str | Path) -> str:
    """models/x.py for a model file of this checkout (so the bundle works in any clone), else its absolute path."""
    path = Path(model_file)
    resolved = (path if path.is_absolute() else Path.cwd() / path).resolve()
    if not resolved.is_file() and not path.is_absolute():
        resolved = (REPO / path).resolve()
    try:
        return resolved.relative_to(REPO).as_posix()
    except ValueError:
        return str(resolved)


def load_bundle(path: str | Path) -> dict[str, Any]:
    """Read and check a bundle; every fault is a BundleError naming the file."""
    path = Path(path)
    if path.is_dir():
        raise BundleError(f"bundle {path} is a folder, not a file")
    if not path.is_file():
        raise BundleError(f"bundle {path} not found")
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a truncated or foreign file
        raise BundleError(f"{path} is not a readable bundle (truncated, corrupt or not a torch file: "
                          f"{type(e).__name__})") from None
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path} is not an fsdtag bundle (make one with export_bundle.py)")
    if bundle.get("version") != BUNDLE_VERSION:
        raise BundleError(f"{path} is bundle version {bundle.get('version')!r}; this code reads version "
                          f"{BUNDLE_VERSION}")
    members = bundle.get("members")
    if not isinstance(members, list) or not members or not isinstance(bundle.get("classes"), list):
        raise BundleError(f"{path} holds no members or no class list")
    for i, m in enumerate(members):
        lacking = [k for k in MEMBER_KEYS if not isinstance(m, dict) or k not in m]
        if lacking:
            raise BundleError(f"{path}: member {i + 1} lacks {', '.join(lacking)}")
    return bundle


def save_bundle(path: str | Path, bundle: dict[str, Any]) -> None:
    from utils.atomic import save_torch

    save_torch(path, bundle)


# ---- members -----------------------------------------------------------------------------------------------

@dataclass
class Member:
    network: nn.Module
    spec_version: int
    preprocessing: bool
    max_len: int
    batch_size: int = 8
    name: str = ""  # where it came from, for messages

    @property
    def features(self) -> tuple[int, bool]:
        return self.spec_version, self.preprocessing


def build_member(entry: dict[str, Any], n_classes: int, bundle_path: str | Path, index: int) -> Member:
    """The member's network from its model file with the bundle's weights; a missing model file, one made for
    other features, or weights that do not fit are one-line BundleErrors."""
    where = f"{bundle_path} member {index + 1} ({entry['model']}, from {entry.get('source', '?')})"
    model_file = resolve_model_file(entry["model"])
    if not model_file.is_file():
        raise BundleError(f"{where}: model file {entry['model']} not found in this checkout ({REPO / 'models'})")
    module = load_model_file(model_file)
    trained = {"settings": {"spec_version": entry["spec_version"], "preprocessing": entry["preprocessing"]}}
    try:
        check_pairing(trained, where, model_file, model_settings(module))
        network = build_network(module, n_classes)
        network.load_state_dict(entry["state_dict"])
    except (RuntimeError, ValueError) as e:
        raise BundleError(f"{where}: the weights do not fit {entry['model']}: {str(e).splitlines()[0]}") from None
    network.eval()
    return Member(network, int(entry["spec_version"]), bool(entry["preprocessing"]), int(entry["max_len"]),
                  int(entry.get("batch_size", 8)), where)


# ---- features ----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def temp_wav(signal: np.ndarray, sr: int) -> Iterator[Path]:
    """signal as a float wav in RAM (/dev/shm where there is one): SoX, and so the offline feature path, reads
    files, and going through one keeps arrays and segments on exactly that path."""
    folder = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    fd, name = tempfile.mkstemp(suffix=".wav", prefix="fsdtag_tag_", dir=folder)
    os.close(fd)
    try:
        sf.write(name, signal, sr, subtype="FLOAT")
        yield Path(name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)


def file_spectrograms(path: str | Path, features: Sequence[tuple[int, bool]]) -> dict[tuple[int, bool], np.ndarray]:
    """Each (version, preprocessing) spectrogram of a file, computed once however many members share it."""
    return {f: spectrogram_from_file(path, f[0], preprocess=f[1]) for f in features}


def plot_spectrogram(signal: np.ndarray, sr: int, version: int, columns: int) -> np.ndarray:
    """A picture of the audio on its true time axis (no silence trimming), average-pooled to `columns`."""
    spec = compute_spectrogram(resample(to_mono(signal), sr, TARGET_SR), version)
    groups = np.array_split(np.arange(spec.shape[1]), min(columns, spec.shape[1]))
    return np.stack([spec[:, g].mean(axis=1) for g in groups], axis=1)


def segment_bounds(n_samples: int, sr: int, seconds: float) -> list[tuple[int, int]]:
    """Consecutive [start, stop) sample ranges of `seconds`; a last piece under half a segment joins the one
    before it, so no segment is a few milliseconds the network can say nothing about."""
    step = max(1, round(seconds * sr))
    starts = list(range(0, n_samples, step))
    if len(starts) > 1 and n_samples - starts[-1] < step / 2:
        starts.pop()
    return [(s, starts[i + 1] if i + 1 < len(starts) else n_samples) for i, s in enumerate(starts)]


# ---- the tagger --------------------------------------------------------------------------------------------

@dataclass
class FileTags:
    """A file's posteriors: one row per segment (one row for the whole file without segments)."""
    path: str
    starts: np.ndarray  # (S,) seconds
    ends: np.ndarray    # (S,) seconds
    probs: np.ndarray   # (S, C) float32 fused posteriors
    duration: float
    warnings: list[str] = field(default_factory=list)
    picture: np.ndarray | None = None  # (bins, columns) spectrogram for --plot


class Tagger:
    """An ensemble of trained networks that tags audio files or arrays; members are averaged as fusion.py does."""

    def __init__(self, classes: Sequence[str], members: Sequence[Member], device: torch.device | None = None):
        if not members:
            raise InputError("a Tagger needs at least one member")
        self.classes = list(classes)
        self.members = list(members)
        self.device = device or torch.device("cpu")
        for m in self.members:
            m.network.to(self.device).eval()

    @classmethod
    def from_bundle(cls, path: str | Path, device: str | None = None) -> "Tagger":
        bundle = load_bundle(path)
        members = [build_member(e, len(bundle["classes"]), path, i) for i, e in enumerate(bundle["members"])]
        return cls(bundle["classes"], members, pick_device(device))

    @property
    def features(self) -> list[tuple[int, bool]]:
        """The distinct (spectrogram version, preprocessing) pairs the members need, in member order."""
        return list(dict.fromkeys(m.features for m in self.members))

    @property
    def max_seconds(self) -> float:
        """The shortest clip length any member sees whole; longer files are clipped (see --segment)."""
        hop = {1: V1_PARAMS["hop_length"], 2: V2_PARAMS["hop_size"]}
        return min(m.max_len * hop[m.spec_version] / TARGET_SR for m in self.members)

    def tag(self, source: str | Path | np.ndarray, sr: int | None = None) -> np.ndarray:
        """(C,) fused posteriors of a whole file, or of a signal ((samples,) or (samples, channels)) at rate sr."""
        if isinstance(source, np.ndarray):
            if sr is None:
                raise InputError("tagging an array needs its sample rate (sr)")
            with temp_wav(source, sr) as wav:
                return self.predict([file_spectrograms(wav, self.features)])[0]
        return self.predict([file_spectrograms(source, self.features)])[0]

    def top(self, probs: np.ndarray, k: int = 3) -> list[tuple[str, float]]:
        """The k most likely classes of one posterior vector, most likely first."""
        order = np.argsort(-np.asarray(probs), kind="stable")[:k]
        return [(self.classes[i], float(probs[i])) for i in order]

    def predict(self, specs: Sequence[dict[tuple[int, bool], np.ndarray]]) -> np.ndarray:
        """(N, C) fused posteriors of N clips given as {features: spectrogram}: each member's softmax of the
        whole clip tiled/clipped to its max_len (eval.py), averaged over members (fusion.py)."""
        per_member = [scipy.special.softmax(predict_logits(m.network, [s[m.features] for s in specs], m.max_len,
                                                           m.batch_size, self.device), axis=1)
                      for m in self.members]
        return weighted_average(per_member)  # fusion.py's arithmetic

    def tag_file(self, path: str | Path, segment: float | None = None, picture: bool = False) -> FileTags:
        """A file's FileTags: the whole file as one clip, or consecutive `segment`-second clips. Problems with
        the file raise AudioError naming it; warnings (e.g. a clip SoX trims to nothing, a decoder's note on an
        odd MP3) are collected, each once."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # a folder, a broken link, an empty, too short or unreadable file fail here, named
            info = audio_info(path)
            duration = info.frames / info.samplerate
            if segment is None:  # straight from the file, exactly the offline path
                probs = self.predict([file_spectrograms(path, self.features)])
                tags = FileTags(str(path), np.zeros(1), np.array([duration]), probs, duration)
                if picture:
                    signal, sr = read_audio(path)
                    tags.picture = plot_spectrogram(signal, sr, self.members[0].spec_version, PLOT_COLUMNS)
            else:
                tags = self._tag_segments(path, info, segment, picture)
        tags.warnings = list(dict.fromkeys(str(w.message) for w in caught))
        return tags

    def _tag_segments(self, path: str | Path, info: Any, seconds: float, picture: bool) -> FileTags:
        sr = info.samplerate
        bounds = segment_bounds(info.frames, sr, seconds)
        probs, pictures = [], []
        columns = max(1, PLOT_COLUMNS // len(bounds))
        try:
            with decoder_messages(path):
                audio = sf.SoundFile(str(path))
        except Exception as e:
            raise AudioError(f"{path}: not a readable audio file ({e})") from None
        with audio:
            for i in range(0, len(bounds), SEGMENTS_PER_PASS):
                specs = []
                for start, stop in bounds[i:i + SEGMENTS_PER_PASS]:
                    signal = read_segment(audio, path, start, stop)
                    specs.append(segment_spectrograms(path, signal, sr, start, self.features))
                    if picture:
                        pictures.append(plot_spectrogram(signal, sr, self.members[0].spec_version, columns))
                probs.append(self.predict(specs))
        starts = np.array([b[0] / sr for b in bounds])
        ends = np.array([b[1] / sr for b in bounds])
        return FileTags(str(path), starts, ends, np.concatenate(probs), info.frames / sr,
                        picture=np.concatenate(pictures, axis=1) if picture else None)


def read_segment(audio: sf.SoundFile, path: str | Path, start: int, stop: int) -> np.ndarray:
    try:
        with decoder_messages(path):
            audio.seek(start)
            signal = audio.read(stop - start, dtype="float32", always_2d=True)
    except Exception as e:  # a file that is corrupt past its header
        raise AudioError(f"{path}: cannot decode audio at {start / audio.samplerate:.1f} s ({e})") from None
    if len(signal) == 0:
        raise AudioError(f"{path}: no samples at {start / audio.samplerate:.1f} s (truncated file?)")
    return signal


def segment_spectrograms(path: str | Path, signal: np.ndarray, sr: int, start: int,
                         features: Sequence[tuple[int, bool]]) -> dict[tuple[int, bool], np.ndarray]:
    """A segment's spectrograms, computed as a clip of its own (SoX trimming and all, as in training); errors
    name the file and the segment rather than the temporary wav."""
    with temp_wav(signal, sr) as wav:
        try:
            return file_spectrograms(wav, features)
        except AudioError as e:
            reason = str(e).split(": ", 1)[-1]
            raise AudioError(f"{path}: segment at {start / sr:.1f} s: {reason}") from None


# ---- batch runs (tag_files.py) -------------------------------------------------------------------------------

@dataclass
class Failure:
    path: str
    reason: str


def tag_one(tagger: Tagger, path: str, segment: float | None, png: str | None) -> FileTags | Failure:
    """One file of a batch: its tags (and its plot, when png is given), or why it could not be tagged. Any error
    of one file is caught, so one odd file never ends a run over thousands."""
    p = Path(path)
    if p.is_symlink() and not p.exists():
        return Failure(path, f"broken link (to {os.readlink(p)})")
    try:
        tags = tagger.tag_file(path, segment, picture=png is not None)
        if png is not None:
            save_timeline(png, tags, tagger.classes, tagger.members[0].spec_version)
        return tags
    except AudioError as e:
        return Failure(path, str(e).removeprefix(f"{path}: "))
    except Exception as e:
        return Failure(path, f"{type(e).__name__}: {e}".replace("\n", " "))


_WORKER: dict[str, Tagger] = {}


def init_worker(bundle: str, device: str | None, threads: int, parent: int) -> None:
    """A worker process: ends with its parent (the pid of tag_files.py), has its own tagger and its share of the
    cores (threads on top would oversubscribe them)."""
    end_with_parent(parent)
    torch.set_num_threads(threads)
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    _WORKER["tagger"] = Tagger.from_bundle(bundle, device)


def worker_tag(path: str, segment: float | None, png: str | None) -> FileTags | Failure:
    return tag_one(_WORKER["tagger"], path, segment, png)


def save_timeline(png: str | Path, tags: FileTags, classes: Sequence[str], version: int, top: int = 3) -> None:
    """The file's spectrogram, with the probability over time of its `top` most likely classes under it."""
    from utils.plots import pyplot, save_figure

    plt = pyplot()
    fig, (ax_spec, ax_prob) = plt.subplots(2, 1, figsize=(10, 5), sharex=True, height_ratios=(3, 2))
    ax_spec.imshow(tags.picture, origin="lower", aspect="auto", interpolation="nearest", cmap="viridis",
                   extent=(0, tags.duration, 0, tags.picture.shape[0]))
    ax_spec.set_ylabel(f"bin (v{version})")
    ax_spec.set_title(Path(tags.path).name)
    order = np.argsort(-tags.probs.mean(axis=0), kind="stable")[:top]  # most likely over the whole file
    edges = np.append(tags.starts, tags.ends[-1])
    for c in order:
        values = np.append(tags.probs[:, c], tags.probs[-1, c])  # step plots need a value at the last edge
        ax_prob.step(edges, values, where="post", label=classes[c])
    ax_prob.set_ylim(0, 1.02)
    ax_prob.set_xlabel("time (s)")
    ax_prob.set_ylabel("probability")
    ax_prob.grid(alpha=0.3)
    ax_prob.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    save_figure(fig, png)
    plt.close(fig)
