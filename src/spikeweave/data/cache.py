"""On-disk cache of binned frames, keyed by the source file and every binning parameter.

A key is the SHA-256 of a JSON document holding the source file's resolved path, size and
modification time (ns), the sample's window inside the file, and every parameter of the
transform (including :data:`~spikeweave.data.binning.BINNING_VERSION`). Any change — another
frame count, a denoise filter, a re-downloaded file — gives another key, so a stale cache entry
is never reused. Entries are ``.npy`` files written atomically (temporary file + rename);
an unreadable entry is ignored and rewritten.

Where: ``cache_dir`` when given, else ``frames/`` under spikeweave's one cache root
(:func:`cache_root`: ``$SPIKEWEAVE_CACHE``, default ``~/.cache/spikeweave``), which also holds
the compiled CPU kernels in ``kernels/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..functional.cpu_kernel import CACHE_ENV, cache_root

__all__ = ["CACHE_ENV", "CACHE_VERSION", "FrameCache", "cache_root", "default_cache_dir"]

# 2: entries binned from empty recordings (all-zero frames), which readers now refuse, must not
# be served from the cache.
CACHE_VERSION = 2


def default_cache_dir() -> Path:
    """The frame cache folder: ``frames/`` under :func:`cache_root`."""
    return cache_root() / "frames"


class FrameCache:
    """Frames on disk under ``directory``; ``enabled=False`` makes every lookup a miss and
    writes nothing."""

    def __init__(self, directory: str | Path, enabled: bool = True) -> None:
        self.directory = Path(directory).expanduser()
        self.enabled = enabled

    @staticmethod
    def key(source: str | Path, params: Mapping[str, Any]) -> str:
        """The cache key of ``params`` applied to the file ``source``."""
        source = Path(source).resolve()
        stat = source.stat()
        doc = {
            "cache_version": CACHE_VERSION,
            "source": {"path": str(source), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns},
            "params": params,
        }
        blob = json.dumps(doc, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npy"

    def load(self, key: str) -> np.ndarray | None:
        """The cached frames (float32) of ``key``, or ``None``."""
        if not self.enabled:
            return None
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        return arr.astype(np.float32, copy=False)

    def save(self, key: str, frames: np.ndarray) -> None:
        """Store ``frames`` (counts) compactly: uint16 when every value fits, else float32."""
        if not self.enabled:
            return
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fits = frames.size == 0 or (
                float(frames.min()) >= 0
                and float(frames.max()) <= 65535
                and np.array_equal(frames, np.round(frames))
            )
            data = frames.astype(np.uint16) if fits else frames.astype(np.float32)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    np.save(fh, data, allow_pickle=False)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            # A read-only or full disk must not stop training: the cache is an optimisation.
            return

    def get_or_compute(
        self, source: str | Path, params: Mapping[str, Any], compute: Callable[[], np.ndarray]
    ) -> np.ndarray:
        """Cached frames for ``(source, params)``, computing and storing them on a miss."""
        if not self.enabled:
            return compute()
        key = self.key(source, params)
        frames = self.load(key)
        if frames is None:
            frames = np.asarray(compute(), dtype=np.float32)
            self.save(key, frames)
        return frames
