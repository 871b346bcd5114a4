"""The ``.sfev`` event container: a lossless, column-wise codec for event-camera recordings.

Events (numpy structured arrays of :data:`spikeweave.data.events.EVENT_DTYPE`: ``t`` int64 µs,
``x``/``y`` uint16, ``p`` uint8) are split into columns, each column is modelled so that its
bytes are close to independent and skewed, and every column is compressed on its own with
zstd or LZMA (stdlib). ``docs/compression.md`` documents the byte layout; in short::

    magic (8) | version u16 | flags u16 | width u32 | height u32 | n_events u64 | t0 i64
    | n_streams u8 | n_streams × (tag u8, codec u8, param u8, raw_len u64, comp_len u64,
    raw_crc32 u32) | header_crc32 u32 | payloads in table order

Streams (``tag``):

- ``T``: timestamp deltas ``t[i] - t[i-1]`` (``d[0] = 0``; zigzag-coded only when some delta is
  negative), stored as fixed-width big-endian words of ``param & 0x7F`` bytes (1, 2 or 4;
  ``param & 0x80`` marks zigzag); the all-ones word is an escape whose value is the next entry
  of ``E``.
- ``E``: the escaped deltas, big-endian words of ``param`` bytes (absent when there are none).
- ``X``/``Y``: coordinates, one byte each when the sensor is at most 256 wide/high, else
  big-endian uint16.
- ``P``: polarity, predicted per pixel (the pixel's previous polarity; 0 for its first event),
  stored as the bit-packed prediction errors. Decoding recovers it without a per-event loop: a
  pixel's polarity is the running parity of its errors.
- ``M``: UTF-8 JSON metadata (sampled files: rate, window, sampler, original event count).

Format version 2 (written by ``codec="ctx"`` only; the other codecs still write version 1, which
version-2 readers read as before) replaces the column streams by two: ``B``, the block index
(raw; one :data:`spikeweave.compression.ctxcode.BLOCK` record per block of at most 65536
events: count, first/min/max timestamp, payload length, CRC-32 of the decoded columns, flags)
and ``A``, the blocks' context-model range-coded payloads in order (its table CRC-32 covers the
payload bytes; see :mod:`spikeweave.compression.ctxcode`). Blocks decode on their own, which is
what random access by time (``from_us``/``to_us``) uses.

Format version 3 (``codec="ctx3"``) has the same two streams and block index; its blocks are
coded by :mod:`spikeweave.compression.ctx3code` (per-symbol adaptive binary range coding, a
compiled encoder and decoder with a Python reference of the same bitstream; codec id 4).

Format version 4 (``codec="rans"``) has the same two streams and block index; its blocks are
coded by :mod:`spikeweave.compression.ranscode` (per-block static frequency tables and three
interleaved rANS states: larger files than ``ctx3``, several times faster decoding; codec
id 5). Readers of version 4 read versions 1-3 as before.

Why these choices (measured on the N-MNIST and AEDAT4 samples): coding x and y apart beats a
joint pixel index by 7 %; one-byte deltas with escapes are as small as two-byte words and
decode faster; zigzag on ordered timestamps would cost 5 % of ``T``. zstd (default) gets
multi-byte words as byte planes, since it Huffman-codes literals without position context;
LZMA gets ``lc=0, lp=pb=log2(word width)`` so each byte position has its own adaptive model.
Every stream carries a CRC-32 of its decoded bytes, the header its own CRC-32.
"""

from __future__ import annotations

import json
import lzma
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.events import EVENT_DTYPE, make_events
from ..errors import ConfigError, DataError
from . import ctx3code, ctxcode, ranscode

__all__ = [
    "MAGIC",
    "VERSION",
    "CODECS",
    "Header",
    "StreamInfo",
    "encode_events",
    "decode_events",
    "read_header",
    "iter_events",
    "MAX_RATIO",
    "select_time",
    "resolve_codec",
]

MAGIC = b"\x89SFEV\r\n\x1a"
"""8 bytes: a non-ASCII first byte and CR LF / Ctrl-Z catch text-mode transfers (as PNG does)."""
VERSION = 4
FLAG_SAMPLED = 1
ZIGZAG = 0x80
"""Bit of the ``T`` stream's param: deltas are zigzag-coded (some are negative)."""

CODECS = {"raw": 0, "lzma": 1, "zstd": 2, "ctx": 3, "ctx3": 4, "rans": 5}
_CODEC_NAMES = {v: k for k, v in CODECS.items()}

_FIXED = struct.Struct("<8sHHIIQqB")
_ENTRY = struct.Struct("<BBBQQI")
_CRC = struct.Struct("<I")

