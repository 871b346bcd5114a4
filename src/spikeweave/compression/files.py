"""File-level compression: read any event file, write ``.sfev``, and write events back out.

``compress_file`` reads every format :func:`spikeweave.data.events.read_events` reads (N-MNIST
``.bin``/``.bs2``, AEDAT 2.0, 3.1, 4.0); ``decompress_file`` writes an N-MNIST ``.bin`` (the
5-byte layout, with timestamp-overflow markers where needed) or a numpy ``.npz`` holding arrays
``x``, ``y`` (uint16), ``p`` (uint8) and ``t`` (int64, µs). Every write is atomic.
"""

from __future__ import annotations

import io
import lzma
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes
from ..data.events import (
    _SOURCE_RE,
    NMNIST_OVERFLOW_US,
    NMNIST_OVERFLOW_Y,
    SENSOR_SIZES,
    _sensor_from_source,
    detect_format,
    read_events,
)
from ..errors import ConfigError, DataError
from .codec import Header, decode_events, encode_events, read_header

__all__ = [
    "SUFFIX",
    "CompressResult",
    "load_events",
    "sensor_size_of",
    "compress_file",
    "decompress_file",
    "read_sfev",
    "write_nmnist",
    "write_npz",
    "xz_size",
]

SUFFIX = ".sfev"

Progress = Callable[[int], None]


@dataclass(frozen=True)
class CompressResult:
    """What :func:`compress_file` did. Sizes in bytes; ``rate`` only for sampled mode."""

    in_path: Path
    out_path: Path | None
    format: str
    sensor_size: tuple[int, int]
    n_events: int
    n_kept: int
    original_bytes: int
    compressed_bytes: int
    streams: dict[str, int]
    meta: dict[str, Any] | None = None

    @property
    def bytes_per_event(self) -> float:
        return self.compressed_bytes / max(self.n_kept, 1)


def sensor_size_of(path: Path, fmt: str, events: np.ndarray) -> tuple[int, int]:
    """The sensor ``(width, height)`` of a recording: from its header where the format has
    one, else the format's sensor (N-MNIST: 34×34 when every event fits, else the 304×240 ATIS),
    else the bounding box of the events."""
    x_max = int(events["x"].max()) if events.size else 0
    y_max = int(events["y"].max()) if events.size else 0
    size: tuple[int, int] | None = None
    if fmt == "nmnist":
        size = SENSOR_SIZES["nmnist"] if x_max < 34 and y_max < 34 else SENSOR_SIZES["atis"]
    elif fmt == "aedat2":
        size = SENSOR_SIZES["dvs128"]
    elif fmt == "aedat3":
        with path.open("rb") as fh:
            head = fh.read(1 << 16)
        source = _SOURCE_RE.search(head[: max(head.find(b"#!END-HEADER"), 0)])
        size = _sensor_from_source(source.group(1)) if source else None
    elif fmt == "aedat4":
        try:
            import aedat

            streams = aedat.Decoder(str(path)).id_to_stream()
            first = min(k for k, v in streams.items() if v.get("type") == "events")
            size = (int(streams[first]["width"]), int(streams[first]["height"]))
        except Exception:  # the header was already read once by read_events; be lenient
            size = None
    if size is None or x_max >= size[0] or y_max >= size[1]:
        size = (max(x_max + 1, size[0] if size else 1), max(y_max + 1, size[1] if size else 1))
    return size


def load_events(path: str | Path) -> tuple[np.ndarray, tuple[int, int], str]:
    """``(events [N], sensor (width, height), format)`` of an event file (any reader format)."""
    path = Path(path)
    fmt = detect_format(path)
    events = read_events(path, format=fmt)
    return events, sensor_size_of(path, fmt, events), fmt


def xz_size(data: bytes) -> int:
    """Bytes of ``xz -9e`` of ``data`` (the same LZMA2 preset and CRC64 check as the CLI)."""
    return len(lzma.compress(data, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME))


