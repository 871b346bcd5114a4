"""Errors spikeforge raises for bad input, each with a one-line message that says how to fix it."""

from __future__ import annotations


class SpikeforgeError(Exception):
    """Base class of every error spikeforge raises on purpose."""


class InputError(SpikeforgeError, ValueError):
    """A tensor of the wrong layout, rank, dtype or with non-finite values."""


class ConfigError(SpikeforgeError, ValueError):
    """An invalid configuration: unknown key, unknown name, out-of-range value."""


class DataError(SpikeforgeError):
    """A dataset that is missing, corrupt or truncated."""


class CheckpointError(SpikeforgeError):
    """A checkpoint that is missing, corrupt, truncated or not written by spikeforge."""


class TrainingError(SpikeforgeError):
    """Training went wrong in a way the user can fix (e.g. the loss diverged)."""
