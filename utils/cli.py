"""Flags several scripts share, defined once, and the one way scripts report a clean error."""

import argparse
import os
import sys
import traceback
from collections.abc import Callable

from utils.errors import FsdtagError, InputError, UserCodeError
from utils.paths import add_root_args

DEBUG_ENV = "FSDTAG_DEBUG"  # set to 1: tracebacks for the project's own errors too


def add_model_args(parser: argparse.ArgumentParser, spec_dir_required: bool = True,
                   max_len_default: int | None = None) -> None:
    """--model, --spec_dir, --max_len, --device and the two roots: what every model-running script takes.
    Scripts that load trained parameters leave --max_len at None: the length the model was trained with."""
    parser.add_argument("--model", required=True, help="model file, e.g. models/vgg_gap_spec1_2.py")
    parser.add_argument("--spec_dir", required=spec_dir_required,
                        help="spectrogram folder inside the data root, e.g. specs_train_v1")
    parser.add_argument("--max_len", type=int, default=max_len_default,
                        help="clips are tiled (short) or clipped (long) to this many frames (default: "
                             f"{max_len_default or 'the length the model was trained with'})")
    parser.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda when available)")
    add_root_args(parser)


def add_threads_arg(parser: argparse._ActionsContainer, default: int, why: str) -> None:
    """--threads: CPU threads for torch, chosen per script because the right number depends on what else runs
    (torch's own default takes every core, whatever shares them)."""
    parser.add_argument("--threads", type=int, default=default,
                        help=f"CPU threads for torch (default {default}: {why})")


def check_threads(threads: int | None) -> None:
    """Before any work starts: a bad --threads would otherwise surface inside torch or a worker process."""
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be at least 1, got {threads}")


def set_threads(threads: int) -> None:
    import torch

    check_threads(threads)
    torch.set_num_threads(threads)


def cpu_cores() -> int:
    """The cores this process may run on (a cluster job or taskset may allow fewer than the machine has)."""
    return len(os.sched_getaffinity(0))


def run_cli(main: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> None:
    """Run a script's main. What the project checks (utils.errors.FsdtagError: bad input, flags, missing files, an
    output that cannot be written) ends with one line, or with its traceback under FSDTAG_DEBUG=1; a researcher's
    model file that raises gets one line naming the file, then its own traceback; anything else is a bug and keeps
    Python's traceback."""
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        code = main(args)
    except FsdtagError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except UserCodeError as e:
        print(f"error: {e}; its traceback:", file=sys.stderr)
        traceback.print_exception(e.__cause__, file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
