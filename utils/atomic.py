"""Atomic writes: write next to the target, then os.replace, so a crash never leaves half a file.

Outputs get the permissions open() would give a new file (0o666 less the umask), so collaborators on shared
storage can read them. A write that fails for a reason the user has to fix (a full disk, a folder where the file
should go, no permission) is a WriteError naming the file and what to do; the target is left as it was."""

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from utils.errors import FsdtagError

# How a full disk shows when the writer does not pass errno on: numpy's tofile ("4096 requested and 0
# written"), torch's zip writer ("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598",
# "PytorchStreamWriter failed writing file data/0: file write failed"), or the strerror text itself.
_DISK_FULL_TEXT = re.compile(r"\d+ requested and \d+ written|unexpected pos \d+|file write failed"
                             r"|No space left on device|Disk quota exceeded")


class WriteError(FsdtagError, OSError):
    """An output could not be written for a reason the user must fix; the message names the file and what to do.
    An OSError, so code that handles I/O failures still does; run_cli prints it as one line."""


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call write(tmp_path), then move tmp_path onto path. On any failure the temp file is removed and path keeps
    its old content; a full disk raises WriteError."""
    path = Path(path)
    if path.is_dir():
        raise WriteError(f"{path} is a folder; give the name of a file to write")
    tmp = _create_temp(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(e, Exception) and _is_disk_full(e):
            raise WriteError(_disk_full_message(path, e)) from e
        raise


def _create_temp(path: Path) -> str:
    """An empty new file next to path. Created with mode 0o666 like open() does, so the kernel applies the umask
    (or the folder's default ACL); tempfile.mkstemp would make every output 0o600, unreadable to the group."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            except FileExistsError:
                continue
            os.close(fd)
            return str(tmp)
    except PermissionError:
        raise WriteError(f"cannot write {path}: no permission to create files in {path.parent}") from None
    except OSError as e:
        if _is_disk_full(e):  # no free inode, or the quota is reached
            raise WriteError(_disk_full_message(path, e)) from e
        raise
    raise WriteError(f"cannot find a free temporary name next to {path}")


def _is_disk_full(e: BaseException) -> bool:
    """ENOSPC / EDQUOT anywhere in the exception's chain, or a writer's short-write message."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(cur, OSError | RuntimeError) and _DISK_FULL_TEXT.search(str(cur)):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _mount_point(folder: Path) -> Path:
    folder = folder.resolve()
    while not os.path.ismount(folder) and folder != folder.parent:
        folder = folder.parent
    return folder


def _disk_full_message(path: Path, e: BaseException) -> str:
    quota = isinstance(e, OSError) and e.errno == errno.EDQUOT
    mount = _mount_point(path.parent)
    where = f"{mount}" if mount == path.parent.resolve() else f"{mount} (the file system of {path.parent})"
    try:
        free = f"; {shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free there"
    except OSError:
        free = ""
    what = "disk quota exceeded" if quota else "no space left"
    return f"{what} on {where} writing {path}{free}; free some space or write elsewhere"


def save_npy(path: str | Path, array: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)
    atomic_write(path, write)


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """np.savez of the arrays (no compression); written through a file object, so numpy does not append .npz
    to the temporary name."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
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
