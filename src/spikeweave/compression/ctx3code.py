"""Per-symbol adaptive binary range coding of one block of events (``ctx3``, ``.sfev`` v3).

The ``ctx`` codec of format version 2 adapts its models only between sub-blocks, because a
per-symbol adaptive model needs a loop over symbols. Version 3 runs that loop in C
(``ctx3_native.c``): every event is coded as a few binary decisions with an LZMA-style range
coder (32-bit range, 11-bit probabilities, each updated by 1/32 of its error after every
decision), so models adapt after every symbol and decoding needs no table search and no
divide. This module is the plain reference of the same bitstream, in Python: it encodes and
decodes exactly what the C code does (tests hold the two equal byte for byte), and it is the
fallback where no C compiler is found.

One event, in this order (``b`` = bit length of the timestamp delta, zigzag-coded when the
block has a negative delta; the first event of a block codes delta 0):

1. ``min(b, 15)`` on a 4-level binary tree, context ``min(b of the previous event, 15)``;
   when it is 15, ``b - 15`` (0..49) on a 6-level tree (one context). Short deltas take four
   decisions instead of the seven of a tree over 0..64, and the smaller tree learns faster
   (1.5 % smaller N-MNIST files);
2. the bit below the leading one of the delta (``b >= 2``) adaptively, context ``b``; the
   ``b - 2`` bits below it as direct (uniform) bits;
3. the pixel, in one of two modes the encoder tries per block (flag ``XFIRST``):
   mode 0 codes ``y`` (one tree) then ``x`` given ``y``; mode 1 codes ``(x - x_prev) mod
   width`` given ``min(b, 15)`` (column-wise readout, as on the DVXplorer) then ``y`` given
   ``x``. Context tables above 2**20 probabilities merge neighbouring contexts;
4. the polarity as ``p XOR (the pixel's previous polarity in the block)``, context: that
   previous polarity and the bit length of the time since the pixel's previous event
   (0 for a pixel's first event in the block; 1 for any later one when the block is zigzag).

Bounds (hostile files): a probability never leaves [31, 2017] of 2048, so a decision costs at
least ``log2(2048/2017)`` = 0.022 bits, and every event codes at least five decisions (four
for ``b``, one for the polarity): one compressed byte holds at most 71 events;
:data:`MAX_EVENTS_PER_BYTE` = 128. Decoding reads exactly the declared number of events.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from . import ctx_native
from .ctxcode import BLOCK, BlockInfo, _columns_crc, check_payload, check_record

__all__ = [
    "BLOCK_EVENTS",
    "MAX_EVENTS_PER_BYTE",
    "encode_block",
    "decode_block",
    "check_block",
]

BLOCK_EVENTS = 1 << 16
"""Events per block at most (the unit of random access)."""
MAX_EVENTS_PER_BYTE = 128
"""The most events one compressed byte of a block can decode to (module docstring)."""
ZIGZAG = 1
XFIRST = 2
_MAX_TABLE = 1 << 20
_B_BITS = 4  # min(b, 15) on a 4-level tree; 15 escapes to a 6-level tree of b - 15
_B_ESC = 15
_B_CTX = 16
_AGE_CTX = 34
_TOP = 1 << 24
_MASK32 = 0xFFFFFFFF
_MASK64 = (1 << 64) - 1
_HALF = 1024  # initial probability of a 0, of 2048

assert BLOCK.size == 37


def _nbits(k: int) -> int:
    """Decisions of a binary tree over ``k`` symbols."""
    return max(k - 1, 0).bit_length()


def _wrap(v: int) -> int:
    """``v`` as a wrapping int64."""
    return ((v + (1 << 63)) & _MASK64) - (1 << 63)


def _merge_shift(n_ctx: int, leaves: int) -> int:
    """Right shift of a context so that the table (contexts x leaves) has at most 2**20."""
    shift = 0
    while (-(-n_ctx >> shift)) * leaves > _MAX_TABLE and (n_ctx >> shift) > 1:
        shift += 1
    return shift


class _Encoder:
    """LZMA's range encoder (64-bit low with a carry cache), one byte out at a time."""

    __slots__ = ("low", "rng", "cache", "csize", "out")

    def __init__(self) -> None:
        self.low, self.rng, self.cache, self.csize = 0, _MASK32, 0, 1
        self.out = bytearray()

    def _shift(self) -> None:
        low = self.low
        if low < 0xFF000000 or low >= 1 << 32:
            carry = low >> 32
            temp = self.cache
            while True:
                self.out.append((temp + carry) & 0xFF)
                temp = 0xFF
                self.csize -= 1
                if not self.csize:
                    break
            self.cache = (low >> 24) & 0xFF
        self.csize += 1
        self.low = (low & 0x00FFFFFF) << 8

    def bit(self, probs: list[int], i: int, bit: int | None) -> int:
        p = probs[i]
        bound = (self.rng >> 11) * p
        if bit:
            self.low += bound
            self.rng -= bound
            probs[i] = p - (p >> 5)
        else:
            self.rng = bound
            probs[i] = p + ((2048 - p) >> 5)
        while self.rng < _TOP:
            self.rng = (self.rng << 8) & _MASK32
            self._shift()
        return bit  # type: ignore[return-value]

    def direct(self, value: int | None, nbits: int) -> int:
        for j in range(nbits - 1, -1, -1):
            self.rng >>= 1
            if (value >> j) & 1:  # type: ignore[operator]
                self.low += self.rng
            while self.rng < _TOP:
                self.rng = (self.rng << 8) & _MASK32
                self._shift()
        return value  # type: ignore[return-value]

    def finish(self) -> bytes:
        for _ in range(5):
            self._shift()
        return bytes(self.out)


