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
