"""Static-table interleaved rANS coding of one block of events (``rans``, ``.sfev`` v4).

``ctx3`` (format version 3) is the smallest codec, but it adapts a probability after every
binary decision: ~23 serial range-coder steps an event, ~3.8 M events/s decoded. This codec
trades size for decode speed: the encoder counts each block's symbols and stores static
frequency tables (normalised to a total of ``2**pb``, see :data:`PROB_BITS`), and every event is
three multi-symbol rANS decodes, each a table lookup, a multiply and a shift (no divide in
the decoder), plus a few raw bits. Each symbol kind has its own rANS state (three
interleaved states sharing one byte stream), so the three decodes of an event do not wait on
each other's renormalisation. ``rans_native.c`` is the compiled encoder loop and decoder;
this module is the plain reference of the same bitstream (tests hold the two equal byte for
byte) and the fallback without a C compiler.

One event, three symbols (``token(v, k)``: ``v`` itself when ``v < 2**k``, else
``2**k + 4 (b - k - 1) + (the two bits below v's leading one)`` with ``b`` = bit length of
``v``, followed by the ``b - 3`` bits below those as raw bits):

1. ``T``: ``token(z, 4)`` of the timestamp delta ``z`` (zigzag-coded when the block has a
   negative delta; the first event codes 0), context: the class of the previous event's
   delta (0: zero, 1: below 16, 2: larger);
2. ``X``: ``token(vx, 10)``, context: the class of this event's delta. ``vx`` is ``x``
   (mode 0) or ``(x - x_prev) mod width`` (mode 1, flag :data:`DELTAS`; the encoder keeps
   the smaller of the two);
3. ``Y``: ``2 token(vy, 10) + p`` (the polarity folded in), ``vy`` = ``y`` (mode 0) or
   ``(y - y_prev) mod height`` (mode 1), context: mode 0 the third of the sensor ``x`` lies
   in, mode 1 ``dx`` = 0, +-1 or other.

Payload of a block::

    u8 pb (10..12) | u8 shared (bit k: symbol kind k of T, X, Y has one table for its three
    contexts) | 9 tables (T0..T2, X0..X2, Y0..Y2; a shared kind stores only its first)
    | u32 LE length R of the rANS bytes | R rANS bytes (the three final states, u32 LE each,
    then the 16-bit renormalisation words) | raw bits, MSB first, zero-padded to a byte

A table is ``u8 kind`` (0: unused; 1 or 2: frequencies of 1 or 2 bytes), ``u16 max_sym``,
a bitmap (LSB first) of the present symbols ``0..max_sym``, ``u16`` the index (among the
present) of the symbol whose frequency is implied (``2**pb`` minus the others), then
``freq - 1`` of every other present symbol. Every table is checked before use: symbols inside
the alphabet, at least two present, frequencies summing to ``2**pb``, none above
:func:`max_freq`.

Bounds (hostile files): no frequency exceeds ``2**pb - 2**pb / 64``, so a symbol costs at
least ``log2(64/63)`` = 0.023 bits and an event (three symbols) 0.068 bits: one byte holds
at most 117 events; :data:`MAX_EVENTS_PER_BYTE` = 128. Decoding reads exactly the declared
number of events, and the block must end with every state back at its initial value and
every byte used.
"""

from __future__ import annotations

import struct
import threading
import zlib

import numpy as np

from ..data.events import EVENT_DTYPE
from ..errors import DataError
from . import ctx_native
from .ctxcode import BlockInfo, check_payload, check_record

__all__ = [
    "BLOCK_EVENTS",
    "MAX_EVENTS_PER_BYTE",
    "PROB_BITS",
    "max_freq",
    "encode_block",
    "decode_block",
    "check_block",
    "normalise",
]

