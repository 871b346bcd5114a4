"""Event-camera file readers: one structured array per recording, decoded without per-event loops.

Every reader returns a numpy structured array of dtype :data:`EVENT_DTYPE`::

    t  int64   timestamp in microseconds (as stored: relative for N-MNIST and AEDAT 2/3,
               absolute Unix time for AEDAT 4)
    x  uint16  column, 0 at the sensor's left as the format defines it
    y  uint16  row
    p  uint8   polarity, 1 = ON (brightness up), 0 = OFF

Formats (see ``docs/data.md`` for the byte layouts):

- ``nmnist``: N-MNIST / N-Caltech101 ``.bin`` (SLAYER calls the same layout ``.bs2``): 5 bytes per
  event, ``x``, ``y``, then polarity (bit 39) and a 23-bit µs timestamp, big-endian bit order.
  An event with ``y == 240`` (one row below the 304×240 ATIS array) is a timestamp-overflow
  marker: it is not an event, and every later timestamp is 2**23 µs later.
- ``aedat2``: jAER AEDAT 2.0 (CIFAR10-DVS): ``#`` header lines, then big-endian
  ``int32 address, int32 timestamp`` pairs; DVS128 addressing (x = 127 - addr[7:1],
  y = addr[14:8], ON when addr[0] == 0; addresses with bit 15 set are external/special events
  and are skipped).
- ``aedat3``: AEDAT 3.1 (DVS128 Gesture): header ending ``#!END-HEADER``, then packets of a 28-byte
  little-endian header and ``eventCapacity × eventSize`` bytes; polarity packets (type 1) hold
  ``uint32 data, int32 timestamp`` events (valid bit 0, polarity bit 1, y bits 2-16,
  x bits 17-31; timestamp | eventTSOverflow << 31). Other packet types are skipped.
- ``aedat4``: AEDAT 4.0 (DV software) through the ``aedat`` package (a maintained Rust decoder);
  only packets of one event stream are kept (frames, IMU and trigger packets are skipped).

Every reader checks what it decodes: a file that is truncated, whose headers do not add up,
whose coordinates fall outside the sensor or whose timestamps go backwards raises
:class:`~spikeweave.errors.DataError` naming the file and, where it applies, the byte offset.
So does an empty recording (0 bytes, or no events once markers, special and invalid events are
dropped): binned, it would be an all-zero sample that a model can fit by its label alone.
Bit flips that turn one valid event into another valid event cannot be detected by any reader:
these formats carry no checksums.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError

__all__ = [
    "EVENT_DTYPE",
    "FORMATS",
    "SENSOR_SIZES",
    "read_events",
    "detect_format",
    "read_nmnist",
    "read_aedat2",
    "read_aedat3",
    "read_aedat4",
    "check_events",
    "make_events",
    "read_file",
]

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "u1")])
"""The one event layout every reader returns."""

FORMATS = ("nmnist", "aedat2", "aedat3", "aedat4")

SENSOR_SIZES: dict[str, tuple[int, int]] = {
    "nmnist": (34, 34),
    "atis": (304, 240),
    "dvs128": (128, 128),
    "davis240": (240, 180),
    "davis346": (346, 260),
    "dvxplorer": (640, 480),
    "dvxplorer-lite": (320, 240),
}
"""Known sensor sizes as ``(width, height)``."""

NMNIST_OVERFLOW_Y = 240
NMNIST_OVERFLOW_US = 1 << 23

_AEDAT3_HEADER = struct.Struct("<hhiiiiii")
_AEDAT3_POLARITY = 1
_AEDAT3_EVENT = np.dtype([("data", "<u4"), ("ts", "<i4")])

Where = Callable[[int], str]


def make_events(n: int = 0) -> np.ndarray:
    """An empty (zeroed) event array of length ``n``."""
    return np.zeros(n, dtype=EVENT_DTYPE)


def _err(path: Path | str, message: str) -> DataError:
    return DataError(f"{path}: {message}")


def _empty(path: Path | str, why: str) -> DataError:
    return _err(
        path,
        f"empty recording ({why}); re-extract or re-download the file, or remove it from the "
        "dataset",
    )


def _at_offsets(offsets: np.ndarray) -> Where:
    return lambda i: f"byte offset {int(offsets[i])}"


def check_events(
    path: Path | str,
    events: np.ndarray,
    sensor_size: tuple[int, int] | None,
    where: Where | None = None,
    strict: bool = True,
) -> np.ndarray:
    """Raise :class:`DataError` if coordinates leave ``sensor_size`` ``(width, height)`` or, with
    ``strict``, if timestamps decrease; without ``strict`` the events are sorted by time
    (stably). ``where(i)`` names the location of event ``i`` in the file."""
    where = where or (lambda i: f"event {i}")
    if sensor_size is not None and len(events):
        width, height = sensor_size
        bad = np.flatnonzero((events["x"] >= width) | (events["y"] >= height))
        if bad.size:
            i = int(bad[0])
            raise _err(
                path,
                f"event at {where(i)} has (x, y) = ({events['x'][i]}, {events['y'][i]}) outside "
                f"the {width}x{height} sensor ({bad.size} such events): the file is corrupt or "
                "not of this format",
            )
    if len(events) > 1:
        down = np.flatnonzero(np.diff(events["t"]) < 0)
        if down.size:
            if strict:
                i = int(down[0]) + 1
                raise _err(
                    path,
                    f"timestamp goes backwards at {where(i)} ({events['t'][i - 1]} -> "
                    f"{events['t'][i]} us; {down.size} such places): the file is corrupt "
                    "(pass strict=False to sort the events by time instead)",
                )
            events = events[np.argsort(events["t"], kind="stable")]
    return events


# -- format detection -----------------------------------------------------------------------


def detect_format(path: str | Path) -> str:
    """The format of an event file from its first bytes and, without a header, its suffix."""
    path = Path(path)
    head = _read_bytes(path, 16)
    if head.startswith(b"#!AER-DAT4."):
        return "aedat4"
    if head.startswith(b"#!AER-DAT3.1"):
        return "aedat3"
    if head.startswith(b"#!AER-DAT2."):
        return "aedat2"
    if head.startswith(b"#!AER-DAT"):
        version = head[9:12].decode("ascii", "replace")
        shown = version if head.startswith(b"#!AER-DAT3") else repr(version)
        raise _err(path, f"AEDAT version {shown} is not supported (AEDAT 2.0, 3.1 and 4.0 are)")
    suffix = path.suffix.lower()
    if suffix in (".bin", ".bs2"):
        return "nmnist"
    if suffix == ".aedat" and head.startswith(b"#"):
        return "aedat2"
    raise _err(
        path,
        "not a recognised event file: expected an AEDAT header ('#!AER-DAT2.0', '3.1' or '4.0') "
        "or an N-MNIST '.bin' file",
    )


def read_events(
    path: str | Path,
    *,
    format: str | None = None,
    sensor_size: tuple[int, int] | None = None,
    strict: bool = True,
) -> np.ndarray:
    """Decode the event file ``path`` into an array of :data:`EVENT_DTYPE`.

    ``format`` (one of :data:`FORMATS`) is detected from the file when not given.
    ``sensor_size`` ``(width, height)`` bounds the coordinates (default: the format's sensor:
    304×240 for N-MNIST ``.bin`` files, which are crops of the ATIS; 128×128 for AEDAT 2.0;
    from the header for AEDAT 3.1 and 4.0 when it names a known camera). With ``strict``
    (default) decreasing timestamps are an error; otherwise events are sorted by time.
    """
    path = Path(path)
    fmt = format or detect_format(path)
    readers = {
        "nmnist": read_nmnist,
        "aedat2": read_aedat2,
        "aedat3": read_aedat3,
        "aedat4": read_aedat4,
    }
    try:
        reader = readers[fmt]
    except KeyError:
        raise ConfigError(
            f"unknown event format {fmt!r}; choose one of {', '.join(FORMATS)}"
        ) from None
    return reader(path, sensor_size=sensor_size, strict=strict)


def read_file(path: Path) -> bytes:
    """All bytes of ``path``; a missing or unreadable file is a one-line DataError naming it."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _read_bytes(path: Path, size: int = -1) -> bytes:
    """The first ``size`` bytes of ``path`` (all with ``-1``); an empty file is a DataError."""
    try:
        with path.open("rb") as fh:
            data = fh.read(size)
    except FileNotFoundError:
        raise DataError(f"{path}: no such event file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not data:
        raise _empty(path, "the file is 0 bytes")
    return data


def _read_aedat(path: str | Path, magic: bytes, version: str) -> tuple[Path, bytes]:
    """``path`` and its bytes, which must start with ``magic`` (AEDAT ``version``)."""
    path = Path(path)
    data = _read_bytes(path)
    if not data.startswith(magic):
        raise _err(path, f"not an AEDAT {version} file: the first line is not '#!AER-DAT{version}'")
    return path, data


# -- N-MNIST ----------------------------------------------------------------------------------


def read_nmnist(
    path: str | Path, *, sensor_size: tuple[int, int] | None = None, strict: bool = True
) -> np.ndarray:
    """Decode an N-MNIST ``.bin`` file (see the module docstring for the layout)."""
    path = Path(path)
    raw = np.frombuffer(_read_bytes(path), dtype=np.uint8)
    if raw.size % 5:
        whole = raw.size - raw.size % 5
        raise _err(
            path,
            f"truncated: {raw.size} bytes is not a whole number of 5-byte events; the last event "
            f"starts at byte offset {whole} and is cut off after {raw.size % 5} byte(s)",
        )
    rec = raw.reshape(-1, 5)
    y_raw = rec[:, 1]
    marker = y_raw == NMNIST_OVERFLOW_Y
    t = (
        ((rec[:, 2].astype(np.int64) & 0x7F) << 16)
        | (rec[:, 3].astype(np.int64) << 8)
        | rec[:, 4].astype(np.int64)
    )
    if marker.any():
        t = t + np.cumsum(marker, dtype=np.int64) * NMNIST_OVERFLOW_US
    keep = np.flatnonzero(~marker)
    if not keep.size:
        raise _empty(path, f"no events, only {rec.shape[0]} timestamp-overflow marker(s)")
    events = make_events(keep.size)
    events["t"] = t[keep]
    events["x"] = rec[keep, 0]
    events["y"] = y_raw[keep]
    events["p"] = rec[keep, 2] >> 7
    return check_events(
        path, events, sensor_size or SENSOR_SIZES["atis"], _at_offsets(keep * 5), strict
    )


# -- AEDAT 2.0 (jAER) ------------------------------------------------------------------------


def _skip_hash_header(path: Path, data: bytes) -> int:
    """Offset of the first byte after the ``#`` comment lines at the start of ``data``."""
    pos = 0
    while pos < len(data) and data[pos] == 0x23:  # '#'
        end = data.find(b"\n", pos)
        if end < 0:
            raise _err(path, f"truncated header: the line at byte offset {pos} never ends")
        pos = end + 1
    return pos


def read_aedat2(
    path: str | Path, *, sensor_size: tuple[int, int] | None = None, strict: bool = True
) -> np.ndarray:
    """Decode a jAER AEDAT 2.0 file with DVS128 addresses (CIFAR10-DVS)."""
    path, data = _read_aedat(path, b"#!AER-DAT2.", "2.0")
    start = _skip_hash_header(path, data)
    body = len(data) - start
    if body % 8:
        whole = start + body - body % 8
        raise _err(
            path,
            f"truncated: the event data ({body} bytes from byte offset {start}) is not a whole "
            f"number of 8-byte events; the last event starts at byte offset {whole}",
        )
    if not body:
        raise _empty(path, f"no events after the {start}-byte header")
    words = np.frombuffer(data, dtype=">u4", offset=start).reshape(-1, 2)
    addr = words[:, 0]
    high = np.flatnonzero(addr > 0xFFFF)
    if high.size:
        i = int(high[0])
        raise _err(
            path,
            f"address 0x{int(addr[i]):08x} at byte offset {start + 8 * i} is not a DVS128 "
            f"address (bits above 15 are set; {high.size} such events): the file is corrupt or "
            "from another camera",
        )
    keep = np.flatnonzero((addr & 0x8000) == 0)  # bit 15: external/special event
    if not keep.size:
        raise _empty(path, f"no events, only {addr.size} external/special event(s)")
    a = addr[keep]
    events = make_events(keep.size)
    events["t"] = words[keep, 1]
    events["x"] = 127 - ((a >> 1) & 0x7F)
    events["y"] = (a >> 8) & 0x7F
    events["p"] = 1 - (a & 1)
    return check_events(
        path,
        events,
        sensor_size or SENSOR_SIZES["dvs128"],
        _at_offsets(start + 8 * keep),
        strict,
    )


# -- AEDAT 3.1 (cAER / DVS128 Gesture) -------------------------------------------------------

_SOURCE_RE = re.compile(rb"^#Source \d+: *([^\r\n]*)", re.MULTILINE)


def _sensor_from_source(name: bytes) -> tuple[int, int] | None:
    text = name.decode("ascii", "replace").strip().lower()
    for key in ("dvs128", "davis240", "davis346", "dvxplorer"):
        if text.startswith(key):
            return SENSOR_SIZES[key]
    return None


def read_aedat3(
    path: str | Path, *, sensor_size: tuple[int, int] | None = None, strict: bool = True
) -> np.ndarray:
    """Decode the polarity events of an AEDAT 3.1 file (DVS128 Gesture recordings)."""
    path, data = _read_aedat(path, b"#!AER-DAT3.1", "3.1")
    end_mark = b"#!END-HEADER"
    end = data.find(end_mark)
    if end < 0:
        raise _err(path, "truncated header: no '#!END-HEADER' line")
    nl = data.find(b"\n", end)
    if nl < 0:
        raise _err(path, f"truncated header: the line at byte offset {end} never ends")
    header = data[:end]
    if sensor_size is None:
        source = _SOURCE_RE.search(header)
        if source is not None:
            sensor_size = _sensor_from_source(source.group(1))
    pos = nl + 1
    size = len(data)
    chunks: list[np.ndarray] = []
    starts: list[int] = []
    overflows: list[int] = []
    while pos < size:
        if size - pos < _AEDAT3_HEADER.size:
            raise _err(
                path,
                f"truncated: a packet header starts at byte offset {pos} but only "
                f"{size - pos} of its {_AEDAT3_HEADER.size} bytes are there",
            )
        etype, _source, esize, ts_off, ts_ovf, capacity, number, valid = _AEDAT3_HEADER.unpack_from(
            data, pos
        )
        if esize <= 0 or capacity < 0 or not 0 <= number <= capacity or not 0 <= valid <= number:
            raise _err(
                path,
                f"corrupt packet header at byte offset {pos} (eventSize {esize}, capacity "
                f"{capacity}, number {number}, valid {valid})",
            )
        if ts_ovf < 0 or not 0 <= ts_off <= esize - 4:
            raise _err(
                path,
                f"corrupt packet header at byte offset {pos} (eventTSOffset {ts_off}, "
                f"eventTSOverflow {ts_ovf})",
            )
        payload = capacity * esize
        body = pos + _AEDAT3_HEADER.size
        if payload > size - body:
            raise _err(
                path,
                f"truncated: the packet at byte offset {pos} declares {payload} bytes of events "
                f"but only {size - body} remain",
            )
        if etype == _AEDAT3_POLARITY:
            if esize != 8 or ts_off != 4:
                raise _err(
                    path,
                    f"corrupt polarity packet at byte offset {pos}: eventSize {esize} and "
                    f"eventTSOffset {ts_off}, expected 8 and 4",
                )
            if number:
                chunks.append(np.frombuffer(data, dtype=_AEDAT3_EVENT, count=number, offset=body))
                starts.append(body)
                overflows.append(ts_ovf)
        pos = body + payload
    if not chunks:
        raise _empty(path, "no polarity events after the header")
    raw = np.concatenate(chunks)
    counts = np.array([len(c) for c in chunks])
    offsets = np.repeat(np.array(starts, dtype=np.int64), counts)
    offsets += 8 * (np.arange(raw.size) - np.repeat(np.cumsum(counts) - counts, counts))
    ts = raw["ts"].astype(np.int64)
    negative = np.flatnonzero(ts < 0)
    if negative.size:
        i = int(negative[0])
        raise _err(path, f"negative timestamp {ts[i]} at byte offset {offsets[i]}: corrupt")
    ts |= np.repeat(np.array(overflows, dtype=np.int64), counts) << 31
    d = raw["data"]
    keep = np.flatnonzero(d & 1)  # valid mark
    if not keep.size:
        raise _empty(path, f"no valid polarity events, {d.size} marked invalid")
    d = d[keep]
    events = make_events(keep.size)
    events["t"] = ts[keep]
    events["x"] = (d >> 17) & 0x7FFF
    events["y"] = (d >> 2) & 0x7FFF
    events["p"] = (d >> 1) & 1
    return check_events(path, events, sensor_size, _at_offsets(offsets[keep]), strict)


# -- AEDAT 4.0 (through the `aedat` package) -------------------------------------------------


_AEDAT4_MAGIC = b"#!AER-DAT4.0\r\n"


def _aedat4_data_table(header: bytes) -> int:
    """``dataTablePosition`` of the IOHeader flatbuffer (field 1, int64), or -1 when the
    flatbuffer does not say (or is malformed: the decoder then reports it)."""
    try:
        (root,) = struct.unpack_from("<I", header, 0)
        (back,) = struct.unpack_from("<i", header, root)
        vtable = root - back
        vsize, _ = struct.unpack_from("<HH", header, vtable)
        if vsize < 8:
            return -1
        (field,) = struct.unpack_from("<H", header, vtable + 6)
        return struct.unpack_from("<q", header, root + field)[0] if field else -1
    except struct.error:
        return -1


def _check_aedat4_lengths(path: Path) -> None:
    """Check every length an AEDAT 4 file declares (the header's, each packet's) against the
    bytes left in the file, before the ``aedat`` decoder allocates them: it allocates what the
    file declares (4 GiB for a header length of 0xFFFFFFFF) and aborts the process."""
    size = path.stat().st_size
    try:
        with path.open("rb") as fh:
            head = fh.read(len(_AEDAT4_MAGIC) + 4)
            if not head.startswith(_AEDAT4_MAGIC):
                return  # not AEDAT 4: the decoder says so
            if len(head) < len(_AEDAT4_MAGIC) + 4:
                raise _err(path, "truncated AEDAT 4 header")
            (header_len,) = struct.unpack_from("<I", head, len(_AEDAT4_MAGIC))
            pos = len(head)
            if header_len > size - pos:
                raise _err(
                    path,
                    f"the AEDAT 4 header declares {header_len} bytes at byte offset {pos}, "
                    f"the file has {size - pos} left",
                )
            table = _aedat4_data_table(fh.read(header_len))
            end = table if pos + header_len <= table <= size else size
            pos += header_len
            while pos + 8 <= end:
                fh.seek(pos)
                _, length = struct.unpack("<iI", fh.read(8))
                if length > end - pos - 8:
                    raise _err(
                        path,
                        f"the packet at byte offset {pos} declares {length} bytes, the file has "
                        f"{end - pos - 8} left",
                    )
                pos += 8 + length
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def read_aedat4(
    path: str | Path,
    *,
    sensor_size: tuple[int, int] | None = None,
    strict: bool = True,
    stream: int | None = None,
) -> np.ndarray:
    """Decode the events of one event stream of an AEDAT 4.0 file with the ``aedat`` package.

    ``stream`` selects the stream id (default: the first event stream the file declares).
    Frame, IMU and trigger packets are skipped. Coordinates are checked against the stream's
    declared width and height.
    """
    path = Path(path)
    try:
        import aedat
    except ImportError:
        raise DataError(
            f"{path}: reading AEDAT 4 needs the 'aedat' package: pip install aedat"
        ) from None
    if not path.is_file():
        raise DataError(f"{path}: no such event file")
    if path.stat().st_size == 0:
        raise _empty(path, "the file is 0 bytes")
    _check_aedat4_lengths(path)
    chunks: list[np.ndarray] = []
    try:
        decoder = aedat.Decoder(str(path))
        streams = decoder.id_to_stream()
        event_ids = sorted(k for k, v in streams.items() if v.get("type") == "events")
        if not event_ids:
            raise _err(path, "the AEDAT 4 file declares no event stream")
        if stream is None:
            stream = event_ids[0]
        elif stream not in event_ids:
            raise ConfigError(
                f"{path}: stream {stream} is not an event stream; event streams: {event_ids}"
            )
        declared = (int(streams[stream]["width"]), int(streams[stream]["height"]))
        for packet in decoder:
            if packet.get("stream_id") == stream and "events" in packet:
                chunks.append(packet["events"])
    except (DataError, ConfigError):
        raise
    except BaseException as exc:  # the Rust decoder raises RuntimeError or PanicException
        if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit | MemoryError):
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _err(
            path,
            f"corrupt or truncated AEDAT 4 file after {len(chunks)} event packet(s): {message}",
        ) from None
    counts = np.array([len(c) for c in chunks], dtype=np.int64)
    if not counts.sum():
        raise _empty(path, f"no events in event stream {stream}")
    raw = np.concatenate(chunks)
    t = raw["t"]
    if t.size and int(t.max()) > np.iinfo(np.int64).max:
        raise _err(path, "timestamp beyond the int64 range: corrupt")
    events = make_events(raw.size)
    events["t"] = t.astype(np.int64)
    events["x"] = raw["x"]
    events["y"] = raw["y"]
    events["p"] = raw["on"].astype(np.uint8)
    packet_of = np.repeat(np.arange(len(chunks)), counts)
    return check_events(
        path,
        events,
        sensor_size or declared,
        lambda i: f"event packet {int(packet_of[i])} (stream {stream})",
        strict,
    )
