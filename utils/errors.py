"""The project's own error types: what the project checks fails with one of these, in one line (utils.cli.run_cli);
any other exception is a bug, in the project or in a researcher's model file, and keeps its traceback.

Each also derives from the built-in type it replaces, so `except ValueError` and the like still catch it."""


class FsdtagError(Exception):
    """Something the project checked and refused: run_cli prints it as one line (FSDTAG_DEBUG=1: with traceback)."""


class DataError(FsdtagError):
    """Bad dataset input: a malformed CSV, an unknown label, a missing file."""


class InputError(FsdtagError, ValueError):
    """A value the project refuses: a flag out of range, a file that is not what it claims, a mismatch of settings."""


class MissingFile(FsdtagError, FileNotFoundError):
    """A file or folder the project needs is not there."""


class StepFailed(FsdtagError, RuntimeError):
    """A step the project ran (a subprocess, a scheduler) failed; its own output says why."""


class UserCodeError(Exception):
    """A researcher's own code (a model file) raised: run_cli prints one line naming the file, then the traceback of
    the exception it wraps (its __cause__)."""
