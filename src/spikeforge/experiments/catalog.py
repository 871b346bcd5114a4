"""Imports every experiment module so each registers itself."""

from . import reset_dependency  # noqa: F401
