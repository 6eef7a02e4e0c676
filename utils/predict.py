"""Running a trained network over spectrograms: whole clips or random excerpts, softmax posteriors."""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from utils.model_files import load_model_file
from utils.spec_data import batch_excerpts, batch_whole


def pick_device(name: str | None = None) -> torch.device:
    if name:
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError("--device cuda asked for, but CUDA is not available")
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def predict_logits(model: nn.Module, specs: Sequence[np.ndarray], max_len: int, batch_size: int,
                   device: torch.device) -> np.ndarray:
    """Logits (N, C) of each clip tiled/clipped to max_len frames, one network pass per clip."""
    model.eval()
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
    model.eval()
    clips_per_pass = max(1, batch_excerpts_max // n_excerpts)
    probs = []
    for i in range(0, len(specs), clips_per_pass):
        chunk = specs[i:i + clips_per_pass]
        x = batch_excerpts([s for s in chunk for _ in range(n_excerpts)], max_len, excerpt_len, rng)
        p = torch.softmax(model(torch.from_numpy(x).to(device)).float(), dim=1)
        probs.append(p.view(len(chunk), n_excerpts, -1).mean(1).cpu().numpy())
    return np.concatenate(probs) if probs else np.zeros((0, 0), np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def load_params(path: str | Path) -> dict[str, Any]:
    """A params file: {'state_dict', 'config'}; plain tensors and builtins, so weights_only loading works."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parameter file {path} not found")
    params = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(params, dict) or "state_dict" not in params or "config" not in params:
        raise ValueError(f"{path} is not an fsdtag parameter file")
    return params


def load_state(model: nn.Module, params: dict[str, Any], params_file: str | Path, model_file: str | Path) -> None:
    """Load a params file's state_dict, turning a shape/key mismatch into a one-line error."""
    try:
        model.load_state_dict(params["state_dict"])
    except RuntimeError as e:
        raise ValueError(f"{params_file} does not fit {model_file} (another architecture?): "
                         f"{str(e).splitlines()[0]}") from None


def load_trained_model(model_file: str | Path, params_file: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Build the model file's network for the params' classes and load the params into it."""
    params = load_params(params_file)
    model = load_model_file(model_file).build_model(n_classes=len(params["config"]["classes"]))
    load_state(model, params, params_file, model_file)
    return model, params["config"]