class _Decoder:
    """LZMA's range decoder; bytes past the end read as 0 (a damaged block then decodes to
    wrong events, which its CRC-32 refuses)."""

    __slots__ = ("data", "pos", "rng", "code")

    def __init__(self, data: bytes) -> None:
        if len(data) < 5 or data[0] != 0:
            raise DataError("ctx3 block: invalid range-coder data (corrupt file)")
        self.data, self.pos, self.rng = data, 5, _MASK32
        self.code = int.from_bytes(data[1:5], "big")

    def _next(self) -> int:
        pos = self.pos
        self.pos = pos + 1
        return self.data[pos] if pos < len(self.data) else 0

    def bit(self, probs: list[int], i: int, bit: int | None = None) -> int:
        p = probs[i]
        bound = (self.rng >> 11) * p
        if self.code < bound:
            self.rng = bound
            probs[i] = p + ((2048 - p) >> 5)
            out = 0
        else:
            self.code -= bound
            self.rng -= bound
            probs[i] = p - (p >> 5)
            out = 1
        if self.rng < _TOP:
            self.rng = (self.rng << 8) & _MASK32
            self.code = ((self.code << 8) | self._next()) & _MASK32
        return out

    def direct(self, value: int | None, nbits: int) -> int:
        out = 0
        for _ in range(nbits):
            self.rng >>= 1
            if self.code >= self.rng:
                self.code -= self.rng
                out = (out << 1) | 1
            else:
                out <<= 1
            if self.rng < _TOP:
                self.rng = (self.rng << 8) & _MASK32
                self.code = ((self.code << 8) | self._next()) & _MASK32
        return out


def _tree(coder: _Encoder | _Decoder, probs: list[int], base: int, nb: int, sym: int | None) -> int:
    """Code ``sym`` (0 <= sym < 2**nb) MSB first on the tree at ``probs[base + 1 ..]``."""
    m = 1
    for j in range(nb - 1, -1, -1):
        bit = coder.bit(probs, base + m, None if sym is None else (sym >> j) & 1)
        m = (m << 1) | bit
    return m - (1 << nb)


