"""Running a trained network over spectrograms: whole clips or random excerpts, softmax posteriors."""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from utils.errors import InputError, MissingFile
from utils.model_files import build_network, load_model_file, model_settings
from utils.paths import MANIFEST_NAME
from utils.spec_data import batch_excerpts, batch_whole

# the model-file settings that decide which features a network was trained on
PAIRING_KEYS = ("spec_version", "preprocessing")


def to_inference_layout(model: nn.Module) -> None:
    """Eval mode, NHWC weights (the convolutions then run NHWC whatever the input's layout). On a CPU the demo net
    predicts whole 1500-frame clips in 91 instead of 192 ms a batch (one thread); on GPUs NHWC is cuDNN's fast path.
    A no-op the second time."""
    model.eval()
    model.to(memory_format=torch.channels_last)


@torch.no_grad()
def predict_logits(model: nn.Module, specs: Sequence[np.ndarray], max_len: int, batch_size: int,
                   device: torch.device) -> np.ndarray:
    """Logits (N, C) of each clip tiled/clipped to max_len frames, one network pass per clip."""
    to_inference_layout(model)
    out = []
    for i in range(0, len(specs), batch_size):
        x = torch.from_numpy(batch_whole(specs[i:i + batch_size], max_len)).to(device)
        out.append(model(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


@torch.no_grad()
def predict_excerpts(model: nn.Module, specs: Sequence[np.ndarray], max_len: int, excerpt_len: int,
                     n_excerpts: int, device: torch.device, rng: np.random.Generator,
                     batch_excerpts_max: int = 256) -> np.ndarray:
    """Posteriors (N, C) averaged over n_excerpts random excerpts of each clip (tiled/clipped to max_len).

    The excerpts of several clips share a forward pass (up to batch_excerpts_max excerpts): one clip's 25 alone
    leave a GPU mostly idle. Excerpts are drawn clip by clip, so the draws do not depend on the batching."""
    to_inference_layout(model)
    clips_per_pass = max(1, batch_excerpts_max // n_excerpts)
    probs = []
    for i in range(0, len(specs), clips_per_pass):
        chunk = specs[i:i + clips_per_pass]
        x = batch_excerpts([s for s in chunk for _ in range(n_excerpts)], max_len, excerpt_len, rng)
        p = torch.softmax(model(torch.from_numpy(x).to(device)).float(), dim=1)
        probs.append(p.view(len(chunk), n_excerpts, -1).mean(1).cpu().numpy())
    return np.concatenate(probs) if probs else np.zeros((0, 0), np.float32)


def weighted_average(posteriors: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """The ensemble's posteriors (fusion.py, the bundle's members): a float64 weighted mean, returned as float32."""
    w = np.ones(len(posteriors)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    return sum(wi * p.astype(np.float64) for wi, p in zip(w, posteriors, strict=True)).astype(np.float32)


def load_params(path: str | Path) -> dict[str, Any]:
    """A params file: {'state_dict', 'config'}; plain tensors and builtins, so weights_only loading works.

    Any file torch cannot read (empty, truncated, not a torch file) is a ValueError naming the file: torch's own
    errors name no file, and for weights_only they even advise unsafe loading, which is never the fix here."""
    path = Path(path)
    if path.is_dir():
        raise MissingFile(f"parameter file {path} is a folder, not a file")
    if not path.is_file():
        raise MissingFile(f"parameter file {path} not found")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is not a readable fsdtag parameter file (empty file)")
    try:
        params = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # EOFError, UnpicklingError, RuntimeError (zip), ...: torch has no single error type
        raise InputError(f"{path} is not a readable fsdtag parameter file ({torch_load_error(e)})") from None
    if (not isinstance(params, dict) or "state_dict" not in params or not isinstance(params.get("config"), dict)
            or "classes" not in params["config"] or not isinstance(params["config"].get("settings"), dict)):
        raise InputError(f"{path} is not an fsdtag parameter file (no state_dict, config, class list and "
                         "training settings)")
    return params


def torch_load_error(e: Exception) -> str:
    """What torch.load said, in one line: its reason (a pickled object it would not load, a corrupt stream), not its
    advice to load unsafely, which is never the fix for an fsdtag file."""
    text = " ".join(str(e).split())
    if "WeightsUnpickler error:" in text:
        reason = text.split("WeightsUnpickler error:", 1)[1].split(" Check the documentation", 1)[0]
        reason = reason.split(" Please use", 1)[0].strip().rstrip(".")
        if reason.startswith("Unsupported global"):
            return f"torch would not load it safely: {reason}; it holds pickled objects, which fsdtag files never do"
        return f"truncated or corrupt; torch: {reason}"
    first = text.split(". ", 1)[0].rstrip(".")
    return f"truncated or corrupt; torch: {type(e).__name__}" + (f": {first}" if first else "")


def check_pairing(config: dict[str, Any], params_file: str | Path, model_file: str | Path,
                  settings: dict[str, Any] | None = None) -> None:
    """Refuse params trained on other features than the model file's: same architecture means the weights load
    without complaint, yet a v1-trained net fed v2 spectrograms (or trimmed audio's net fed untrimmed) predicts
    nonsense. config is the params file's; settings the model file's (loaded from model_file when None)."""
    trained = config["settings"]
    if settings is None:
        settings = model_settings(load_model_file(model_file))
    for key in PAIRING_KEYS:
        if key in trained and trained[key] != settings[key]:
            raise InputError(f"{params_file} was trained with {describe_features(trained)}, but {model_file} "
                             f"uses {describe_features(settings)}; pick the model file the params were trained "
                             f"with ({config.get('model', 'see its config')})")


def describe_features(settings: dict[str, Any]) -> str:
    """'spectrogram version 2 without SoX preprocessing': the settings that decide what a network is fed."""
    pp = settings.get("preprocessing")
    how = "" if pp is None else " with SoX preprocessing" if pp else " without SoX preprocessing"
    return f"spectrogram version {settings.get('spec_version', '?')}{how}"


def check_spec_folder(spec_dir: str | Path, config: dict[str, Any], params_file: str | Path) -> None:
    """Refuse a spectrogram folder whose manifest.json records other features than the params were trained on.

    config is the params file's (or {"settings": a model file's settings}); prepare_spectrograms.py --dump writes
    the manifest of every folder it fills, so a folder without one was not made by it."""
    spec_dir = Path(spec_dir)
    trained = config["settings"]
    manifest_file = spec_dir / MANIFEST_NAME
    if not spec_dir.is_dir():
        raise MissingFile(f"spectrogram folder {spec_dir} not found; make it with prepare_spectrograms.py --dump "
                          f"--out_dir {spec_dir}")
    if not manifest_file.is_file():
        raise InputError(f"{spec_dir} has no {MANIFEST_NAME}, so its features are unknown; make the folder with "
                         "prepare_spectrograms.py --dump")
    try:
        manifest = json.loads(manifest_file.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{manifest_file}: unreadable manifest ({e})") from None
    if not isinstance(manifest, dict):
        raise InputError(f"{manifest_file}: not a spectrogram manifest")
    made = {"spec_version": manifest.get("spec_version"),
            "preprocessing": (manifest.get("preprocessing") or {}).get("sox_silence_clipping")}
    for key in PAIRING_KEYS:
        if key in trained and made[key] is not None and made[key] != trained[key]:
            raise InputError(f"{spec_dir} holds {describe_features(made)} (its {MANIFEST_NAME}), but {params_file} "
                             f"was trained on {describe_features(trained)}")


def load_state(model: nn.Module, params: dict[str, Any], params_file: str | Path, model_file: str | Path) -> None:
    """Load a params file's state_dict into the model file's network, refusing params trained on other features
    (check_pairing) and turning a shape/key mismatch into a one-line error."""
    check_pairing(params["config"], params_file, model_file)
    try:
        model.load_state_dict(params["state_dict"])
    except RuntimeError as e:
        raise InputError(f"{params_file} does not fit {model_file} (another architecture?): "
                         f"{str(e).splitlines()[0]}") from None


def load_trained_model(model_file: str | Path, params_file: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Build the model file's network for the params' classes and load the params into it (checked by
    load_state: features and architecture)."""
    params = load_params(params_file)
    module = load_model_file(model_file)
    model = build_network(module, len(params["config"]["classes"]))
    load_state(model, params, params_file, model_file)
    return model, params["config"]
