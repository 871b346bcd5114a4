"""Imports every experiment module so each registers itself."""

from . import na_vs_bptt, reset_dependency  # noqa: F401
