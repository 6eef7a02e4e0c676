"""Atomic writes: write next to the target, then os.replace, so a crash never leaves half a file."""

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call write(tmp_path), then move tmp_path onto path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_npy(path: str | Path, array: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)
    atomic_write(path, write)


def save_text(path: str | Path, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)
    atomic_write(path, write)


def save_json(path: str | Path, obj: Any) -> None:
    save_text(path, json.dumps(obj, indent=2) + "\n")


def save_torch(path: str | Path, obj: Any) -> None:
    import torch  # only the training side needs torch

    atomic_write(path, lambda tmp: torch.save(obj, tmp))
