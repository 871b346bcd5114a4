"""Where the shared real recordings are, and the mark for tests that need them.

The recordings (N-MNIST samples, an AEDAT4 file, DVS128 Gesture labels) live outside the
repository, in ``../shared/data/real`` from its root; ``$SPIKEWEAVE_REAL_DATA`` names another
folder (a path that does not exist makes them absent, which is how a fresh clone is tested).
Tests that read them carry :data:`needs_real` (or skip on :data:`AEDAT4_FILE` themselves) and
skip with the reason when the folder is missing; nothing here may index a file that might be
absent at import time, since that would stop collection instead of skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REAL = Path(
    os.environ.get("SPIKEWEAVE_REAL_DATA")
    or Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
)
AEDAT4_FILE = REAL / "aedat4" / "tonic_sample.aedat4"
needs_real = pytest.mark.skipif(
    not REAL.is_dir(),
    reason=f"the shared recordings are not present at {REAL} (set SPIKEWEAVE_REAL_DATA)",
)
needs_aedat4 = pytest.mark.skipif(
    not AEDAT4_FILE.is_file(),
    reason=f"the shared AEDAT4 sample is not present at {AEDAT4_FILE} (set SPIKEWEAVE_REAL_DATA)",
)