def compress_file(
    in_path: str | Path,
    out_path: str | Path | None,
    *,
    rate: float | None = None,
    window_us: int | None = None,
    sampler: str | Path = "spiking",
    seed: int = 0,
    codec: str = "zstd",
    progress: Progress | None = None,
) -> CompressResult:
    """Compress an event file to ``.sfev`` (``out_path`` None: compute sizes, write nothing).

    ``rate`` (fraction of the sensor's pixels, 0 < rate <= 1) selects sampled mode: per
    ``window_us`` window only events at the pixels ``sampler`` keeps are stored ("spiking":
    the built-in trained spiking sampler; "activity" or "random" (``seed``): baselines; or a
    ``--method sampler`` run directory; see :mod:`spikeweave.compression.sampling`). The file's
    ``M`` stream records the sampler, its weights' digest, the rate and the window. Without
    ``rate`` the file is lossless.
    """
    in_path = Path(in_path)
    events, sensor, fmt = load_events(in_path)
    n_events = int(events.size)
    meta = None
    if rate is not None:
        from .sampling import sample_events

        events, meta = sample_events(
            events, sensor, rate, window_us=window_us, sampler=sampler, seed=seed
        )
    data = encode_events(events, sensor, codec=codec, meta=meta, progress=progress)
    header = read_header(data)
    if out_path is not None:
        out_path = Path(out_path)
        if out_path.resolve() == in_path.resolve():
            raise ConfigError(f"{out_path}: the output would overwrite the input")
        atomic_write_bytes(out_path, data)
    return CompressResult(
        in_path=in_path,
        out_path=Path(out_path) if out_path is not None else None,
        format=fmt,
        sensor_size=sensor,
        n_events=n_events,
        n_kept=int(events.size),
        original_bytes=in_path.stat().st_size,
        compressed_bytes=len(data),
        streams={s.tag: s.comp_len for s in header.streams},
        meta=meta,
    )


def read_sfev(path: str | Path, progress: Progress | None = None) -> tuple[np.ndarray, Header]:
    """Decode a ``.sfev`` file: ``(events [N], header)``; any problem is a one-line
    :class:`DataError` naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return decode_events(data, progress=progress)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


def write_nmnist(path: str | Path, events: np.ndarray) -> Path:
    """Write ``events`` as an N-MNIST ``.bin`` (5 bytes per event), atomically.

    Timestamps of 2**23 µs and more are written as the format does it: one overflow marker
    (``y = 240``) per 2**23 µs crossed. Needs time-ordered events with ``t >= 0``,
    ``x < 256`` and ``y < 240``.
    """
    t = events["t"]
    if events.size and (int(t.min()) < 0 or (np.diff(t) < 0).any()):
        raise ConfigError("N-MNIST .bin needs non-negative, time-ordered timestamps; write .npz")
    if events.size and (int(events["x"].max()) > 255 or int(events["y"].max()) >= 240):
        raise ConfigError("N-MNIST .bin holds x < 256 and y < 240 only; write .npz instead")
    high = t >> 23
    n_markers = int(high[-1]) if events.size else 0
    rec = np.zeros((events.size + n_markers, 5), dtype=np.uint8)
    # event i goes after the high[i] markers that precede it
    pos = np.arange(events.size) + high
    low = t & (NMNIST_OVERFLOW_US - 1)
    rec[pos, 0] = events["x"]
    rec[pos, 1] = events["y"]
    rec[pos, 2] = (events["p"].astype(np.uint8) << 7) | (low >> 16).astype(np.uint8)
    rec[pos, 3] = (low >> 8) & 0xFF
    rec[pos, 4] = low & 0xFF
    if n_markers:
        # marker k (0-based) sits before the first event with high > k
        first = np.searchsorted(high, np.arange(1, n_markers + 1), side="left")
        rec[first + np.arange(n_markers), 1] = NMNIST_OVERFLOW_Y
    return atomic_write_bytes(path, rec.tobytes())


def write_npz(path: str | Path, events: np.ndarray) -> Path:
    """Write ``events`` as ``.npz`` with arrays ``x``, ``y`` (uint16), ``p`` (uint8), ``t``
    (int64 µs), atomically."""
    buf = io.BytesIO()
    np.savez(
        buf,
        x=np.ascontiguousarray(events["x"]),
        y=np.ascontiguousarray(events["y"]),
        p=np.ascontiguousarray(events["p"]),
        t=np.ascontiguousarray(events["t"]),
    )
    return atomic_write_bytes(path, buf.getvalue())


def decompress_file(
    in_path: str | Path, out_path: str | Path, progress: Progress | None = None
) -> tuple[np.ndarray, Header]:
    """Decode ``in_path`` (``.sfev``) and write ``out_path``: ``.npz``, or N-MNIST ``.bin``
    (also ``.bs2``). Returns ``(events, header)``."""
    out_path = Path(out_path)
    suffix = out_path.suffix.lower()
    if suffix not in (".npz", ".bin", ".bs2"):
        raise ConfigError(f"{out_path}: write .npz (x, y, p, t arrays) or .bin (N-MNIST)")
    events, header = read_sfev(in_path, progress=progress)
    if suffix == ".npz":
        write_npz(out_path, events)
    else:
        write_nmnist(out_path, events)
    return events, header