def _run(
    coder: _Encoder | _Decoder,
    n: int,
    width: int,
    height: int,
    flags: int,
    cols: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None,
) -> tuple[list[int], list[int], list[int], list[int]]:
    """The model, shared by encoding (``cols`` = t, x, y, p) and decoding (``cols`` None):
    returns the columns as lists (delta-coded ``t`` as absolute times minus ``t_first``)."""
    enc = cols is not None
    if enc:
        t_l, x_l, y_l, p_l = (c.tolist() for c in cols)  # type: ignore[union-attr]
    zig = bool(flags & ZIGZAG)
    mode = 1 if flags & XFIRST else 0
    nbx, nby = _nbits(width), _nbits(height)
    b_probs = [_HALF] * (_B_CTX << _B_BITS)
    esc_probs = [_HALF] * 64
    m_probs = [_HALF] * 65
    pol = [_HALF] * (2 * _AGE_CTX)
    if mode == 0:
        sy = _merge_shift(height, 1 << nbx)
        first = [_HALF] * (1 << nby)
        second = [_HALF] * ((-(-height >> sy)) << nbx)
        s_shift, s_bits = sy, nbx
    else:
        sx = _merge_shift(width, 1 << nby)
        first = [_HALF] * (_B_CTX << nbx)
        second = [_HALF] * ((-(-width >> sx)) << nby)
        s_shift, s_bits = sx, nby
    last: dict[int, tuple[int, int]] = {}
    ts: list[int] = []
    xs: list[int] = []
    ys: list[int] = []
    ps: list[int] = []
    prev_b = 0
    prev_t = 0
    x_prev = 0
    for i in range(n):
        # 1-2: the timestamp delta
        if enc:
            d = _wrap(t_l[i] - prev_t) if i else 0
            z = ((d << 1) ^ (d >> 63)) & _MASK64 if zig else d & _MASK64
            b = z.bit_length()
        else:
            z = b = None
        short = _tree(
            coder,
            b_probs,
            min(prev_b, _B_CTX - 1) << _B_BITS,
            _B_BITS,
            None if b is None else min(b, _B_ESC),
        )
        if short == _B_ESC:
            short += _tree(coder, esc_probs, 0, 6, None if b is None else b - _B_ESC)
        b = short
        if b > 64:
            raise DataError("ctx3 block: timestamp delta out of range (corrupt file)")
        if b >= 2:
            top = coder.bit(m_probs, b, None if z is None else (z >> (b - 2)) & 1)
            low = coder.direct(None if z is None else z & ((1 << (b - 2)) - 1), b - 2)
            z = (1 << (b - 1)) | (top << (b - 2)) | low
        else:
            z = b
        if not enc:
            d = ((z >> 1) ^ -(z & 1)) if zig else z
            if i == 0 and d:
                raise DataError("ctx3 block: the first delta is not 0 (corrupt file)")
            t = _wrap(prev_t + d)  # int64 arithmetic, as in C
        else:
            t = t_l[i]
        bctx = min(b, _B_CTX - 1)
        # 3: the pixel
        if mode == 0:
            y = _tree(coder, first, 0, nby, y_l[i] if enc else None)
            if y >= height:
                raise DataError("ctx3 block: pixel outside the sensor (corrupt file)")
            x = _tree(coder, second, (y >> s_shift) << s_bits, nbx, x_l[i] if enc else None)
            if x >= width:
                raise DataError("ctx3 block: pixel outside the sensor (corrupt file)")
        else:
            dx = _tree(coder, first, bctx << nbx, nbx, (x_l[i] - x_prev) % width if enc else None)
            if dx >= width:
                raise DataError("ctx3 block: pixel outside the sensor (corrupt file)")
            x = (x_prev + dx) % width
            y = _tree(coder, second, (x >> s_shift) << s_bits, nby, y_l[i] if enc else None)
            if y >= height:
                raise DataError("ctx3 block: pixel outside the sensor (corrupt file)")
        # 4: the polarity
        key = y * width + x
        seen = last.get(key)
        if seen is None:
            ctx, pp = 0, 0
        else:
            pp = seen[1]
            ctx = 1 if zig else min(1 + ((t - seen[0]) & _MASK64).bit_length(), _AGE_CTX - 1)
        err = coder.bit(pol, 2 * ctx + pp, (p_l[i] ^ pp) if enc else None)
        p = err ^ pp
        last[key] = (t, p)
        if not enc:
            ts.append(t)
            xs.append(x)
            ys.append(y)
            ps.append(p)
        prev_b, prev_t, x_prev = b, t, x
    return ts, xs, ys, ps


def encode_block_python(events: np.ndarray, width: int, height: int) -> tuple[BlockInfo, bytes]:
    """The reference encoder (see :func:`encode_block`)."""
    n = events.size
    t = np.ascontiguousarray(events["t"], dtype=np.int64)
    cols = (t, events["x"], events["y"], events["p"])
    flags = ZIGZAG if n > 1 and bool((t[1:] < t[:-1]).any()) else 0
    best = None
    for mode in (0, XFIRST):
        coder = _Encoder()
        _run(coder, n, width, height, flags | mode, cols)
        payload = coder.finish()
        if best is None or len(payload) < len(best[1]):
            best = (mode, payload)
    mode, payload = best  # type: ignore[misc]
    info = BlockInfo(
        n,
        int(t[0]),
        int(t.min()),
        int(t.max()),
        len(payload),
        _columns_crc(t, events["x"], events["y"], events["p"]),
        flags | mode,
    )
    return info, payload


