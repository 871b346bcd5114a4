"""Atomic file writes: a temporary file in the target's folder, fsync'ed, renamed over it.

A crash or an error mid-write never leaves a half-written file behind, and a reader never sees
one. Files get mode 0644 (``mkstemp``-style 0600 would hide run files from other users).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write_bytes", "atomic_writer"]


def atomic_write_bytes(path: str | Path, data: bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``. Raises ``OSError`` as ``open``
    would (missing folder, no permission, no space); the previous file is then unchanged."""
    path = Path(path)
    tmp: Path | None = None
    try:
        candidate = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        fd = os.open(candidate, flags, mode)
        tmp = candidate  # ours from here on: remove it if anything below fails
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # independent of the umask
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return path


def _fsync_dir(directory: Path) -> None:
    """Best-effort fsync of a directory so a completed rename survives a crash (POSIX only)."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: str | Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A binary file to write in pieces that replaces ``path`` atomically when the ``with``
    block ends without an error (then fsync'ed, as :func:`atomic_write_bytes`); on an error the
    temporary file is removed and ``path`` is unchanged. For outputs too large to hold."""
    path = Path(path)
    tmp: Path | None = None
    try:
        candidate = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        fd = os.open(candidate, flags, mode)
        tmp = candidate
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
