"""The package version, on the lowest floor so any module can record it without importing the
package ``__init__`` (which re-exports everything above it)."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.2.0"
"""Kept equal to ``version`` in pyproject.toml (tests/test_structure.py checks it)."""
