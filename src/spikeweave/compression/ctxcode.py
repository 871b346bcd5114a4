"""Context-model range coding of one block of events (the ``ctx`` codec of ``.sfev`` v2).

A block (at most :data:`BLOCK_EVENTS` events) is coded on its own, so a reader can decode any
block without the others (random access by time). Columns are coded one after another with a
range coder (``constriction``'s queue ``RangeEncoder``, 32-bit words), each symbol under an
adaptive categorical model picked by a *context* taken from columns coded before it:

1. ``b`` = bit length of the timestamp delta (zigzag-coded when the block has a negative
   delta), one adaptive model; then the ``b - 1`` bits below the leading one, uniform (they
   are close to uniform: modelling the next bit saved < 0.3 % on N-MNIST).
2. Pixels, in the better of two modes (the encoder tries both, a block flag says which):
   mode 0 codes ``y`` (one model) then ``x`` given ``y``; mode 1 codes ``x - x_prev``
   (mod width) given ``min(b, 15)`` (sensors that read out column by column, like the
   DVXplorer of the AEDAT4 sample, where it costs 2.2 instead of 7.5 bits) then ``y`` given
   ``x``. Context tables larger than 2**20 counts merge neighbouring contexts.
3. Polarity as the prediction error ``p XOR (the pixel's previous polarity)`` given the
   bit length of the time since the pixel's previous event (0 for its first event); the
   decoder recovers ``p`` as the running parity of each pixel's errors.

Why adaptive per *sub-block* and not per symbol: a per-symbol adaptive model needs a loop over
symbols, which in Python costs ~1 µs each. Instead each column is cut into sub-blocks of
doubling length (128 .. 16384 events); the model of a sub-block is the counts of the block's
earlier sub-blocks (Krichevsky-Trofimov estimate, ``2 * count + 1``), so each sub-block is
coded with numpy-grouped calls, one per context present.

Decoding: :func:`decode_block` uses the compiled decoder of :mod:`.ctx_native` (C, built at
first use) when it can be had. It reproduces this module's schedule and constriction's coder
and model quantisation exactly (tests hold the two equal symbol for symbol), so files decode
the same with or without a C compiler; encoding always runs here, through constriction.

Bounds (hostile files): every model gives its most likely symbol at most ``4095/4096`` of the
probability (:func:`_probs`), so each coded symbol costs at least ``-log2(4095/4096)`` = 3.5e-4
bits; every event codes at least two symbols (``b`` and the polarity error), so one
compressed byte holds at most 11 400 events; :data:`MAX_EVENTS_PER_BYTE` = 16384 leaves margin
for the coder's 24-bit quantisation. A block declaring more events than that allows for its
bytes is refused before anything is allocated, and decoding reads exactly the declared
number of symbols.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import numpy as np

from ..errors import DataError
from . import ctx_native

__all__ = [
    "BLOCK_EVENTS",
    "MAX_EVENTS_PER_BYTE",
    "BLOCK",
    "BlockInfo",
    "check_block",
    "check_payload",
    "check_record",
    "encode_block",
    "decode_block",
]

BLOCK_EVENTS = 1 << 16
"""Events per block at most: the unit of random access and of decoding memory (~1 MB)."""
MAX_EVENTS_PER_BYTE = 16384
"""The most events one compressed byte of a block can decode to (see the module docstring)."""
BLOCK = struct.Struct("<IqqqIIB")
"""Block index record: n_events, t_first, t_min, t_max (µs), comp_len (bytes), crc32 of the
decoded columns (t ``<i8``, x ``<u2``, y ``<u2``, p ``u1``, each column whole), flags."""
ZIGZAG = 1
XFIRST = 2
_MAX_TABLE = 1 << 20
_SUB_FIRST = 128
_SUB_MAX = 16384
_B_SYMBOLS = 65
_AGE_CTX = 34


class BlockInfo:
    """One record of the block index."""

    __slots__ = ("n", "t_first", "t_min", "t_max", "comp_len", "crc", "flags")

    def __init__(
        self, n: int, t_first: int, t_min: int, t_max: int, comp_len: int, crc: int, flags: int
    ) -> None:
        self.n, self.t_first, self.t_min, self.t_max = n, t_first, t_min, t_max
        self.comp_len, self.crc, self.flags = comp_len, crc, flags

    def pack(self) -> bytes:
        return BLOCK.pack(
            self.n, self.t_first, self.t_min, self.t_max, self.comp_len, self.crc, self.flags
        )

    @classmethod
    def unpack(cls, raw: bytes | memoryview, offset: int) -> BlockInfo:
        return cls(*BLOCK.unpack_from(raw, offset))


def _constriction() -> Any:
    try:
        import constriction
    except ImportError:
        raise DataError(
            "ctx streams need the 'constriction' package: pip install constriction"
        ) from None
    return constriction


def _sub_blocks(n: int) -> list[tuple[int, int]]:
    """``[(start, stop)]``: sub-blocks of doubling length from 512 up to 16384 events."""
    out, start, size = [], 0, _SUB_FIRST
    while start < n:
        out.append((start, min(n, start + size)))
        start += size
        size = min(2 * size, _SUB_MAX)
    return out


def _probs(counts: np.ndarray) -> np.ndarray:
    """Float64 probabilities (unnormalised, exact small integers) from counts [..., K]: the KT
    estimate ``2c + 1``, with the largest capped at 4095x the rest (the bound on symbols per
    compressed bit that :data:`MAX_EVENTS_PER_BYTE` rests on)."""
    w = 2 * counts + 1
    top = w.max(axis=-1, keepdims=True)
    rest = w.sum(axis=-1, keepdims=True) - top
    cap = 4095 * rest
    w = np.where((w == top) & (top > cap), cap, w)
    return w.astype(np.float64)


def _group(ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(order, contexts, starts)``: positions grouped by context (stable), the distinct
    contexts and where each group starts in ``order`` (plus the end)."""
    order = np.argsort(ctx, kind="stable")
    cs = ctx[order]
    starts = np.flatnonzero(np.r_[True, cs[1:] != cs[:-1]]) if cs.size else np.zeros(0, np.int64)
    return order, cs[starts], np.r_[starts, cs.size]