BLOCK_EVENTS = 1 << 16
"""Events per block at most (the unit of random access)."""
MAX_EVENTS_PER_BYTE = 128
"""The most events one compressed byte of a block can decode to (module docstring)."""
ZIGZAG = 1
DELTAS = 2
PROB_BITS = (10, 11, 12)
"""The table sizes (log2 of the frequency total) a block may use: 10 for blocks of at most
:data:`SMALL_BLOCK` events (building a 4096-slot table cost ~10 ns an event on 5 k-event
N-MNIST files, four times what a 1024-slot one does), else 12 (finer frequencies)."""
SMALL_BLOCK = 8192
_L = 1 << 16  # rANS state lower bound; states live in [2**16, 2**32), renormalised by words
_T_K, _C_K = 4, 10  # direct-token ranges: deltas below 16, coordinates below 1024
_T_ALPHA = (1 << _T_K) + 4 * (64 - _T_K)  # 256 tokens: bit lengths up to 64
_C_ALPHA = (1 << _C_K) + 4 * (16 - _C_K)  # 1048 tokens: coordinates below 65536
_ALPHABETS = (_T_ALPHA,) * 3 + (_C_ALPHA,) * 3 + (2 * _C_ALPHA,) * 3
N_TABLES = 9
_MASK64 = (1 << 64) - 1
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_LOCAL = threading.local()  # per thread: the compiled decoder's workspace, reused


# -- tokens -----------------------------------------------------------------------------------


def _bit_length(v: np.ndarray) -> np.ndarray:
    """Bit length of each uint64 (0 for 0), exact for every value."""
    v = v.astype(np.uint64)
    b = np.zeros(v.shape, dtype=np.int64)
    for shift in (32, 16, 8, 4, 2, 1):
        big = v >= (np.uint64(1) << np.uint64(shift))
        b += big * shift
        v = np.where(big, v >> np.uint64(shift), v)
    return b + (v > 0)