def encode_block(
    events: np.ndarray, width: int, height: int, *, native: bool | None = None
) -> tuple[BlockInfo, bytes]:
    """Code ``events`` [n] (EVENT_DTYPE, 1 <= n <= BLOCK_EVENTS, inside the sensor) into
    ``(index record, payload bytes)``; the smaller of the two pixel modes is kept. ``native``
    as in :func:`decode_block`; both encoders write the same bytes."""
    lib = ctx_native.coder("ctx3", native)
    if lib is None:
        return encode_block_python(events, width, height)
    n = events.size
    t = np.ascontiguousarray(events["t"], dtype=np.int64)
    x = np.ascontiguousarray(events["x"], dtype=np.uint16)
    y = np.ascontiguousarray(events["y"], dtype=np.uint16)
    p = np.ascontiguousarray(events["p"], dtype=np.uint8)
    flags = ZIGZAG if n > 1 and bool((t[1:] < t[:-1]).any()) else 0
    # at most 44 adaptive decisions (<= 6.05 bits each) and 62 direct bits an event: < 42 bytes
    cap = 64 + 42 * n
    best = None
    for mode in (0, XFIRST):
        buf = np.empty(cap, dtype=np.uint8)
        size = lib.sf_ctx3_encode(
            t.ctypes.data, x.ctypes.data, y.ctypes.data, p.ctypes.data, n, width, height,
            flags | mode, buf.ctypes.data, cap,
        )  # fmt: skip
        if size < 0:
            raise DataError("ctx3 encoder: out of memory")
        if best is None or size < len(best[1]):
            best = (mode, buf[:size].tobytes())
    mode, payload = best  # type: ignore[misc]
    info = BlockInfo(
        n, int(t[0]), int(t.min()), int(t.max()), len(payload), _columns_crc(t, x, y, p),
        flags | mode,
    )  # fmt: skip
    return info, payload


def check_block(info: BlockInfo, where: str) -> None:
    """Refuse a record whose sizes no encoder writes, before anything is allocated."""
    check_record(
        info,
        where,
        "ctx3",
        block_events=BLOCK_EVENTS,
        max_per_byte=MAX_EVENTS_PER_BYTE,
        flags=ZIGZAG | XFIRST,
        min_len=5,
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

    ``native``: True uses the compiled coder (DataError when it cannot be had), False the
    Python reference, None the compiled one when available; both give the same events."""
    check_block(info, "block")
    check_payload(payload, info, "ctx3")
    lib = ctx_native.coder("ctx3", native)
    n = info.n
    if lib is not None:
        data = np.frombuffer(payload, dtype=np.uint8)
        t = np.empty(n, dtype=np.int64)
        x = np.empty(n, dtype=np.uint16)
        y = np.empty(n, dtype=np.uint16)
        p = np.empty(n, dtype=np.uint8)
        rc = lib.sf_ctx3_decode(
            data.ctypes.data, data.size, n, width, height, info.flags, info.t_first,
            t.ctypes.data, x.ctypes.data, y.ctypes.data, p.ctypes.data,
        )  # fmt: skip
        if rc == 2:
            raise DataError("ctx3 block: out of memory while decoding")
        if rc:
            raise DataError("ctx3 block: invalid range-coder data (corrupt file)")
    else:
        ts, xs, ys, ps = _run(_Decoder(bytes(payload)), n, width, height, info.flags, None)
        t = np.array(ts, dtype=np.int64)
        with np.errstate(over="ignore"):
            t += np.int64(info.t_first)
        x = np.array(xs, dtype=np.uint16)
        y = np.array(ys, dtype=np.uint16)
        p = np.array(ps, dtype=np.uint8)
    if _columns_crc(t, x, y, p) != info.crc:
        raise DataError("ctx3 block: checksum mismatch (the file is corrupt)")
    out["t"] = t
    out["x"] = x
    out["y"] = y
    out["p"] = p
