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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.events import EVENT_DTYPE, make_events
from ..errors import ConfigError, DataError

__all__ = [
    "MAGIC",
    "VERSION",
    "CODECS",
    "Header",
    "StreamInfo",
    "encode_events",
    "decode_events",
    "read_header",
]

MAGIC = b"\x89SFEV\r\n\x1a"
"""8 bytes: a non-ASCII first byte and CR LF / Ctrl-Z catch text-mode transfers (as PNG does)."""
VERSION = 1
FLAG_SAMPLED = 1
ZIGZAG = 0x80
"""Bit of the ``T`` stream's param: deltas are zigzag-coded (some are negative)."""

CODECS = {"raw": 0, "lzma": 1, "zstd": 2}
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


def _decompress(comp: bytes, info: StreamInfo) -> bytes:
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
            out = _zstd_decompressor().decompress(comp, max_output_size=info.raw_len)
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
    smaller) or ``"raw"`` (no compression, for debugging). ``meta``
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
    done = 0

    def tick(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, total)

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
    head = _FIXED.pack(MAGIC, VERSION, flags, width, height, n, t0, len(entries)) + b"".join(
        entries
    )
    return head + _CRC.pack(zlib.crc32(head)) + b"".join(payloads)


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
        streams.append(StreamInfo(chr(tag), _CODEC_NAMES[codec], param, raw_len, comp_len, scrc))
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


def decode_events(data: bytes, progress: Progress | None = None) -> tuple[np.ndarray, Header]:
    """Decode ``.sfev`` bytes into ``(events [N] of EVENT_DTYPE, header)``.

    Every failure (wrong magic, newer version, truncation, checksum, inconsistent streams) is a
    :class:`DataError` with a one-line message.
    """
    data = bytes(data)
    header = read_header(data)
    n = header.n_events
    offsets = {}
    pos = header.header_len
    for s in header.streams:
        offsets[s.tag] = pos
        pos += s.comp_len
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

    total = sum(s.raw_len for s in header.streams)
    done = 0

    def raw(tag: str) -> bytes:
        nonlocal done
        info = infos[tag] if tag in infos else _expect(header, tag, None, (1, 8))
        out = _decompress(data[offsets[tag] : offsets[tag] + info.comp_len], info)
        done += len(out)
        if progress is not None:
            progress(done, total)
        return out

    z = np.frombuffer(raw("T"), dtype=_WORD[w]).astype(np.uint64)
    esc = z == (1 << (8 * w)) - 1
    n_esc = int(np.count_nonzero(esc))
    has_e = any(s.tag == "E" for s in header.streams)
    if n_esc or has_e:
        if not has_e:
            raise DataError(f"{n_esc} escaped timestamp deltas but no 'E' stream (corrupt file)")
        ew = _expect(header, "E", None, (1, 2, 4, 8)).param
        infos["E"] = _expect(header, "E", n_esc * ew, (ew,))
        z[esc] = np.frombuffer(raw("E"), dtype=_WORD[ew])
    d = _unzigzag(z) if tw.param & ZIGZAG else z.view(np.int64)
    events = make_events(n)
    if n:
        if d[0] != 0:
            raise DataError("the first timestamp delta is not 0 (corrupt file)")
        np.cumsum(d, out=events["t"])
        events["t"] += header.t0
    for tag, size in (("X", header.width), ("Y", header.height)):
        v = np.frombuffer(raw(tag), dtype="u1" if size <= 256 else ">u2")
        if n and int(v.max()) >= size:
            raise DataError(f"stream {tag!r}: coordinate {int(v.max())} outside {size} (corrupt)")
        events[tag.lower()] = v
    err = np.unpackbits(np.frombuffer(raw("P"), dtype=np.uint8), count=n)
    events["p"] = _polarity_from_errors(events["x"], events["y"], err, header.width, header.height)
    meta: dict[str, Any] = {}
    if any(s.tag == "M" for s in header.streams):
        try:
            meta = json.loads(raw("M").decode())
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise DataError("stream 'M': metadata is not valid JSON (corrupt file)") from None
        if not isinstance(meta, dict):
            raise DataError("stream 'M': metadata is not a JSON object (corrupt file)")
    return events, Header(
        header.version,
        header.flags,
        header.width,
        header.height,
        n,
        header.t0,
        header.streams,
        header.header_len,
        meta,
    )