def _code_column(
    coder: Any, model: Any, sym: np.ndarray | None, ctx: np.ndarray, n_ctx: int, k: int, n: int
) -> np.ndarray:
    """Encode ``sym`` [n] (``coder`` an encoder) or decode it (``sym`` None) under adaptive
    models chosen by ``ctx`` [n] (0 <= ctx < n_ctx), alphabet ``0..k-1``."""
    out = np.zeros(n, dtype=np.int64) if sym is None else sym
    if k < 2:
        return np.zeros(n, dtype=np.int64)
    counts = np.zeros((n_ctx, k), dtype=np.int64)
    for start, stop in _sub_blocks(n):
        c = ctx[start:stop]
        order, present, starts = _group(c)
        probs = _probs(counts[present])
        for j in range(present.size):
            where = order[starts[j] : starts[j + 1]] + start
            m = model.Categorical(probs[j], perfect=False)
            if sym is None:
                out[where] = coder.decode(m, where.size)
            else:
                coder.encode(sym[where].astype(np.int32), m)
        s = out[start:stop]
        if sym is None and int(s.max(initial=0)) >= k:  # cannot happen; a cheap guard
            raise DataError("ctx stream: symbol out of range (corrupt file)")
        np.add.at(counts, (c, s), 1)
    return out


def _bit_length(z: np.ndarray) -> np.ndarray:
    b = np.zeros(z.size, dtype=np.int64)
    v = z.copy()
    for shift in (32, 16, 8, 4, 2, 1):
        big = v >= np.uint64(1 << shift)
        b[big] += shift
        v[big] >>= np.uint64(shift)
    b[v > 0] += 1
    return b


