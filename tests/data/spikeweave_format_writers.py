"""Writers that produce event and image files byte-exact to their published formats (test helpers).

Kept independent of spikeweave's own readers: every layout is spelled out here with struct and
numpy, so a reader bug cannot be mirrored by a writer that shares its code.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "u1")])


def make_events(t, x, y, p) -> np.ndarray:
    ev = np.zeros(len(t), dtype=EVENT_DTYPE)
    ev["t"], ev["x"], ev["y"], ev["p"] = t, x, y, p
    return ev


def random_events(rng: np.random.Generator, n: int, width: int, height: int, t_max: int):
    t = np.sort(rng.integers(0, t_max + 1, n))
    return make_events(
        t, rng.integers(0, width, n), rng.integers(0, height, n), rng.integers(0, 2, n)
    )


# -- N-MNIST .bin: x u8, y u8, p bit 39, t 23 bits (big-endian bit order) ---------------------


def nmnist_bytes(events: np.ndarray) -> bytes:
    """Events as N-MNIST records, with a y=240 overflow marker each time t passes k·2**23."""
    out = bytearray()
    epoch = 0
    for e in events:
        t = int(e["t"])
        while t >> 23 > epoch:
            out += bytes([0, 240, 0, 0, 0])  # overflow marker
            epoch += 1
        low = t & 0x7FFFFF
        out += bytes(
            [
                int(e["x"]),
                int(e["y"]),
                (int(e["p"]) << 7) | (low >> 16),
                (low >> 8) & 0xFF,
                low & 0xFF,
            ]
        )
    return bytes(out)


# -- AEDAT 2.0 (jAER, DVS128 addressing) ------------------------------------------------------

AEDAT2_HEADER = (
    b"#!AER-DAT2.0\r\n"
    b"# This is a raw AE data file - do not edit\r\n"
    b"# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event\r\n"
    b"# Timestamps tick is 1 us\r\n"
    b"# created Thu Jan 01 00:00:00 CET 2015\r\n"
)


def dvs128_address(x, y, p):
    """jAER DVS128: x is mirrored (127 - x) in bits 7..1, y in bits 14..8, bit 0 set for OFF."""
    x, y, p = (np.asarray(v, dtype=np.uint32) for v in (x, y, p))
    return (y << 8) | ((127 - x) << 1) | (1 - p)


def aedat2_bytes(events: np.ndarray, special_at: tuple[int, ...] = ()) -> bytes:
    addr = dvs128_address(events["x"], events["y"], events["p"])
    words = np.stack([addr, events["t"].astype(np.uint32)], axis=1)
    for i in sorted(special_at, reverse=True):  # external events: bit 15 set, same timestamp
        words = np.insert(words, i, [[0x8000, words[min(i, len(words) - 1), 1]]], axis=0)
    return AEDAT2_HEADER + words.astype(">u4").tobytes()


# -- AEDAT 3.1 (cAER): 28-byte packet headers, polarity events -------------------------------

AEDAT31_HEADER = (
    b"#!AER-DAT3.1\r\n"
    b"#Format: RAW\r\n"
    b"#Source 1: DVS128\r\n"
    b"#Start-Time: 2017-03-01 12:00:00 (TZ+0100)\r\n"
    b"#!END-HEADER\r\n"
)
PACKET = struct.Struct(
    "<hhiiiiii"
)  # type, source, size, tsOffset, tsOverflow, capacity, number, valid


def aedat31_polarity_packet(
    events: np.ndarray,
    overflow: int,
    capacity: int | None = None,
    invalid: np.ndarray | None = None,
) -> bytes:
    n = len(events)
    capacity = n if capacity is None else capacity
    valid = np.ones(n, dtype=np.uint32) if invalid is None else (~invalid).astype(np.uint32)
    data = (
        (events["x"].astype(np.uint32) << 17)
        | (events["y"].astype(np.uint32) << 2)
        | (events["p"].astype(np.uint32) << 1)
        | valid
    )
    ts = (events["t"].astype(np.int64) & 0x7FFFFFFF).astype("<i4")
    body = np.zeros(capacity, dtype=[("data", "<u4"), ("ts", "<i4")])
    body["data"][:n], body["ts"][:n] = data, ts
    head = PACKET.pack(1, 1, 8, 4, overflow, capacity, n, int(valid.sum()))
    return head + body.tobytes()


def aedat31_special_packet(ts: int) -> bytes:
    """A special-event packet (type 0) holding one timestamp-reset-like event."""
    return PACKET.pack(0, 1, 8, 4, 0, 1, 1, 1) + struct.pack("<Ii", (1 << 1) | 1, ts)


def aedat31_imu6_packet(ts: int) -> bytes:
    """An IMU6 packet (type 3): info u32, timestamp i32, 7 float32 = 36 bytes per event."""
    return PACKET.pack(3, 1, 36, 4, 0, 1, 1, 1) + struct.pack("<Ii7f", 1, ts, *range(7))


def aedat31_bytes(events: np.ndarray, packet_size: int = 64, extras: bool = True) -> bytes:
    """Polarity packets of at most ``packet_size`` events, split where the 31-bit overflow
    counter changes; with ``extras``, special and IMU packets are interleaved."""
    out = bytearray(AEDAT31_HEADER)
    overflow = (events["t"] >> 31).astype(np.int64)
    start = 0
    k = 0
    while start < len(events):
        stop = min(start + packet_size, len(events))
        same = np.flatnonzero(overflow[start:stop] != overflow[start])
        if same.size:
            stop = start + int(same[0])
        if extras and k % 2 == 1:
            out += aedat31_special_packet(int(events["t"][start]) & 0x7FFFFFFF)
            out += aedat31_imu6_packet(int(events["t"][start]) & 0x7FFFFFFF)
        out += aedat31_polarity_packet(events[start:stop], int(overflow[start]))
        start, k = stop, k + 1
    return bytes(out)


# -- IDX ------------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    codes = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}
    code = codes[array.dtype.str[1:]]
    head = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    return head + array.astype(array.dtype.newbyteorder(">")).tobytes()


# -- CIFAR-10 python batch, as Python 2's cPickle (protocol 2) wrote it ------------------------


def _short_binstring(b: bytes) -> bytes:
    return b"U" + bytes([len(b)]) + b


def cifar_batch_bytes(
    images: np.ndarray, labels, batch_label: bytes = b"training batch 1 of 5"
) -> bytes:
    """The pickle opcodes of an original CIFAR-10 batch: a dict of py2 str keys, ``data`` a numpy
    uint8 [N, 3072] array rebuilt by numpy.core.multiarray._reconstruct, ``labels`` a list."""
    data = np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), -1)
    n = data.shape[0]
    out = bytearray(b"\x80\x02}q\x01(")
    out += _short_binstring(b"data") + b"q\x02"
    out += b"cnumpy.core.multiarray\n_reconstruct\nq\x03cnumpy\nndarray\nq\x04K\x00\x85"
    out += _short_binstring(b"b") + b"\x87Rq\x05(K\x01"
    out += b"M" + struct.pack("<H", n) + b"M" + struct.pack("<H", 3072) + b"\x86"
    out += b"cnumpy\ndtype\nq\x06" + _short_binstring(b"u1") + b"K\x00K\x01\x87Rq\x07"
    out += b"(K\x03" + _short_binstring(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    out += b"\x89T" + struct.pack("<I", data.nbytes) + data.tobytes() + b"tb"
    out += (
        _short_binstring(b"labels") + b"q\x08](" + b"".join(b"K" + bytes([int(v)]) for v in labels)
    )
    out += b"e" + _short_binstring(b"batch_label") + _short_binstring(batch_label)
    out += (
        _short_binstring(b"filenames")
        + b"]("
        + b"".join(_short_binstring(f"img_{i}.png".encode()) for i in range(n))
        + b"eu."
    )
    return bytes(out)


def write(path: Path, blob: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return path


def read_labels_csv(path: Path) -> dict[str, int]:
    """``file -> class`` from the shared N-MNIST ``labels.csv`` (``file,class,split``).

    Parsed by hand on ``\\n`` with every field stripped: the shared file carries a stray ``\\r``
    after each class value, which text-mode readers would take for a line break."""
    rows = path.read_bytes().decode("ascii").split("\n")
    header = [h.strip() for h in rows[0].split(",")]
    out = {}
    for line in rows[1:]:
        if line.strip():
            fields = dict(zip(header, (f.strip() for f in line.split(",")), strict=True))
            out[fields["file"]] = int(fields["class"])
    return out
