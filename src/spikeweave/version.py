"""The package version, on the lowest floor so any module can record it without importing the
package ``__init__`` (which re-exports everything above it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["__version__", "git_commit"]

__version__ = "0.2.0"
"""Kept equal to ``version`` in pyproject.toml (tests/test_structure.py checks it)."""


def git_commit() -> tuple[str | None, str]:
    """``(commit, note)``: ``git rev-parse HEAD`` of the source tree this package runs from,
    or None with the reason (not a git checkout, no git)."""
    src = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True,
                             text=True, timeout=10, check=False)  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"git not available ({type(exc).__name__})"
    commit = out.stdout.strip()
    if out.returncode != 0 or len(commit) != 40:
        return None, "not run from a git checkout (installed package?)"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=src,
                           capture_output=True, text=True, timeout=10, check=False)  # fmt: skip
    return commit, "uncommitted changes in the tree" if dirty.stdout.strip() else ""