# LZMA1 raw with a small dictionary and a shallow match finder: the streams have few long
# matches, so deep searching costs time and saves < 2 % (measured on the AEDAT4 sample).
_LZMA_OPTIONS = dict(preset=6, mode=lzma.MODE_NORMAL, mf=lzma.MF_HC4, nice_len=16, depth=4)
# Level 15: on the AEDAT4 sample levels 15-22 give the same size (+-0.1 %), and 15 compresses
# 3.6x faster than 19 (2.6 vs 0.7 M events/s on one core); below 15 the size grows 5 %.
_ZSTD_LEVEL = 15

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` in raw (uncompressed) stream bytes."""

_CTX_RAW = 13
"""Raw bytes per event of a ``ctx`` stream's declared size (t 8, x 2, y 2, p 1)."""
MAX_RATIO = {
    "raw": 1,
    "lzma": 8192,
    "zstd": 32768,
    "ctx": _CTX_RAW * ctxcode.MAX_EVENTS_PER_BYTE,
    "ctx3": _CTX_RAW * ctx3code.MAX_EVENTS_PER_BYTE,
    "rans": _CTX_RAW * ranscode.MAX_EVENTS_PER_BYTE,
}
"""The most raw bytes one compressed byte can decode to, per codec: a stream declaring more is
refused before anything is allocated. zstd: a block holds at most 128 KiB and the smallest
block (RLE) is 4 bytes (RFC 8878, 3.1.1.2), so 32768. LZMA: a match is at most 273 bytes and
costs at least 14 binary decisions, each at least log2(2048/2017) bits with 11-bit
probabilities and shift-5 updates, so < 7100 (7068 measured on zeros); 8192 leaves margin.
ctx: at most :data:`~spikeweave.compression.ctxcode.MAX_EVENTS_PER_BYTE` events (13 raw bytes
each) per compressed byte, since every model caps its likeliest symbol at 4095/4096; ctx3
and rans likewise with their own ``MAX_EVENTS_PER_BYTE``."""
MAX_META_BYTES = 1 << 20
"""The ``M`` stream (JSON metadata) is at most 1 MiB; ours are ~300 bytes."""
_WHOLE_STREAM = 8 << 20
"""Streams up to 8 MiB (raw) are decoded in one piece; longer ones in pieces, so decoding a
large file never holds a whole stream."""
CHUNK_EVENTS = 1 << 19
"""Events per piece when a file is decoded in pieces (:func:`iter_events`): ~7 MB of events."""


@dataclass(frozen=True)
class StreamInfo:
    """One stream of the table: its tag, codec, parameter and sizes (bytes)."""

    tag: str
    codec: str
    param: int
    raw_len: int
    comp_len: int
    crc32: int


@dataclass(frozen=True)
class Header:
    """The parsed header: sensor ``(width, height)``, event count, first timestamp (µs)."""

    version: int
    flags: int
    width: int
    height: int
    n_events: int
    t0: int
    streams: tuple[StreamInfo, ...]
    header_len: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def sampled(self) -> bool:
        return bool(self.flags & FLAG_SAMPLED)

    @property
    def file_len(self) -> int:
        return self.header_len + sum(s.comp_len for s in self.streams)


# -- stream codecs ----------------------------------------------------------------------------


def _lzma_filters(param: int, raw_len: int) -> list[dict[str, Any]]:
    """LZMA1 settings for a stream of ``raw_len`` bytes of ``param``-byte words.

    ``lp = pb = log2(word width)`` gives each byte position of a word its own literal model;
    the dictionary is sized to the stream (4 KiB .. 1 MiB), since initialising a 1 MiB match
    finder costs more than compressing a 5 KB N-MNIST stream. Both sides derive it from
    ``raw_len``, so it need not be stored.
    """
    lp = {1: 0, 2: 1, 4: 2, 8: 3}.get(param & 0x7F, 0)
    dict_size = min(max(1 << max(raw_len - 1, 1).bit_length(), 1 << 12), 1 << 20)
    return [dict(id=lzma.FILTER_LZMA1, lc=0, lp=lp, pb=lp, dict_size=dict_size, **_LZMA_OPTIONS)]


def _progress_counter(progress: Progress | None, total: int) -> Callable[[int], None]:
    """``tick(count)``: adds ``count`` raw bytes to a running total and reports
    ``progress(done, total)`` (nothing without ``progress``)."""
    done = 0

    def tick(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, total)

    return tick


_CHUNK = 4 << 20  # bytes fed to a compressor per call, so a progress bar can move


def _compress(raw: bytes, codec: str, param: int, tick: Callable[[int], None]) -> bytes:
    """Compress one stream; ``tick(n)`` is called after each ``n`` input bytes."""
    if codec == "raw":
        tick(len(raw))
        return raw
    if codec == "lzma":
        comp: Any = lzma.LZMACompressor(
            format=lzma.FORMAT_RAW, filters=_lzma_filters(param, len(raw))
        )
    else:
        zstd = _zstd()
        width = param & 0x7F
        if width > 1:
            # zstd codes literals with one Huffman table per block and no position context,
            # so multi-byte words go in as byte planes (all high bytes, then all low bytes).
            raw = np.frombuffer(raw, np.uint8).reshape(-1, width).T.tobytes()
        comp = zstd.ZstdCompressor(level=_ZSTD_LEVEL, write_checksum=False).compressobj(
            size=len(raw)
        )
    parts = []
    for start in range(0, len(raw), _CHUNK):
        parts.append(comp.compress(raw[start : start + _CHUNK]))
        tick(min(_CHUNK, len(raw) - start))
    parts.append(comp.flush())
    return b"".join(parts)


def _decompress(comp: bytes | memoryview, info: StreamInfo) -> bytes | memoryview:
    """Decompress one stream, never producing more than ``info.raw_len`` bytes."""
    where = f"stream {info.tag!r}"
    if info.codec == "raw":
        out = comp
    elif info.codec == "lzma":
        dec = lzma.LZMADecompressor(
            format=lzma.FORMAT_RAW, filters=_lzma_filters(info.param, info.raw_len)
        )
        try:
            out = dec.decompress(comp, max_length=info.raw_len)
        except lzma.LZMAError as exc:
            raise DataError(f"{where}: corrupt LZMA data ({exc})") from None
        # LZMA1 raw streams end with an end marker; without it the payload was cut short.
        if not dec.eof and len(out) == info.raw_len:
            try:
                out += dec.decompress(b"", max_length=1)
            except lzma.LZMAError as exc:
                raise DataError(f"{where}: corrupt LZMA data ({exc})") from None
        if not dec.eof:
            raise DataError(f"{where}: truncated or corrupt LZMA data")
    else:
        zstd = _zstd()
        try:
            # decompress() allocates the size the frame declares and ignores max_output_size,
            # so a frame claiming more than the (ratio-checked) raw_len is refused first.
            size = zstd.frame_content_size(comp)
            if size not in (-1, info.raw_len):
                raise DataError(
                    f"{where}: the zstd frame declares {size} bytes, the header {info.raw_len} "
                    "(corrupt file)"
                )
            if size == info.raw_len:
                out = _zstd_decompressor().decompress(comp)
            else:  # no declared size: read at most one byte more than the header says
                try:
                    out = _ZstdPiece(comp, 0).read(info.raw_len + 1)
                except DataError as exc:
                    raise DataError(f"{where}: {exc}") from None
        except zstd.ZstdError as exc:
            raise DataError(f"{where}: corrupt zstd data ({exc})") from None
        width = info.param & 0x7F
        if width > 1 and len(out) == info.raw_len and info.raw_len % width == 0:
            out = np.frombuffer(out, np.uint8).reshape(width, -1).T.tobytes()
    if len(out) != info.raw_len:
        raise DataError(f"{where}: decodes to {len(out)} bytes, the header says {info.raw_len}")
    if zlib.crc32(out) != info.crc32:
        raise DataError(f"{where}: checksum mismatch (the file is corrupt)")
    return out


class _ZstdPiece:
    """The decoded bytes of a zstd frame, read front to back from byte ``skip`` on, in pieces
    of bounded size (never the whole frame at once)."""

    def __init__(self, comp: bytes | memoryview, skip: int) -> None:
        self._zstd = _zstd()
        # A reader of its own: several read one frame at once (one per byte plane).
        self._reader = self._zstd.ZstdDecompressor().stream_reader(comp, read_across_frames=False)
        while skip > 0:
            got = len(self.read(min(skip, _CHUNK)))
            if not got:
                break
            skip -= got

    def read(self, n: int) -> bytes:
        parts, got = [], 0
        while got < n:
            try:
                part = self._reader.read(n - got)
            except self._zstd.ZstdError as exc:
                raise DataError(f"corrupt zstd data ({exc})") from None
            if not part:
                break
            parts.append(part)
            got += len(part)
        return b"".join(parts)


class _LzmaPiece:
    """The decoded bytes of an LZMA1 raw stream, read front to back in bounded pieces."""

    def __init__(self, comp: bytes | memoryview, info: StreamInfo) -> None:
        self._dec = lzma.LZMADecompressor(
            format=lzma.FORMAT_RAW, filters=_lzma_filters(info.param, info.raw_len)
        )
        self._input = bytes(comp)  # handed over on the first read; the decoder keeps the rest

    def read(self, n: int) -> bytes:
        parts, got = [], 0
        while got < n and not self._dec.eof:
            data, self._input = self._input, b""
            if not data and self._dec.needs_input:
                break  # out of input before the end marker: truncated
            try:
                part = self._dec.decompress(data, max_length=n - got)
            except lzma.LZMAError as exc:
                raise DataError(f"corrupt LZMA data ({exc})") from None
            if not part and not data:
                break
            parts.append(part)
            got += len(part)
        return b"".join(parts)

    @property
    def eof(self) -> bool:
        return self._dec.eof


class _Stream:
    """One stream's decoded bytes, read front to back: never more than ``raw_len`` bytes are
    produced, and :meth:`close` checks that all of them were used, none more exist, and the
    CRC-32. Streams up to ``_WHOLE_STREAM`` bytes are decoded in one piece; longer ones in
    pieces (a zstd stream of ``w``-byte words through ``w`` readers, one per byte plane)."""

    def __init__(
        self, data: memoryview, offset: int, info: StreamInfo, tick: Callable[[int], None]
    ) -> None:
        self.info = info
        self._tick = tick
        self._pos = 0
        self._crc = 0
        self._whole: bytes | memoryview | None = None
        self._pieces: list[Any] = []
        comp = data[offset : offset + info.comp_len]
        if info.codec == "raw" or info.raw_len <= _WHOLE_STREAM:
            self._whole = _decompress(comp, info)
        elif info.codec == "lzma":
            self._pieces = [_LzmaPiece(comp, info)]
        else:
            width = max(info.param & 0x7F, 1)
            if info.raw_len % width:
                raise DataError(
                    f"stream {info.tag!r}: {info.raw_len} bytes is not a whole number of "
                    f"{width}-byte words (corrupt file)"
                )
            plane = info.raw_len // width
            try:
                self._pieces = [_ZstdPiece(comp, k * plane) for k in range(width)]
            except DataError as exc:
                raise DataError(f"stream {info.tag!r}: {exc}") from None

    def read(self, n: int) -> bytes | memoryview:
        """The next ``n`` decoded bytes (a multiple of the word width)."""
        info = self.info
        if self._pos + n > info.raw_len:
            raise DataError(
                f"stream {info.tag!r}: holds {info.raw_len} bytes, more are needed (corrupt file)"
            )
        if self._whole is not None:
            out = self._whole[self._pos : self._pos + n]
        else:
            w = len(self._pieces)
            try:
                parts = [piece.read(n // w) for piece in self._pieces]
            except DataError as exc:
                raise DataError(f"stream {info.tag!r}: {exc}") from None
            if any(len(part) != n // w for part in parts):
                raise DataError(f"stream {info.tag!r}: truncated or corrupt data")
            if w == 1:
                out = parts[0]
            else:  # byte planes back to words: word i is byte i of every plane
                planes = [np.frombuffer(part, np.uint8) for part in parts]
                out = np.stack(planes, axis=1).tobytes()
            self._crc = zlib.crc32(out, self._crc)
        self._pos += n
        self._tick(n)
        return out

    def close(self) -> None:
        """Check that every declared byte was used, that no more follow, and the CRC-32."""
        info = self.info
        where = f"stream {info.tag!r}"
        if self._pos != info.raw_len:
            raise DataError(
                f"{where}: {info.raw_len - self._pos} of its {info.raw_len} bytes are left over "
                "(corrupt file)"
            )
        if self._whole is not None:
            return
        last = self._pieces[-1]
        try:
            extra = last.read(1)
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None
        if extra:
            raise DataError(f"{where}: decodes to more than the {info.raw_len} bytes declared")
        if isinstance(last, _LzmaPiece) and not last.eof:
            raise DataError(f"{where}: truncated or corrupt LZMA data")
        if self._crc != info.crc32:
            raise DataError(f"{where}: checksum mismatch (the file is corrupt)")


_LOCAL = threading.local()


def _zstd_decompressor() -> Any:
    """One zstd decompressor per thread: creating one costs ~20 µs, which was half the time of
    decoding a 3 k-event N-MNIST file (five streams)."""
    dctx = getattr(_LOCAL, "dctx", None)
    if dctx is None:
        dctx = _LOCAL.dctx = _zstd().ZstdDecompressor()
    return dctx


def _zstd() -> Any:
    try:
        import zstandard
    except ImportError:
        raise DataError(
            "zstd streams need the 'zstandard' package: pip install zstandard"
        ) from None
    return zstandard


# -- column models ----------------------------------------------------------------------------


def _pixel_groups(
    x: np.ndarray, y: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(order, new)``: ``order`` [N] groups events by pixel (row-major), keeping time order
    within a pixel (a stable sort); ``new`` [N] bool marks the first sorted event of a pixel."""
    n = x.size
    new = np.ones(n, dtype=bool)
    if width * height <= 1 << 16:
        # numpy's stable sort of 16-bit keys is a radix sort: one pass over a pixel index.
        key = (y.astype(np.uint32) * width + x).astype(np.uint16)
        order = np.argsort(key, kind="stable")
        ks = key[order]
        np.not_equal(ks[1:], ks[:-1], out=new[1:])
        return order, new
    # Larger sensors: two stable 16-bit radix sorts (x, then y) instead of a merge sort of a
    # 32-bit index, 4x faster on the 320x240 AEDAT4 sample.
    by_x = np.argsort(x.astype(np.uint16, copy=False), kind="stable")
    order = by_x[np.argsort(y.astype(np.uint16, copy=False)[by_x], kind="stable")]
    xs, ys = x[order], y[order]
    new[1:] = (xs[1:] != xs[:-1]) | (ys[1:] != ys[:-1])
    return order, new


def _polarity_errors(
    x: np.ndarray, y: np.ndarray, p: np.ndarray, width: int, height: int
) -> np.ndarray:
    """``p`` XOR the pixel's previous polarity (0 before its first event); uint8 [N]."""
    order, new = _pixel_groups(x, y, width, height)
    ps = p[order]
    prev = np.zeros_like(ps)
    prev[1:] = ps[:-1]
    prev[new] = 0
    err = np.empty_like(ps)
    err[order] = ps ^ prev
    return err


def _polarity_from_errors(
    x: np.ndarray, y: np.ndarray, err: np.ndarray, width: int, height: int
) -> np.ndarray:
    """Inverse of :func:`_polarity_errors`: the running parity of each pixel's errors."""
    n = err.size
    if not n:
        return err.copy()
    order, new = _pixel_groups(x, y, width, height)
    return ctxcode.running_parity(err, order, new)


def _zigzag(d: np.ndarray) -> np.ndarray:
    return ((d << 1) ^ (d >> 63)).view(np.uint64)


def _unzigzag(z: np.ndarray) -> np.ndarray:
    return (z >> np.uint64(1)).view(np.int64) ^ -(z & np.uint64(1)).view(np.int64)


def _delta_width(z: np.ndarray) -> int:
    """Word width (bytes) for the ``T`` stream: the smallest of 1, 2, 4 that holds at least
    7/8 of the deltas below the escape word.

    Why 7/8 and not 99 %: the LZMA decoder spends the same time on every byte, and an escape
    only moves the rare high bytes to the ``E`` stream. On N-MNIST (mean gap ~65 µs, ~10 %
    above 254 µs) one-byte words plus escapes are as small as two-byte words and decode faster.
    """
    if not z.size:
        return 1
    for width in (1, 2):
        if np.count_nonzero(z >= (1 << (8 * width)) - 1) <= z.size // 8:
            return width
    return 4


_WORD = {1: "u1", 2: ">u2", 4: ">u4", 8: ">u8"}


def _escape_width(values: np.ndarray) -> int:
    """The smallest of 1, 2, 4, 8 bytes holding every escaped delta (big-endian words)."""
    top = int(values.max()) if values.size else 0
    return next(w for w in (1, 2, 4, 8) if w == 8 or top < 1 << (8 * w))


def _coord(v: np.ndarray, size: int) -> tuple[bytes, int]:
    if size <= 256:
        return v.astype(np.uint8).tobytes(), 1
    return v.astype(">u2").tobytes(), 2


def resolve_codec(codec: str) -> str:
    """``codec``, with ``"auto"`` (the default of ``spikeweave compress``) resolved: ``"ctx3"``
    where its compiled coder can be had (smaller than every other codec on the real
    recordings, and faster than zstd at compressing), else ``"zstd"`` (the Python ctx3
    reference codes ~0.01 M events/s, too slow to be a default)."""
    if codec != "auto":
        return codec
    from . import ctx_native

    return "ctx3" if ctx_native.library("ctx3") is not None else "zstd"


# -- encode / decode --------------------------------------------------------------------------


def encode_events(
    events: np.ndarray,
    sensor_size: tuple[int, int],
    *,
    codec: str = "zstd",
    meta: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> bytes:
    """Compress ``events`` [N] (:data:`EVENT_DTYPE`) losslessly into ``.sfev`` bytes.

    ``sensor_size`` is ``(width, height)`` in pixels; every event must lie inside it.
    ``codec`` is ``"zstd"`` (default: decodes 2-3x faster than lzma), ``"lzma"`` (2-3 %
    smaller), ``"ctx"`` (context-model range coding, format version 2: the smallest files
    and random access by time, but ~30x slower), ``"ctx3"`` (format version 3: per-symbol
    adaptive coding with a compiled coder, smaller than ``ctx`` and faster than zstd where a C
    compiler is found, else a slow Python reference), ``"rans"`` (format version 4: static
    per-block tables and interleaved rANS, larger than ``ctx3`` but decoding several times
    faster; also random access by time) or ``"raw"`` (no compression, for
    debugging). ``meta``
    (JSON-serialisable) is stored in an ``M`` stream and marks the file as sampled.
    """
    if codec not in CODECS:
        raise ConfigError(f"unknown codec {codec!r}; choose one of {', '.join(CODECS)}")
    events = np.asarray(events)
    if events.dtype != EVENT_DTYPE:
        raise ConfigError(f"events must have dtype {EVENT_DTYPE}, got {events.dtype}")
    width, height = (int(v) for v in sensor_size)
    if not (0 < width < 1 << 16 and 0 < height < 1 << 16):
        raise ConfigError(f"sensor size {width}x{height} out of range (1..65535 per side)")
    n = events.size
    t = events["t"]
    x = events["x"]
    y = events["y"]
    p = events["p"]
    if n and (int(x.max()) >= width or int(y.max()) >= height):
        raise ConfigError(f"events fall outside the {width}x{height} sensor")
    if n and int(p.max()) > 1:
        raise ConfigError("polarity must be 0 or 1")
    if codec in _BLOCK_CODERS:
        return _encode_ctx(events, width, height, meta, progress, codec)
    t0 = int(t[0]) if n else 0
    d = np.empty(n, dtype=np.int64)
    if n:
        d[0] = 0
        np.subtract(t[1:], t[:-1], out=d[1:])
    # Recordings are time-ordered, so deltas are >= 0 and need no zigzag (which would double
    # them and cost ~5 % of the T stream on N-MNIST); only unordered input pays for the sign.
    signed = bool(n) and bool((d < 0).any())
    z = _zigzag(d) if signed else d.view(np.uint64)
    w = _delta_width(z)
    esc_word = (1 << (8 * w)) - 1
    escaped = z >= esc_word
    words = np.where(escaped, np.uint64(esc_word), z)
    streams: list[tuple[str, bytes, int]] = [
        (
            "T",
            words.astype(_WORD[w]).tobytes(),
            w | (ZIGZAG if signed else 0),
        )
    ]
    if escaped.any():
        ew = _escape_width(z[escaped])
        streams.append(("E", z[escaped].astype(_WORD[ew]).tobytes(), ew))
    xb, xw = _coord(x, width)
    yb, yw = _coord(y, height)
    streams += [("X", xb, xw), ("Y", yb, yw)]
    streams.append(("P", np.packbits(_polarity_errors(x, y, p, width, height)).tobytes(), 1))
    if meta is not None:
        streams.append(("M", json.dumps(meta, sort_keys=True).encode(), 1))

    entries = []
    payloads = []
    total = sum(len(raw) for _, raw, _ in streams)
    tick = _progress_counter(progress, total)

    for tag, raw, param in streams:
        comp = _compress(raw, codec, param, tick) if raw else b""
        stream_codec = codec if raw else "raw"
        if len(comp) >= len(raw):  # incompressible (or tiny): store as is
            comp, stream_codec = raw, "raw"
        entries.append(
            _ENTRY.pack(ord(tag), CODECS[stream_codec], param, len(raw), len(comp), zlib.crc32(raw))
        )
        payloads.append(comp)
    flags = FLAG_SAMPLED if meta is not None else 0
    head = _FIXED.pack(MAGIC, 1, flags, width, height, n, t0, len(entries)) + b"".join(entries)
    return head + _CRC.pack(zlib.crc32(head)) + b"".join(payloads)


_BLOCK_CODERS: dict[str, Any] = {"ctx": ctxcode, "ctx3": ctx3code, "rans": ranscode}
"""The block-coded codecs: their coder module (encode_block, decode_block, check_block,
BLOCK_EVENTS) and the format version they write."""
_BLOCK_VERSION = {"ctx": 2, "ctx3": 3, "rans": 4}
_VERSION_CODEC = {v: k for k, v in _BLOCK_VERSION.items()}


def _encode_ctx(
    events: np.ndarray,
    width: int,
    height: int,
    meta: dict[str, Any] | None,
    progress: Progress | None,
    codec: str = "ctx",
) -> bytes:
    """Version-2/3 bytes: block index ``B``, range-coded blocks ``A``, optional metadata ``M``."""
    n = events.size
    coder = _BLOCK_CODERS[codec]
    step = coder.BLOCK_EVENTS
    records, payloads = [], []
    for start in range(0, n, step):
        info, payload = coder.encode_block(events[start : start + step], width, height)
        records.append(info.pack())
        payloads.append(payload)
        if progress is not None:
            progress(min(start + step, n) * _CTX_RAW, n * _CTX_RAW)
    index, body = b"".join(records), b"".join(payloads)
    table = [
        _ENTRY.pack(ord("B"), CODECS["raw"], 1, len(index), len(index), zlib.crc32(index)),
        _ENTRY.pack(ord("A"), CODECS[codec], 1, n * _CTX_RAW, len(body), zlib.crc32(body)),
    ]
    parts = [index, body]
    if meta is not None:
        m = json.dumps(meta, sort_keys=True).encode()
        table.append(_ENTRY.pack(ord("M"), CODECS["raw"], 1, len(m), len(m), zlib.crc32(m)))
        parts.append(m)
    t0 = int(events["t"][0]) if n else 0
    flags = FLAG_SAMPLED if meta is not None else 0
    version = _BLOCK_VERSION[codec]
    head = _FIXED.pack(MAGIC, version, flags, width, height, n, t0, len(table)) + b"".join(table)
    return head + _CRC.pack(zlib.crc32(head)) + b"".join(parts)


def read_header(data: bytes) -> Header:
    """Parse and check the header of ``.sfev`` bytes (without decoding the streams).

    Raises :class:`DataError` for a file that is not ``.sfev``, is of a newer version, is
    truncated, or whose header checksum does not match.
    """
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise DataError("not a spikeweave event file (.sfev): wrong magic number")
    if len(data) < _FIXED.size:
        raise DataError(f"truncated: {len(data)} bytes, the header alone needs {_FIXED.size}")
    _, version, flags, width, height, n, t0, n_streams = _FIXED.unpack_from(data)
    if version > VERSION:
        raise DataError(
            f"format version {version} is newer than this spikeweave reads ({VERSION}); "
            "upgrade spikeweave"
        )
    if version < 1:
        raise DataError(f"invalid format version {version}")
    header_len = _FIXED.size + n_streams * _ENTRY.size + _CRC.size
    if len(data) < header_len:
        raise DataError(f"truncated: {len(data)} bytes, the header needs {header_len}")
    (crc,) = _CRC.unpack_from(data, header_len - _CRC.size)
    if zlib.crc32(data[: header_len - _CRC.size]) != crc:
        raise DataError("header checksum mismatch (the file is corrupt)")
    streams = []
    for i in range(n_streams):
        tag, codec, param, raw_len, comp_len, scrc = _ENTRY.unpack_from(
            data, _FIXED.size + i * _ENTRY.size
        )
        if codec not in _CODEC_NAMES:
            raise DataError(f"stream {i}: unknown codec id {codec}")
        info = StreamInfo(chr(tag), _CODEC_NAMES[codec], param, raw_len, comp_len, scrc)
        # Checked before anything is allocated: a stream cannot decode to more than its codec's
        # best ratio allows, so the file's own size bounds every size it declares.
        if raw_len > MAX_RATIO[info.codec] * comp_len:
            raise DataError(
                f"stream {info.tag!r} declares {raw_len} bytes from {comp_len} compressed, more "
                f"than {info.codec} can expand ({MAX_RATIO[info.codec]}x at most): corrupt or "
                "crafted file"
            )
        streams.append(info)
    if not (0 < width < 1 << 16 and 0 < height < 1 << 16):
        raise DataError(f"sensor size {width}x{height} out of range (corrupt file)")
    header = Header(version, flags, width, height, n, t0, tuple(streams), header_len)
    if len(data) < header.file_len:
        raise DataError(f"truncated: {len(data)} bytes of {header.file_len}")
    if len(data) > header.file_len:
        raise DataError(f"{len(data) - header.file_len} unexpected bytes after the last stream")
    return header


def _expect(header: Header, tag: str, length: int | None, params: tuple[int, ...]) -> StreamInfo:
    found = [s for s in header.streams if s.tag == tag]
    if len(found) != 1:
        raise DataError(f"expected one {tag!r} stream, found {len(found)} (corrupt file)")
    info = found[0]
    if info.param not in params:
        raise DataError(f"stream {tag!r}: invalid word width {info.param}")
    if length is not None and info.raw_len != length:
        raise DataError(
            f"stream {tag!r}: {info.raw_len} bytes, {length} expected for "
            f"{header.n_events} events (corrupt file)"
        )
    return info


def _layout(
    data: bytes | memoryview, header: Header | None = None
) -> tuple[Header, dict[str, StreamInfo], dict[str, int]]:
    """The checked header, the streams by tag (lengths checked against ``n_events``) and the
    offset of each stream's payload."""
    header = read_header(data) if header is None else header  # (one read_header of ``data``)
    n = header.n_events
    offsets = {}
    pos = header.header_len
    for s in header.streams:
        offsets[s.tag] = pos
        pos += s.comp_len
    if header.version >= 2:
        unknown = [s.tag for s in header.streams if s.tag not in ("B", "A", "M")]
        if unknown:
            raise DataError(f"unknown stream(s) {unknown} (corrupt file)")
        infos = {
            "B": _expect(header, "B", None, (1,)),
            "A": _expect(header, "A", n * _CTX_RAW, (1,)),
        }
        block_codec = _VERSION_CODEC[header.version]
        if infos["B"].codec != "raw" or infos["A"].codec != block_codec:
            raise DataError(
                f"version {header.version}: the block index must be raw, the blocks "
                f"{block_codec}-coded"
            )
        if infos["B"].raw_len % ctxcode.BLOCK.size:
            raise DataError("stream 'B': not a whole number of block records (corrupt file)")
        if any(s.tag == "M" for s in header.streams):
            infos["M"] = _expect(header, "M", None, (1, 8))
        return header, infos, offsets
    if any(s.codec in _BLOCK_CODERS for s in header.streams):
        raise DataError("version 1 files hold no ctx-coded streams (corrupt file)")
    widths = (1, 2, 4, 1 | ZIGZAG, 2 | ZIGZAG, 4 | ZIGZAG)
    tw = _expect(header, "T", None, widths)
    w = tw.param & 0x7F
    infos = {
        "T": _expect(header, "T", n * w, widths),
        "X": _expect(header, "X", n * (1 if header.width <= 256 else 2), (1, 2)),
        "Y": _expect(header, "Y", n * (1 if header.height <= 256 else 2), (1, 2)),
        "P": _expect(header, "P", (n + 7) // 8, (1,)),
    }
    known = {"T", "E", "X", "Y", "P", "M"}
    unknown = [s.tag for s in header.streams if s.tag not in known]
    if unknown:
        raise DataError(f"unknown stream(s) {unknown} (corrupt file)")
    if any(s.tag == "E" for s in header.streams):
        infos["E"] = _expect(header, "E", None, (1, 2, 4, 8))
        if infos["E"].raw_len % infos["E"].param:
            raise DataError("stream 'E': not a whole number of words (corrupt file)")
    if any(s.tag == "M" for s in header.streams):
        infos["M"] = _expect(header, "M", None, (1, 8))
    return header, infos, offsets


def _read_meta(data: memoryview, infos: dict[str, StreamInfo], offsets: dict[str, int]) -> dict:
    if "M" not in infos:
        return {}
    info = infos["M"]
    if info.raw_len > MAX_META_BYTES:
        raise DataError(
            f"stream 'M': {info.raw_len} bytes of metadata, at most {MAX_META_BYTES} allowed"
        )
    if info.codec == "ctx":
        raise DataError("stream 'M': metadata cannot be ctx-coded (corrupt file)")
    raw = bytes(_decompress(data[offsets["M"] : offsets["M"] + info.comp_len], info))
    try:
        meta = json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DataError("stream 'M': metadata is not valid JSON (corrupt file)") from None
    except RecursionError:
        raise DataError("stream 'M': metadata is nested too deeply (corrupt file)") from None
    if not isinstance(meta, dict):
        raise DataError("stream 'M': metadata is not a JSON object (corrupt file)")
    return meta


class _PixelParity:
    """The last polarity of every pixel seen so far (sorted pixel keys), carried from one piece
    of events to the next. Sparse, so a large declared sensor costs nothing."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, dtype=np.int64)
        self.vals = np.zeros(0, dtype=np.uint8)

    def _find(self, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i = np.searchsorted(self.keys, key)
        if not self.keys.size:
            return i, np.zeros(key.size, dtype=bool)
        return i, self.keys[np.minimum(i, self.keys.size - 1)] == key

    def apply(self, x: np.ndarray, y: np.ndarray, p_local: np.ndarray, width: int) -> np.ndarray:
        """Polarity of a piece whose ``p_local`` assumed 0 before each pixel's first event in
        the piece: a pixel's polarity is the running parity of its errors, so the carried
        polarity XORs in. Then remembers each pixel's last polarity."""
        key = y.astype(np.int64) * width + x
        i, found = self._find(key)
        p = p_local.copy()
        p[found] ^= self.vals[i[found]]
        uk, first_rev = np.unique(key[::-1], return_index=True)
        last = p[::-1][first_rev]
        i, found = self._find(uk)
        self.vals[i[found]] = last[found]
        self.keys = np.insert(self.keys, i[~found], uk[~found])
        self.vals = np.insert(self.vals, i[~found], last[~found])
        return p


_NEEDS = {"t": ("T", "E"), "x": ("X",), "y": ("Y",), "p": ("X", "Y", "P")}


def iter_events(
    data: bytes | memoryview,
    *,
    chunk_events: int = CHUNK_EVENTS,
    columns: str = "txyp",
    progress: Progress | None = None,
    from_us: int | None = None,
    to_us: int | None = None,
) -> tuple[Header, Iterator[np.ndarray]]:
    """``(header with meta, pieces)``: the events of ``.sfev`` bytes decoded in pieces of at
    most ``chunk_events`` events (EVENT_DTYPE, in file order), so memory stays bounded however
    many events the file holds. Only ``columns`` (of ``"txyp"``) are decoded; the others are
    0. Every stream needed is fully checked (length, CRC-32) once the last piece is taken; a
    file with no events gives one empty piece. Failures are :class:`DataError`.

    ``from_us``/``to_us`` keep only events with ``from_us <= t < to_us`` (µs; None: no bound),
    the same events as :func:`select_time` of the full decode. Version-2 to -4 files are
    decoded only in the blocks whose time span meets the range, one piece per block (at most
    65536 events, whatever ``chunk_events`` says); version-1 files are decoded whole, in
    pieces, and filtered."""
    view = memoryview(bytes(data) if not isinstance(data, bytes | memoryview) else data)
    header, infos, offsets = _open(view, from_us, to_us)
    if not set(columns) <= set(_NEEDS):
        raise ConfigError(f"columns must be some of 'txyp', got {columns!r}")
    ranged = from_us is not None or to_us is not None
    if header.version >= 2:
        blocks = _ctx_blocks(view, header, infos, offsets)
        return header, _ctx_pieces(view, header, blocks, columns, from_us, to_us, progress)
    decode = columns + ("t" if ranged and "t" not in columns else "")
    tags = sorted({t for c in decode for t in _NEEDS[c] if t in infos})
    total = sum(infos[t].raw_len for t in tags)
    chunk = max(8, -(-int(chunk_events) // 8) * 8)  # whole bytes of the packed P stream
    pieces = _pieces(view, header, infos, offsets, tags, decode, chunk, total, progress)
    if ranged:
        pieces = _filtered(pieces, columns, from_us, to_us)
    return header, pieces


def _open(
    view: memoryview, from_us: int | None, to_us: int | None, header: Header | None = None
) -> tuple[Header, dict[str, StreamInfo], dict[str, int]]:
    """:func:`_layout` with the metadata read into the header; the time range checked."""
    header, infos, offsets = _layout(view, header)
    meta = _read_meta(view, infos, offsets)
    header = Header(
        header.version,
        header.flags,
        header.width,
        header.height,
        header.n_events,
        header.t0,
        header.streams,
        header.header_len,
        meta,
    )
    if from_us is not None and to_us is not None and to_us < from_us:
        raise ConfigError(f"the time range ends ({to_us} us) before it starts ({from_us} us)")
    return header, infos, offsets


def select_time(events: np.ndarray, from_us: int | None, to_us: int | None) -> np.ndarray:
    """The events with ``from_us <= t < to_us`` (µs; None: no bound), in their order."""
    keep = np.ones(events.size, dtype=bool)
    if from_us is not None:
        keep &= events["t"] >= from_us
    if to_us is not None:
        keep &= events["t"] < to_us
    return events[keep]


def _filtered(
    pieces: Iterator[np.ndarray], columns: str, from_us: int | None, to_us: int | None
) -> Iterator[np.ndarray]:
    for events in pieces:
        events = select_time(events, from_us, to_us)
        if "t" not in columns:
            events["t"] = 0
        yield events


def _ctx_blocks(
    view: memoryview, header: Header, infos: dict[str, StreamInfo], offsets: dict[str, int]
) -> list[tuple[ctxcode.BlockInfo, int]]:
    """The checked block index of a version-2 to -4 file: ``[(record, payload offset)]``."""
    b, a = infos["B"], infos["A"]
    index = view[offsets["B"] : offsets["B"] + b.comp_len]
    if zlib.crc32(index) != b.crc32:
        raise DataError("stream 'B': checksum mismatch (the file is corrupt)")
    if zlib.crc32(view[offsets["A"] : offsets["A"] + a.comp_len]) != a.crc32:
        raise DataError("stream 'A': checksum mismatch (the file is corrupt)")
    blocks, pos, total = [], offsets["A"], 0
    for i in range(b.raw_len // ctxcode.BLOCK.size):
        info = ctxcode.BlockInfo.unpack(index, i * ctxcode.BLOCK.size)
        _coder(header).check_block(info, f"block {i}")
        blocks.append((info, pos))
        pos += info.comp_len
        total += info.n
    if total != header.n_events or pos != offsets["A"] + a.comp_len:
        raise DataError(
            f"the block index holds {total} events in {pos - offsets['A']} bytes, the header "
            f"says {header.n_events} in {a.comp_len} (corrupt file)"
        )
    if blocks and blocks[0][0].t_first != header.t0:
        raise DataError("the first block does not start at the header's t0 (corrupt file)")
    return blocks


def _coder(header: Header) -> Any:
    """The block coder module of a version-2, -3 or -4 file."""
    return _BLOCK_CODERS[_VERSION_CODEC[header.version]]


def _ctx_chosen(
    blocks: list[tuple[ctxcode.BlockInfo, int]], from_us: int | None, to_us: int | None
) -> list[tuple[ctxcode.BlockInfo, int]]:
    """The blocks whose time span meets ``[from_us, to_us)``."""
    lo = -(1 << 63) if from_us is None else from_us
    hi = (1 << 63) - 1 if to_us is None else to_us
    return [(info, pos) for info, pos in blocks if info.t_max >= lo and info.t_min < hi]


def _ctx_decode_all(
    view: memoryview,
    header: Header,
    from_us: int | None,
    to_us: int | None,
    progress: Progress | None,
    infos: dict[str, StreamInfo],
    offsets: dict[str, int],
) -> np.ndarray:
    """The events of the blocks covering ``[from_us, to_us)``, each block decoded straight
    into its slice of one array (joining per-block arrays cost ~20 ns an event, as much as
    decoding a rans block), then cut to the range."""
    blocks = _ctx_chosen(_ctx_blocks(view, header, infos, offsets), from_us, to_us)
    coder = _coder(header)
    total = sum(info.n for info, _ in blocks)
    tick = _progress_counter(progress, total * _CTX_RAW)
    events = np.empty(total, dtype=EVENT_DTYPE)
    start = 0
    for info, pos in blocks:
        try:
            coder.decode_block(
                view[pos : pos + info.comp_len], info, header.width, header.height,
                events[start : start + info.n],
            )  # fmt: skip
        except DataError as exc:
            raise DataError(f"block at t={info.t_first} us: {exc}") from None
        start += info.n
        tick(info.n * _CTX_RAW)
    if from_us is not None or to_us is not None:
        events = select_time(events, from_us, to_us)
    return events


def _ctx_pieces(
    view: memoryview,
    header: Header,
    blocks: list[tuple[ctxcode.BlockInfo, int]],
    columns: str,
    from_us: int | None,
    to_us: int | None,
    progress: Progress | None,
) -> Iterator[np.ndarray]:
    chosen = _ctx_chosen(blocks, from_us, to_us)
    coder = _coder(header)
    total = sum(info.n for info, _ in chosen) * _CTX_RAW
    tick = _progress_counter(progress, total)
    yielded = False
    for info, pos in chosen:
        events = make_events(info.n)
        try:
            coder.decode_block(
                view[pos : pos + info.comp_len], info, header.width, header.height, events
            )
        except DataError as exc:
            raise DataError(f"block at t={info.t_first} us: {exc}") from None
        if from_us is not None or to_us is not None:
            events = select_time(events, from_us, to_us)
        for col in "txyp":
            if col not in columns:
                events[col] = 0
        tick(info.n * _CTX_RAW)
        yielded = True
        yield events
    if not yielded:
        yield make_events(0)


def _pieces(
    view: memoryview,
    header: Header,
    infos: dict[str, StreamInfo],
    offsets: dict[str, int],
    tags: list[str],
    columns: str,
    chunk: int,
    total: int,
    progress: Progress | None,
) -> Iterator[np.ndarray]:
    tick = _progress_counter(progress, total)

    n = header.n_events
    streams = {t: _Stream(view, offsets[t], infos[t], tick) for t in tags}
    tp = infos["T"].param
    w = tp & 0x7F
    esc_word = (1 << (8 * w)) - 1
    ew = infos["E"].param if "E" in infos else 0
    sizes = {"X": header.width, "Y": header.height}
    parity = _PixelParity() if n > chunk and "p" in columns else None
    t_prev = header.t0
    start = 0
    while True:
        c = min(chunk, n - start)
        events = make_events(c)
        if "t" in columns:
            z = np.frombuffer(streams["T"].read(c * w), dtype=_WORD[w]).astype(np.uint64)
            esc = z == esc_word
            n_esc = int(np.count_nonzero(esc))
            if n_esc:
                if "E" not in streams:
                    raise DataError(
                        f"{n_esc} escaped timestamp deltas but no 'E' stream (corrupt file)"
                    )
                z[esc] = np.frombuffer(streams["E"].read(n_esc * ew), dtype=_WORD[ew])
            d = _unzigzag(z) if tp & ZIGZAG else z.view(np.int64)
            if c:
                if start == 0 and d[0] != 0:
                    raise DataError("the first timestamp delta is not 0 (corrupt file)")
                np.cumsum(d, out=events["t"])
                events["t"] += np.int64(t_prev)
                t_prev = int(events["t"][-1])
        for tag in ("X", "Y"):
            if tag in streams:
                size = sizes[tag]
                v = np.frombuffer(
                    streams[tag].read(c * (1 if size <= 256 else 2)),
                    dtype="u1" if size <= 256 else ">u2",
                )
                if c and int(v.max()) >= size:
                    raise DataError(
                        f"stream {tag!r}: coordinate {int(v.max())} outside {size} (corrupt)"
                    )
                events[tag.lower()] = v
        if "p" in columns:
            packed = np.frombuffer(streams["P"].read((c + 7) // 8), dtype=np.uint8)
            err = np.unpackbits(packed, count=c)
            x, y = events["x"], events["y"]
            p = _polarity_from_errors(x, y, err, header.width, header.height)
            events["p"] = parity.apply(x, y, p, header.width) if parity is not None else p
        for col in "xy":
            if col not in columns:
                events[col] = 0
        start += c
        if start >= n:
            for stream in streams.values():
                stream.close()
            yield events
            return
        yield events


def decode_events(
    data: bytes,
    progress: Progress | None = None,
    *,
    from_us: int | None = None,
    to_us: int | None = None,
) -> tuple[np.ndarray, Header]:
    """Decode ``.sfev`` bytes into ``(events [N] of EVENT_DTYPE, header)``, all in memory
    (:func:`iter_events` decodes in bounded pieces). ``from_us``/``to_us``: only the events
    with ``from_us <= t < to_us`` (version-2 to -4 files decode only the blocks covering it).

    Every failure (wrong magic, newer version, truncation, checksum, inconsistent streams,
    sizes no codec can produce) is a :class:`DataError` with a one-line message.
    """
    data = bytes(data)
    first = read_header(data)
    if first.version >= 2:  # block files: every block decoded into one array
        view = memoryview(data)
        header, infos, offsets = _open(view, from_us, to_us, first)
        events = _ctx_decode_all(view, header, from_us, to_us, progress, infos, offsets)
        return events, header
    n = first.n_events
    header, pieces = iter_events(
        data, chunk_events=max(n, 1), progress=progress, from_us=from_us, to_us=to_us
    )
    parts = list(pieces)
    events = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return events, header
