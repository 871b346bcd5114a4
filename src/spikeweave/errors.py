"""Errors spikeweave raises for bad input, each with a one-line message that says how to fix it."""

from __future__ import annotations


class SpikeweaveError(Exception):
    """Base class of every error spikeweave raises on purpose."""


class InputError(SpikeweaveError, ValueError):
    """A tensor of the wrong layout, rank, dtype or with non-finite values."""


class ConfigError(SpikeweaveError, ValueError):
    """An invalid configuration: unknown key, unknown name, out-of-range value."""


class DataError(SpikeweaveError):
    """A dataset that is missing, corrupt or truncated."""


class CheckpointError(SpikeweaveError):
    """A checkpoint that is missing, corrupt, truncated or not written by spikeweave."""


class TrainingError(SpikeweaveError):
    """Training went wrong in a way the user can fix (e.g. the loss diverged)."""


class OutputError(SpikeweaveError, OSError):
    """A file or folder that cannot be written where asked: a missing folder, a folder in the
    way, no permission, no space, a name too long, a link spikeweave will not write through.
    An ``OSError`` too, so code that handles OS errors of a write keeps working."""


def one_line(text: object, limit: int = 200) -> str:
    """``text`` (any object, as ``str``) collapsed to one line of at most ``limit`` characters,
    for quoting an OS or library message, or a value read from a file, inside an error."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def shown(value: object) -> str:
    """``value`` as an error message quotes it: its short one-line repr and its type name."""
    return f"{one_line(repr(value), 60)} ({type(value).__name__})"
