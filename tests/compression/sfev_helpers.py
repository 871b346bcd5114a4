"""Helpers of the compression tests: the real recordings and small synthetic events."""

from __future__ import annotations

import numpy as np
from real_data import AEDAT4_FILE, REAL, needs_real

from spikeweave.data.events import EVENT_DTYPE

# empty without the shared recordings: index it inside tests marked needs_real, never at import
NMNIST_FILES = sorted((REAL / "nmnist").glob("*/*.bs2")) + sorted((REAL / "nmnist").glob("*/*.bin"))
__all__ = ["AEDAT4_FILE", "NMNIST_FILES", "REAL", "needs_real", "synthetic_events"]


def synthetic_events(
    n: int, width: int = 34, height: int = 34, seed: int = 0, mean_gap: float = 60.0
) -> np.ndarray:
    """``n`` time-ordered events on a ``width``x``height`` sensor, exponential gaps (µs)."""
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["t"] = 1000 + np.cumsum(rng.exponential(mean_gap, n).astype(np.int64))
    ev["x"] = rng.integers(0, width, n)
    ev["y"] = rng.integers(0, height, n)
    ev["p"] = rng.integers(0, 2, n)
    return ev