def _tokens(v: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(token, raw value, raw bit count)`` of uint64 values ``v`` (module docstring)."""
    v = v.astype(np.uint64)
    b = _bit_length(v)
    big = b > k
    nraw = np.where(big, b - 3, 0)
    sh = np.maximum(nraw, 0).astype(np.uint64)
    top2 = ((v >> sh) & np.uint64(3)).astype(np.int64)
    tok = np.where(big, (1 << k) + 4 * (b - k - 1) + top2, v.astype(np.int64))
    raw = np.where(big, v & ((np.uint64(1) << sh) - np.uint64(1)), np.uint64(0))
    return tok, raw, nraw


def _delta_class(z: np.ndarray) -> np.ndarray:
    return np.where(z == 0, 0, np.where(z < 16, 1, 2)).astype(np.int64)


# -- tables -----------------------------------------------------------------------------------


def max_freq(pb: int) -> int:
    """The largest frequency a table of ``2**pb`` may hold: ``2**pb - 2**pb / 64`` (bounds the
    events per byte, module docstring)."""
    return (1 << pb) - (1 << (pb - 6))


def normalise(counts: np.ndarray, pb: int = 12) -> np.ndarray:
    """Frequencies summing to ``2**pb`` for symbol ``counts`` [alphabet] (integers, the same on
    every machine): every counted symbol at least 1, none above :func:`max_freq`; a lone
    symbol gets a partner of frequency 1 (so that no symbol is free and a table always has
    two). All zero for counts that are all zero (an unused table). At most ``2**pb / 2``
    symbols may be counted."""
    counts = np.asarray(counts, dtype=np.int64)
    freq = np.zeros(counts.size, dtype=np.int64)
    present = np.flatnonzero(counts)
    if present.size == 0:
        return freq
    if present.size == 1:
        partner = 1 if present[0] == 0 else 0
        present = np.sort(np.array([present[0], partner]))
    scale, cap = 1 << pb, max_freq(pb)
    c = counts[present]
    f = 1 + c * (scale - present.size) // int(c.sum())
    top = int(np.argmax(c))
    f[top] += scale - int(f.sum())
    if f[top] > cap:  # cap the likeliest; the excess goes to the next likeliest
        excess = int(f[top]) - cap
        f[top] = cap
        rest = c.copy()
        rest[top] = -1
        f[int(np.argmax(rest))] += excess
    freq[present] = f
    return freq


def _write_table(freq: np.ndarray) -> bytes:
    present = np.flatnonzero(freq)
    if present.size == 0:
        return b"\x00"
    f = freq[present]
    implied = int(np.argmax(f))
    others = np.delete(f, implied) - 1
    wide = bool(others.size) and int(others.max()) > 255
    max_sym = int(present[-1])
    bitmap = np.zeros(max_sym + 1, dtype=np.uint8)
    bitmap[present] = 1
    return b"".join(
        (
            bytes([2 if wide else 1]),
            _U16.pack(max_sym),
            np.packbits(bitmap, bitorder="little").tobytes(),
            _U16.pack(implied),
            others.astype("<u2" if wide else "u1").tobytes(),
        )
    )


def _read_table(data: bytes, pos: int, alphabet: int, pb: int) -> tuple[np.ndarray | None, int]:
    """``(freq [alphabet] or None for an unused table, position after it)``, checked."""
    bad = DataError("rans block: invalid frequency table (corrupt file)")
    if pos >= len(data):
        raise bad
    kind = data[pos]
    pos += 1
    if kind == 0:
        return None, pos
    if kind > 2 or pos + 2 > len(data):
        raise bad
    (max_sym,) = _U16.unpack_from(data, pos)
    pos += 2
    nb = (max_sym + 8) // 8
    if max_sym >= alphabet or pos + nb + 2 > len(data):
        raise bad
    bits = np.unpackbits(np.frombuffer(data, np.uint8, nb, pos), bitorder="little")
    pos += nb
    if bits[max_sym + 1 :].any() or not bits[max_sym]:
        raise bad
    present = np.flatnonzero(bits[: max_sym + 1])
    (implied,) = _U16.unpack_from(data, pos)
    pos += 2
    k = present.size - 1
    if k < 1 or implied > k or pos + kind * k > len(data):
        raise bad
    others = np.frombuffer(data, "<u2" if kind == 2 else "u1", k, pos).astype(np.int64) + 1
    pos += kind * k
    rest = (1 << pb) - int(others.sum())
    f = np.insert(others, implied, rest)
    if rest < 1 or int(f.max()) > max_freq(pb):
        raise bad
    freq = np.zeros(alphabet, dtype=np.int64)
    freq[present] = f
    return freq, pos


# -- the model (vectorised on the encoder's side) ---------------------------------------------


def _symbols(
    t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray, w: int, h: int, flags: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(table [3n], symbol [3n], raw value [3n], raw bits [3n])`` of a block, symbols in
    decoding order (T, X, Y of event 0, then of event 1, ...)."""
    n = t.size
    d = np.zeros(n, dtype=np.int64)
    with np.errstate(over="ignore"):
        d[1:] = t[1:] - t[:-1]  # wraps as int64, as the decoder's sum does
    z = ((d << 1) ^ (d >> 63)).view(np.uint64) if flags & ZIGZAG else d.view(np.uint64)
    x = x.astype(np.int64)
    y = y.astype(np.int64)
    if flags & DELTAS:
        vx = np.empty(n, dtype=np.int64)
        vy = np.empty(n, dtype=np.int64)
        vx[0], vy[0] = x[0], y[0]
        vx[1:] = (x[1:] - x[:-1]) % w
        vy[1:] = (y[1:] - y[:-1]) % h
        cy = np.where(vx == 0, 0, np.where((vx == 1) | (vx == w - 1), 1, 2))
    else:
        vx, vy = x, y
        cy = x * 3 // w
    cls = _delta_class(z)
    ct = np.zeros(n, dtype=np.int64)
    ct[1:] = cls[:-1]
    tt, tr, tn = _tokens(z, _T_K)
    xt, xr, xn = _tokens(vx.astype(np.uint64), _C_K)
    yt, yr, yn = _tokens(vy.astype(np.uint64), _C_K)
    table = np.stack([ct, 3 + cls, 6 + cy], axis=1).reshape(-1)
    sym = np.stack([tt, xt, 2 * yt + p.astype(np.int64)], axis=1).reshape(-1)
    raw = np.stack([tr, xr, yr], axis=1).reshape(-1)
    nraw = np.stack([tn, xn, yn], axis=1).reshape(-1)
    return table, sym, raw, nraw


def _pack_bits(raw: np.ndarray, nraw: np.ndarray) -> bytes:
    """The raw fields, MSB first, concatenated and zero-padded to a byte."""
    keep = nraw > 0
    raw, nraw = raw[keep], nraw[keep]
    total = int(nraw.sum())
    if not total:
        return b""
    field = np.repeat(np.arange(raw.size), nraw)
    ends = np.cumsum(nraw)
    shift = (ends[field] - 1 - np.arange(total)).astype(np.uint64)
    bits = ((raw[field] >> shift) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bits).tobytes()


def _rans_encode_python(freq: np.ndarray, start: np.ndarray, pb: int) -> bytes:
    """The rANS bytes of symbols with ``freq``/``start`` [3n] (lane = index mod 3) in tables
    of ``2**pb``."""
    states = [_L, _L, _L]
    out = bytearray()  # built backwards: reversed at the end
    fl, sl = freq.tolist(), start.tolist()
    for k in range(len(fl) - 1, -1, -1):
        f = fl[k]
        lane = k % 3
        s = states[lane]
        if s >= ((_L >> pb) << 16) * f:  # one 16-bit word out, at most
            out += bytes(((s >> 8) & 0xFF, s & 0xFF))  # reversed below: low byte first
            s >>= 16
        states[lane] = ((s // f) << pb) + (s % f) + sl[k]
    for lane in (2, 1, 0):
        out += _U32.pack(states[lane])[::-1]
    out.reverse()
    return bytes(out)


def _encode_mode(
    t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray, w: int, h: int, flags: int,
    lib: object,
) -> bytes:  # fmt: skip
    table, sym, raw, nraw = _symbols(t, x, y, p, w, h, flags)
    counts = [np.bincount(sym[table == j], minlength=a) for j, a in enumerate(_ALPHABETS)]
    merged = [counts[3 * k] + counts[3 * k + 1] + counts[3 * k + 2] for k in range(3)]
    pb = 10 if t.size <= SMALL_BLOCK else 12
    while pb < 12 and max(np.count_nonzero(c) for c in merged) > 1 << (pb - 1):
        pb += 1
    # Per symbol kind, three context tables or one shared by the contexts, whichever costs
    # fewer bits (code length with the normalised frequencies plus the stored table): on
    # 3-5 k-event N-MNIST blocks the delta and x contexts save less than their tables cost.
    shared = 0
    freqs: list[np.ndarray] = []
    for k in range(3):
        own = [normalise(counts[3 * k + c], pb) for c in range(3)]
        one = normalise(merged[k], pb)
        cost_own = sum(_cost(counts[3 * k + c], own[c], pb) for c in range(3))
        if _cost(merged[k], one, pb) < cost_own:
            shared |= 1 << k
            freqs += [one] * 3
        else:
            freqs += own
    parts = [bytes([pb, shared])]
    freq_of = np.zeros(table.size, dtype=np.int64)
    start_of = np.zeros(table.size, dtype=np.int64)
    for j in range(N_TABLES):
        freq = freqs[j]
        if not shared >> (j // 3) & 1 or j % 3 == 0:
            parts.append(_write_table(freq))
        sel = table == j
        if sel.any():
            start = np.concatenate(([0], np.cumsum(freq)[:-1]))
            freq_of[sel] = freq[sym[sel]]
            start_of[sel] = start[sym[sel]]
    if lib is None:
        stream = _rans_encode_python(freq_of, start_of, pb)
    else:
        f16 = np.ascontiguousarray(freq_of, dtype=np.uint16)
        s16 = np.ascontiguousarray(start_of, dtype=np.uint16)
        cap = 16 + 4 * table.size  # a symbol emits at most 2 bytes; 12 for the states
        buf = np.empty(cap, dtype=np.uint8)
        size = lib.sf_rans_encode(
            f16.ctypes.data, s16.ctypes.data, f16.size, pb, buf.ctypes.data, cap
        )
        if size < 0:
            raise DataError("rans encoder: output buffer too small")
        stream = buf[cap - size :].tobytes()
    parts += [_U32.pack(len(stream)), stream, _pack_bits(raw, nraw)]
    return b"".join(parts)


def _cost(counts: np.ndarray, freq: np.ndarray, pb: int) -> float:
    """Bits to code ``counts`` with ``freq`` (of ``2**pb``) and to store the table."""
    used = counts > 0
    code = float((counts[used] * (pb - np.log2(freq[used]))).sum())
    return code + 8 * len(_write_table(freq))


def encode_block(
    events: np.ndarray, width: int, height: int, *, native: bool | None = None
) -> tuple[BlockInfo, bytes]:
    """Code ``events`` [n] (EVENT_DTYPE, 1 <= n <= BLOCK_EVENTS, inside the sensor) into
    ``(index record, payload bytes)``; the smaller of the two pixel modes is kept. ``native``
    as in :func:`decode_block`; both encoders write the same bytes."""
    lib = ctx_native.coder("rans", native)
    n = events.size
    t = np.ascontiguousarray(events["t"], dtype=np.int64)
    x = np.ascontiguousarray(events["x"], dtype=np.uint16)
    y = np.ascontiguousarray(events["y"], dtype=np.uint16)
    p = np.ascontiguousarray(events["p"], dtype=np.uint8)
    flags = ZIGZAG if n > 1 and bool((t[1:] < t[:-1]).any()) else 0
    best = None
    for mode in (0, DELTAS):
        payload = _encode_mode(t, x, y, p, width, height, flags | mode, lib)
        if best is None or len(payload) < len(best[1]):
            best = (mode, payload)
    mode, payload = best  # type: ignore[misc]
    info = BlockInfo(
        n, int(t[0]), int(t.min()), int(t.max()), len(payload), zlib.crc32(payload), flags | mode
    )  # fmt: skip
    return info, payload


def check_block(info: BlockInfo, where: str) -> None:
    """Refuse a record whose sizes no encoder writes, before anything is allocated."""
    check_record(
        info,
        where,
        "rans",
        block_events=BLOCK_EVENTS,
        max_per_byte=MAX_EVENTS_PER_BYTE,
        flags=ZIGZAG | DELTAS,
        min_len=2 + 3 + 16,
    )


class _Bits:
    """MSB-first reader of the raw bits; reading past the end is an error."""

    def __init__(self, data: bytes) -> None:
        self.value = int.from_bytes(data, "big")
        self.left = 8 * len(data)

    def read(self, nb: int) -> int:
        if nb > self.left:
            raise DataError("rans block: raw bits run out (corrupt file)")
        self.left -= nb
        return (self.value >> self.left) & ((1 << nb) - 1)


def _untoken(tok: int, k: int, bits: _Bits) -> int:
    if tok < 1 << k:
        return tok
    j = tok - (1 << k)
    b = j // 4 + k + 1
    return ((4 | (j & 3)) << (b - 3)) | bits.read(b - 3)


def _decode_python(
    data: bytes, n: int, width: int, height: int, flags: int
) -> tuple[list[int], list[int], list[int], list[int]]:
    """The reference decoder: ``(t - t_first, x, y, p)`` as lists."""
    bad = DataError("rans block: invalid rANS data (corrupt file)")
    if len(data) < 2 or data[0] not in PROB_BITS or data[1] > 7:
        raise bad
    pb, shared = data[0], data[1]
    pos = 2
    slots = []  # per table: (symbol of each slot, freq, start of each symbol), or None
    for j, alphabet in enumerate(_ALPHABETS):
        if shared >> (j // 3) & 1 and j % 3:  # the kind's one table serves every context
            slots.append(slots[-1])
            continue
        freq, pos = _read_table(data, pos, alphabet, pb)
        if freq is None:
            slots.append(None)
            continue
        sym = np.repeat(np.arange(alphabet), freq)
        start = np.concatenate(([0], np.cumsum(freq)[:-1]))
        slots.append((sym.tolist(), freq.tolist(), start.tolist()))
    if pos + 4 > len(data):
        raise bad
    (r_len,) = _U32.unpack_from(data, pos)
    pos += 4
    if r_len < 12 or pos + r_len > len(data):
        raise bad
    stream = data[pos : pos + r_len]
    bits = _Bits(data[pos + r_len :])
    states = list(struct.unpack_from("<3I", stream, 0))
    rpos = 12
    if any(s < _L for s in states):
        raise bad

    def get(lane: int, table: int) -> int:
        nonlocal rpos
        tab = slots[table]
        if tab is None:
            raise bad
        s = states[lane]
        slot = s & ((1 << pb) - 1)
        sym = tab[0][slot]
        s = tab[1][sym] * (s >> pb) + slot - tab[2][sym]
        if s < _L:
            if rpos + 2 > r_len:
                raise bad
            s = (s << 16) | stream[rpos] | (stream[rpos + 1] << 8)
            rpos += 2
        states[lane] = s
        return sym

    zig, deltas = bool(flags & ZIGZAG), bool(flags & DELTAS)
    ts: list[int] = []
    xs: list[int] = []
    ys: list[int] = []
    ps: list[int] = []
    t = x = y = 0
    prev_cls = 0
    for i in range(n):
        z = _untoken(get(0, prev_cls), _T_K, bits)
        cls = 0 if z == 0 else (1 if z < 16 else 2)
        d = ((z >> 1) ^ -(z & 1)) if zig else z
        if i == 0 and d:
            raise DataError("rans block: the first delta is not 0 (corrupt file)")
        t = ((t + d + (1 << 63)) & _MASK64) - (1 << 63)
        vx = _untoken(get(1, 3 + cls), _C_K, bits)
        cy = (0 if vx == 0 else (1 if vx in (1, width - 1) else 2)) if deltas else None
        if deltas and i:
            if vx >= width:
                raise DataError("rans block: pixel outside the sensor (corrupt file)")
            x = (x + vx) % width
        else:
            x = vx
        if x >= width:
            raise DataError("rans block: pixel outside the sensor (corrupt file)")
        if cy is None:
            cy = x * 3 // width
        s = get(2, 6 + cy)
        vy = _untoken(s >> 1, _C_K, bits)
        if deltas and i:
            if vy >= height:
                raise DataError("rans block: pixel outside the sensor (corrupt file)")
            y = (y + vy) % height
        else:
            y = vy
        if y >= height:
            raise DataError("rans block: pixel outside the sensor (corrupt file)")
        ts.append(t)
        xs.append(x)
        ys.append(y)
        ps.append(s & 1)
        prev_cls = cls
    if states != [_L, _L, _L] or rpos != r_len or bits.left >= 8 or bits.read(bits.left):
        raise DataError("rans block: the data does not end where it should (corrupt file)")
    return ts, xs, ys, ps


def decode_block(
    payload: bytes | memoryview,
    info: BlockInfo,
    width: int,
    height: int,
    out: np.ndarray,
    *,
    native: bool | None = None,
) -> None:
    """Decode one block into ``out`` [info.n] (EVENT_DTYPE), checking its CRC-32 first.

    ``native``: True uses the compiled decoder (DataError when it cannot be had), False the
    Python reference, None the compiled one when available; both give the same events."""
    check_block(info, "block")
    check_payload(payload, info, "rans")
    if zlib.crc32(payload) != info.crc:
        raise DataError("rans block: checksum mismatch (the file is corrupt)")
    lib = ctx_native.coder("rans", native)
    n = info.n
    if lib is not None:
        data = np.frombuffer(payload, dtype=np.uint8)
        direct = out.dtype == EVENT_DTYPE and out.flags.c_contiguous and out.size == n
        dest = out if direct else np.empty(n, dtype=EVENT_DTYPE)
        need = lib.sf_rans_workspace(data.size)
        work = getattr(_LOCAL, "work", None)
        if work is None or work.size < need:
            work = _LOCAL.work = np.empty(need, dtype=np.uint8)
        rc = lib.sf_rans_decode(
            data.ctypes.data, data.size, n, width, height, info.flags, info.t_first,
            dest.ctypes.data, work.ctypes.data, work.size,
        )  # fmt: skip
        if rc == 2:
            raise DataError("rans block: decoder workspace too small")
        if rc:
            raise DataError("rans block: invalid rANS data (corrupt file)")
        if not direct:
            out[...] = dest
        return
    ts, xs, ys, ps = _decode_python(bytes(payload), n, width, height, info.flags)
    t = np.array(ts, dtype=np.int64)
    with np.errstate(over="ignore"):
        t += np.int64(info.t_first)
    out["t"] = t
    out["x"] = xs
    out["y"] = ys
    out["p"] = ps