def _code_mantissa(coder: Any, model: Any, z: np.ndarray | None, b: np.ndarray) -> np.ndarray:
    """The ``b - 1`` bits below the leading one of each delta, uniform, in 16-bit pieces."""
    nbits = np.maximum(b - 1, 0)
    mant = np.zeros(b.size, dtype=np.uint64)
    if z is not None:
        mant = z - np.where(
            b > 0, np.left_shift(np.uint64(1), np.maximum(b - 1, 0).astype(np.uint64)), 0
        ).astype(np.uint64)
    for j in range(4):
        left = nbits - 16 * j
        where = np.flatnonzero(left > 0)
        if not where.size:
            break
        sizes = (1 << np.minimum(left[where], 16)).astype(np.int32)
        if z is not None:
            piece = ((mant[where] >> np.uint64(16 * j)) & np.uint64(0xFFFF)).astype(np.int32)
            coder.encode(piece, model.Uniform(), sizes)
        else:
            piece = coder.decode(model.Uniform(), sizes).astype(np.uint64)
            mant[where] |= piece << np.uint64(16 * j)
    lead = np.where(b > 0, np.left_shift(np.uint64(1), nbits.astype(np.uint64)), 0)
    return lead.astype(np.uint64) + mant


def _pixel_order(x: np.ndarray, y: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    key = y.astype(np.int64) * width + x.astype(np.int64)
    order = np.argsort(key, kind="stable")
    ks = key[order]
    new = np.ones(key.size, dtype=bool)
    new[1:] = ks[1:] != ks[:-1]
    return order, new


def running_parity(err: np.ndarray, order: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Per event, the XOR of its pixel's ``err`` (uint8 [N]) up to and including it: the
    polarity from polarity errors. ``order``/``new`` group the events by pixel, in time order
    within a pixel, and mark each group's first sorted event; uint8 [N] in file order."""
    n = err.size
    # Running XOR over all sorted events, minus (XOR) the running value just before the
    # event's pixel group. That prefix changes only at group starts, so it is itself a running
    # XOR of its changes placed at the starts.
    cx = np.bitwise_xor.accumulate(err[order])
    starts = np.flatnonzero(new)
    prefix = np.zeros(starts.size, dtype=np.uint8)
    prefix[1:] = cx[starts[1:] - 1]
    change = prefix.copy()
    change[1:] ^= prefix[:-1]
    carry = np.zeros(n, dtype=np.uint8)
    carry[starts] = change
    p = np.empty(n, dtype=np.uint8)
    p[order] = cx ^ np.bitwise_xor.accumulate(carry)
    return p


def _age_ctx(t: np.ndarray, order: np.ndarray, new: np.ndarray) -> np.ndarray:
    """0 for a pixel's first event in the block, else 1 + bit length of the time since the
    pixel's previous event (capped)."""
    ts = t[order]
    gap = np.zeros(t.size, dtype=np.uint64)
    gap[1:] = (ts[1:] - ts[:-1]).astype(np.uint64)  # pixel groups are time-ordered in file order
    ctx_sorted = np.minimum(1 + _bit_length(gap), _AGE_CTX - 1)
    ctx_sorted[new] = 0
    ctx = np.empty(t.size, dtype=np.int64)
    ctx[order] = ctx_sorted
    return ctx


def _merge(ctx: np.ndarray, n_ctx: int, k: int) -> tuple[np.ndarray, int]:
    """Merge neighbouring contexts until the count table (n_ctx x k) has at most 2**20 cells."""
    shift = 0
    while (-(-n_ctx >> shift)) * k > _MAX_TABLE and (n_ctx >> shift) > 1:
        shift += 1
    return ctx >> shift, max(-(-n_ctx >> shift), 1)


def _code_pixels(
    coder: Any,
    model: Any,
    x: np.ndarray | None,
    y: np.ndarray | None,
    b: np.ndarray,
    width: int,
    height: int,
    mode: int,
    n: int,
) -> tuple[np.ndarray, np.ndarray]:
    zero = np.zeros(n, dtype=np.int64)
    if mode == 0:
        y = _code_column(coder, model, y, zero, 1, height, n)
        cy, ny = _merge(y, height, width)
        x = _code_column(coder, model, x, cy, ny, width, n)
        return x, y
    bctx = np.minimum(b, 15)
    if x is not None:
        dx = (x - np.r_[0, x[:-1]]) % width
        _code_column(coder, model, dx, bctx, 16, width, n)
    else:
        dx = _code_column(coder, model, None, bctx, 16, width, n)
        x = np.cumsum(dx) % width
    cx, nx = _merge(x, width, height)
    y = _code_column(coder, model, y, cx, nx, height, n)
    return x, y


def _columns_crc(t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray) -> int:
    crc = zlib.crc32(np.ascontiguousarray(t, dtype="<i8").tobytes())
    crc = zlib.crc32(np.ascontiguousarray(x, dtype="<u2").tobytes(), crc)
    crc = zlib.crc32(np.ascontiguousarray(y, dtype="<u2").tobytes(), crc)
    return zlib.crc32(np.ascontiguousarray(p, dtype="u1").tobytes(), crc)


def _encode_with(
    mode: int,
    t: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    err: np.ndarray,
    age: np.ndarray,
    width: int,
    height: int,
    flags: int,
) -> bytes:
    cst = _constriction()
    model = cst.stream.model
    enc = cst.stream.queue.RangeEncoder()
    n = t.size
    d = np.zeros(n, dtype=np.int64)
    d[1:] = t[1:] - t[:-1]
    z = ((d << 1) ^ (d >> 63)).view(np.uint64) if flags & ZIGZAG else d.view(np.uint64)
    b = _bit_length(z)
    _code_column(enc, model, b, np.zeros(n, dtype=np.int64), 1, _B_SYMBOLS, n)
    _code_mantissa(enc, model, z, b)
    _code_pixels(enc, model, x, y, b, width, height, mode, n)
    _code_column(enc, model, err, age, _AGE_CTX, 2, n)
    return enc.get_compressed().astype("<u4").tobytes()


def encode_block(events: np.ndarray, width: int, height: int) -> tuple[BlockInfo, bytes]:
    """Code ``events`` [n] (EVENT_DTYPE, 1 <= n <= BLOCK_EVENTS, inside the sensor) into
    ``(index record, payload)``; the encoder keeps the smaller of the two pixel modes."""
    n = events.size
    t = np.ascontiguousarray(events["t"], dtype=np.int64)
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    p = events["p"].astype(np.int64)
    flags = ZIGZAG if n > 1 and bool((t[1:] < t[:-1]).any()) else 0
    order, new = _pixel_order(x, y, width)
    if flags & ZIGZAG:  # the age context needs each pixel's events in time order: use file order
        age = np.zeros(n, dtype=np.int64)
    else:
        age = _age_ctx(t, order, new)
    ps = p[order]
    prev = np.r_[0, ps[:-1]]
    prev[new] = 0
    err = np.empty(n, dtype=np.int64)
    err[order] = ps ^ prev
    best = None
    for mode in (0, 1):
        payload = _encode_with(mode, t, x, y, err, age, width, height, flags)
        if best is None or len(payload) < len(best[1]):
            best = (mode, payload)
    mode, payload = best
    info = BlockInfo(
        n,
        int(t[0]),
        int(t.min()),
        int(t.max()),
        len(payload),
        _columns_crc(t, x, y, p),
        flags | (XFIRST if mode else 0),
    )
    return info, payload


def check_record(
    info: BlockInfo,
    where: str,
    codec: str,
    *,
    block_events: int,
    max_per_byte: int,
    flags: int,
    min_len: int = 1,
    multiple: int = 1,
) -> None:
    """Refuse a block record whose sizes no ``codec`` encoder writes, before anything is
    allocated: 1..``block_events`` events, a payload of at least ``min_len`` bytes (a multiple
    of ``multiple``) holding at most ``max_per_byte`` events a byte, t_first within
    [t_min, t_max] and no flag outside ``flags``."""
    if not 1 <= info.n <= block_events:
        raise DataError(f"{where}: {info.n} events, 1..{block_events} allowed (corrupt file)")
    if info.comp_len < min_len or info.comp_len % multiple or info.n > max_per_byte * info.comp_len:
        raise DataError(
            f"{where}: {info.n} events from {info.comp_len} bytes, more than the {codec} codec "
            f"can expand ({max_per_byte} events per byte at most): corrupt or crafted file"
        )
    if not info.t_min <= info.t_first <= info.t_max or info.flags & ~flags:
        raise DataError(f"{where}: inconsistent block record (corrupt file)")


def check_payload(payload: bytes | memoryview, info: BlockInfo, codec: str) -> None:
    """A block's payload is as long as its record says."""
    if len(payload) != info.comp_len:
        raise DataError(f"{codec} block: payload length differs from its record (corrupt file)")


def check_block(info: BlockInfo, where: str) -> None:
    """Refuse a record whose sizes no encoder writes, before anything is allocated."""
    check_record(
        info,
        where,
        "ctx",
        block_events=BLOCK_EVENTS,
        max_per_byte=MAX_EVENTS_PER_BYTE,
        flags=ZIGZAG | XFIRST,
        multiple=4,
    )


def decode_block(
    payload: bytes | memoryview,
    info: BlockInfo,
    width: int,
    height: int,
    out: np.ndarray,
    *,
    native: bool | None = None,
) -> None:
    """Decode one block into ``out`` [info.n] (EVENT_DTYPE), checking its CRC-32.

    ``native``: True uses the compiled decoder (:mod:`.ctx_native`; DataError when it cannot
    be had), False the Python one (constriction), None the compiled one when available. Both
    read the same bitstream into the same events."""
    check_block(info, "block")
    lib = ctx_native.coder("ctx", native)
    n = info.n
    if lib is not None:
        check_payload(payload, info, "ctx")
        words = np.frombuffer(payload, dtype="<u4")
        t = np.empty(n, dtype=np.int64)
        x = np.empty(n, dtype=np.uint16)
        y = np.empty(n, dtype=np.uint16)
        p = np.empty(n, dtype=np.uint8)
        rc = lib.sf_ctx_decode(
            words.ctypes.data,
            words.size,
            n,
            width,
            height,
            info.flags,
            info.t_first,
            t.ctypes.data,
            x.ctypes.data,
            y.ctypes.data,
            p.ctypes.data,
        )
        if rc == 2:
            raise DataError("ctx block: out of memory while decoding")
        if rc:
            raise DataError("ctx block: invalid range-coder data (corrupt file)")
    else:
        try:
            t, x, y, p = _decode_python(payload, info, width, height)
        except (ValueError, RuntimeError, AssertionError) as exc:  # constriction's refusals
            raise DataError(f"ctx block: invalid range-coder data ({exc}) (corrupt file)") from None
    if _columns_crc(t, x, y, p) != info.crc:
        raise DataError("ctx block: checksum mismatch (the file is corrupt)")
    out["t"] = t
    out["x"] = x
    out["y"] = y
    out["p"] = p


def _decode_python(
    payload: bytes | memoryview, info: BlockInfo, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The Python (constriction) decoder: columns ``(t, x, y, p)`` of one block."""
    cst = _constriction()
    model = cst.stream.model
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    dec = cst.stream.queue.RangeDecoder(words)
    n = info.n
    b = _code_column(dec, model, None, np.zeros(n, dtype=np.int64), 1, _B_SYMBOLS, n)
    z = _code_mantissa(dec, model, None, b)
    d = (
        (z >> np.uint64(1)).view(np.int64) ^ -(z & np.uint64(1)).view(np.int64)
        if info.flags & ZIGZAG
        else z.view(np.int64)
    )
    d[0] = 0
    with np.errstate(over="ignore"):
        t = np.cumsum(d) + np.int64(info.t_first)
    x, y = _code_pixels(
        dec, model, None, None, b, width, height, 1 if info.flags & XFIRST else 0, n
    )
    if int(x.max()) >= width or int(y.max()) >= height:
        raise DataError("ctx block: pixel outside the sensor (corrupt file)")
    order, new = _pixel_order(x, y, width)
    age = np.zeros(n, dtype=np.int64) if info.flags & ZIGZAG else _age_ctx(t, order, new)
    err = _code_column(dec, model, None, age, _AGE_CTX, 2, n)
    # polarity = running parity of the pixel's errors (groups are contiguous in ``order``)
    p = running_parity(err.astype(np.uint8), order, new)
    return t, x, y, p
