"""Helpers of the compression tests: the real recordings and small synthetic events."""

from __future__ import annotations

import struct
import zlib

import numpy as np
from real_data import AEDAT4_FILE, REAL, needs_real

from spikeweave.compression import codec
from spikeweave.compression.ctxcode import BLOCK
from spikeweave.data.events import EVENT_DTYPE

# empty without the shared recordings: index it inside tests marked needs_real, never at import
NMNIST_FILES = sorted((REAL / "nmnist").glob("*/*.bs2")) + sorted((REAL / "nmnist").glob("*/*.bin"))
__all__ = [
    "AEDAT4_FILE",
    "NMNIST_FILES",
    "REAL",
    "block_payloads",
    "event_variant",
    "needs_real",
    "rewrite_first_block_record",
    "synthetic_events",
]


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


def block_payloads(data: bytes):
    """``(header, block record, payload bytes)`` of every block of a block-coded ``.sfev``."""
    view = memoryview(data)
    header, infos, offsets = codec._layout(view)
    for info, pos in codec._ctx_blocks(view, header, infos, offsets):
        yield header, info, bytes(view[pos : pos + info.comp_len])


def event_variant(ev: np.ndarray, kind: str, width: int) -> np.ndarray:
    """A copy of ``ev`` reshaped into a stream ``kind`` that exercises a coder's corner
    (unordered time with wrap-around deltas, a column scan, huge gaps, one pixel)."""
    ev = ev.copy()
    if kind == "unordered-time":  # negative deltas: zigzag-coded, no age context
        ev["t"] = ev["t"][np.random.default_rng(1).permutation(ev.size)]
        ev["t"][:2] = [np.iinfo(np.int64).min, np.iinfo(np.int64).max]  # deltas wrap around
    elif kind == "column-scan":  # x steps down by one: the x-first pixel mode
        ev["x"] = (width - 1) - (np.arange(ev.size) % width)
    elif kind == "huge-gaps":  # deltas up to 2**62: 60 direct bits
        gaps = np.random.default_rng(2).integers(0, 1 << 62, ev.size, dtype=np.int64) >> (
            np.arange(ev.size) % 63
        )
        ev["t"] = np.cumsum(gaps // ev.size)
    elif kind == "one-pixel":  # probabilities pinned at their limits
        ev["x"], ev["y"], ev["p"] = 3 % width, 0, 1
    return ev


def rewrite_first_block_record(data: bytes, edit) -> bytes:
    """``data`` with its first block record edited and every checksum above it redone."""
    header, infos, offsets = codec._layout(memoryview(data))
    b = infos["B"]
    index = bytearray(data[offsets["B"] : offsets["B"] + b.comp_len])
    rec = list(BLOCK.unpack_from(index, 0))
    BLOCK.pack_into(index, 0, *edit(rec))
    out = bytearray(data)
    out[offsets["B"] : offsets["B"] + b.comp_len] = index
    fixed, entry = struct.Struct("<8sHHIIQqB"), struct.Struct("<BBBQQI")
    tag, cid, param, raw_len, comp_len, _ = entry.unpack_from(out, fixed.size)
    entry.pack_into(out, fixed.size, tag, cid, param, raw_len, comp_len, zlib.crc32(index))
    hl = header.header_len
    struct.pack_into("<I", out, hl - 4, zlib.crc32(bytes(out[: hl - 4])))
    return bytes(out)
