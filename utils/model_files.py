"""Loading a model file (models/<variant>.py) and merging its settings with the shared ones."""

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from utils.errors import InputError, MissingFile, UserCodeError
from utils.paths import REPO

# The writeup's training settings; a model file's SETTINGS override only what differs.
SHARED_SETTINGS: dict[str, Any] = {
    "spec_version": 1,
    "preprocessing": True,     # spectrograms of SoX-trimmed audio
    "lr": 1e-3,                # Adam
    "epochs": 500,
    "decay_from": 100,         # learning rate decays linearly to 0 from this epoch on
    "batch_size": 100,
    "excerpt_len": 384,        # frames per training excerpt
    "mixup_alpha": 0.3,
    "fine_tune_lr": 1e-4,
    "fine_tune_epochs": 30,
    "fine_tune_decay_from": 5,
    "valid_batch_size": 8,     # whole max_len spectrograms, so far fewer per batch
    # when training stops (utils/training.py): "fixed" trains `epochs` and keeps the epoch of lowest validation loss
    # (the writeup's recipe); "converged" holds out `inner_valid_share` of the fold's training clips, and once their
    # loss has not improved for `patience` epochs decays the learning rate linearly over `final_decay_epochs` and stops,
    # keeping the last model; `epochs` (`fine_tune_epochs`) is then a cap
    "stop_rule": "fixed",
    "patience": 10,
    "final_decay_epochs": 5,
    "inner_valid_share": 0.1,
    # augmentations (utils/augment.py), off in the writeup's recipe
    "freq_masks": 0,           # masks per excerpt of up to `freq_mask_bins` frequency bands each
    "freq_mask_bins": 0,
    "time_masks": 0,           # masks per excerpt of up to `time_mask_frames` frames each
    "time_mask_frames": 0,
    "gain_db": 0.0,            # a random gain of up to +-gain_db per excerpt
}


# The demo networks' schedule (models/vgg_gap_demo*.py): short enough for 2 CPU cores, same shape as the full one.
# 256-frame excerpts (the live tagger's window) cost 18% less per epoch than 384 (4.1 vs 5.0 s on the default's
# 377 clips of a fold, 2 cores), and 14 + 5 epochs instead of 20 + 8 keep make demo near its time budget.
DEMO_SETTINGS: dict[str, Any] = {
    "batch_size": 32, "mixup_alpha": 0.3, "lr": 2e-3, "epochs": 14, "decay_from": 7, "excerpt_len": 256,
    "fine_tune_lr": 5e-4, "fine_tune_epochs": 5, "fine_tune_decay_from": 1,
}


# Researchers' own data on a CPU (models/vgg_gap_cpu*.py, run_experiment_set.py --preset cpu): the demo networks
# trained until converged (the cap only bounds the time), with SpecAugment-style masks and, on version 1, a random
# gain; docs/own_data_on_a_cpu.md measures each addition.
CPU_SETTINGS: dict[str, Any] = {
    **DEMO_SETTINGS, "stop_rule": "converged", "epochs": 80, "patience": 8, "final_decay_epochs": 5,
    "inner_valid_share": 0.1, "fine_tune_epochs": 20,
    "freq_masks": 2, "freq_mask_bins": 16, "time_masks": 2, "time_mask_frames": 32,
}


def resolve_model_file(name: str | Path) -> Path:
    """A model file's name: a relative one is looked up in this checkout first (the presets, best_iterations.json and
    bundles name models/<variant>.py), then from the working directory."""
    path = Path(name)
    if path.is_absolute():
        return path
    return REPO / path if (REPO / path).is_file() else path


def load_model_file(path: str | Path) -> ModuleType:
    """Import a model file by path (no exec, no sys.path edits) and check its contract. A file that is not Python
    is refused in one line; one that raises while imported is the researcher's own code: UserCodeError."""
    path = resolve_model_file(path)
    if path.is_dir():
        raise InputError(f"model file {path} is a folder; give a models/<variant>.py file")
    if not path.is_file():
        raise MissingFile(f"model file {path} not found")
    if path.suffix != ".py":
        raise InputError(f"model file {path} is not a Python file (.py); give a models/<variant>.py file")
    spec = importlib.util.spec_from_file_location(f"fsdtag_model_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise UserCodeError(f"model file {path} raised {type(e).__name__} while being imported") from e
    if not callable(getattr(module, "build_model", None)):
        raise InputError(f"model file {path} defines no build_model(n_classes) function")
    return module


def build_network(module: ModuleType, n_classes: int) -> nn.Module:
    """A model file's network; a build_model that raises, or returns no torch module, is the researcher's code."""
    try:
        network = module.build_model(n_classes=n_classes)
    except Exception as e:
        raise UserCodeError(f"model file {module.__file__}: build_model(n_classes={n_classes}) raised "
                            f"{type(e).__name__}") from e
    if not isinstance(network, nn.Module):
        raise InputError(f"model file {module.__file__}: build_model returned {type(network).__name__}, not a "
                         "torch.nn.Module")
    return network


def model_settings(module: ModuleType) -> dict[str, Any]:
    own = getattr(module, "SETTINGS", {})
    unknown = sorted(set(own) - set(SHARED_SETTINGS))
    if unknown:
        raise InputError(f"{module.__name__}: unknown setting(s) {', '.join(unknown)}")
    return {**SHARED_SETTINGS, **own}
