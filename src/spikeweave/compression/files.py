"""File-level compression: read any event file, write ``.sfev``, and write events back out.

``compress_file`` reads every format :func:`spikeweave.data.events.read_events` reads (N-MNIST
``.bin``/``.bs2``, AEDAT 2.0, 3.1, 4.0); ``decompress_file`` writes an N-MNIST ``.bin`` (the
5-byte layout, with timestamp-overflow markers where needed) or a numpy ``.npz`` holding arrays
``x``, ``y`` (uint16), ``p`` (uint8) and ``t`` (int64, µs). Every write is atomic.
"""

from __future__ import annotations

import io
import lzma
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes, atomic_writer, output_error
from ..data.events import (
    _SOURCE_RE,
    NMNIST_OVERFLOW_US,
    NMNIST_OVERFLOW_Y,
    SENSOR_SIZES,
    _sensor_from_source,
    detect_format,
    read_events,
    read_file,
)
from ..errors import ConfigError, DataError
from .codec import (
    CHUNK_EVENTS,
    Header,
    decode_events,
    encode_events,
    iter_events,
    read_header,
    resolve_codec,
)

__all__ = [
    "SUFFIX",
    "CompressResult",
    "load_events",
    "sensor_size_of",
    "compress_file",
    "decompress_file",
    "decompress_to_file",
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
    sampler: str | Path | None = None,
    seed: int = 0,
    codec: str = "auto",
    progress: Progress | None = None,
    device: str = "cpu",
    size_budget: float | None = None,
) -> CompressResult:
    """Compress an event file to ``.sfev`` (``out_path`` None: compute sizes, write nothing).

    ``rate`` (fraction of the sensor's pixels, 0 < rate <= 1) selects sampled mode: per
    ``window_us`` window only events at the pixels ``sampler`` keeps are stored ("activity",
    the default: the busiest pixels; "spiking": the built-in trained spiking sampler, which
    does not beat it at equal rate (docs/compression.md); "random" (``seed``); or a
    ``--method sampler`` run directory; see :mod:`spikeweave.compression.sampling`). The file's
    ``M`` stream records the sampler, its weights' digest, the rate and the window.
    ``size_budget`` (0 < F <= 1, instead of ``rate``) selects sampled mode under a size
    budget: the largest ``k`` pixels per window whose file takes at most F × the lossless
    file's bytes (:mod:`spikeweave.compression.budget`); its default sampler is "spiking"
    (better than "activity" at equal stored bits; docs/compression.md). Without ``rate`` or
    ``size_budget`` the file is lossless. ``device``: where a trained sampler runs. ``codec``:
    ``"auto"`` (default) is ``ctx3`` where its compiled coder can be had, else ``zstd``
    (:func:`~spikeweave.compression.codec.resolve_codec`).
    """
    in_path = Path(in_path)
    events, sensor, fmt = load_events(in_path)
    n_events = int(events.size)
    if rate is not None and size_budget is not None:
        raise ConfigError("give one of --rate R and --size-budget F, not both")
    meta = None
    if size_budget is not None:
        from .budget import sample_to_budget

        data, events, meta = sample_to_budget(
            events,
            sensor,
            size_budget,
            codec=resolve_codec(codec),
            window_us=window_us,
            sampler="spiking" if sampler is None else sampler,  # sampling.DEFAULT_BUDGET_SAMPLER
            seed=seed,
            device=device,
            progress=progress,
        )
    else:
        if rate is not None:
            from .sampling import sample_events

            events, meta = sample_events(
                events,
                sensor,
                rate,
                window_us=window_us,
                sampler="activity" if sampler is None else sampler,  # sampling.DEFAULT_SAMPLER
                seed=seed,
                device=device,
            )
        data = encode_events(
            events, sensor, codec=resolve_codec(codec), meta=meta, progress=progress
        )
    header = read_header(data)
    if out_path is not None:
        out_path = Path(out_path)
        _check_paths(in_path, out_path)
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
    data = read_file(path)
    try:
        return decode_events(data, progress=progress)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


_MAX_EXTRA_MARKERS = 1 << 20
"""Overflow markers beyond one per event: each stands for 2**23 µs (8.4 s) of silence, so more
than a million (97 days) in a .bin means crafted timestamps, not a recording."""


def _nmnist_records(
    events: np.ndarray, high_before: int, markers_left: int, t_before: int = 0
) -> tuple[bytes, int]:
    """The 5-byte records of ``events`` (time-ordered, none before ``t_before`` µs, after
    ``high_before`` overflow markers already written) with the markers they need;
    ``(bytes, markers written)``."""
    t = events["t"]
    if not events.size:
        return b"", 0
    if int(t[0]) < max(t_before, 0) or (np.diff(t) < 0).any():
        raise ConfigError("N-MNIST .bin needs non-negative, time-ordered timestamps; write .npz")
    if int(events["x"].max()) > 255 or int(events["y"].max()) >= 240:
        raise ConfigError("N-MNIST .bin holds x < 256 and y < 240 only; write .npz instead")
    high = (t >> 23) - high_before
    n_markers = int(high[-1])
    if n_markers > markers_left:
        raise ConfigError(
            f"timestamps up to {int(t[-1])} us need more than {markers_left} N-MNIST overflow "
            "markers; write .npz instead"
        )
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
    return rec.tobytes(), n_markers


def write_nmnist(path: str | Path, events: np.ndarray) -> Path:
    """Write ``events`` as an N-MNIST ``.bin`` (5 bytes per event), atomically.

    Timestamps of 2**23 µs and more are written as the format does it: one overflow marker
    (``y = 240``) per 2**23 µs crossed. Needs time-ordered events with ``t >= 0``,
    ``x < 256`` and ``y < 240``.
    """
    data, _ = _nmnist_records(events, 0, int(events.size) + _MAX_EXTRA_MARKERS)
    return atomic_write_bytes(path, data)


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


def _check_paths(in_path: Path, out_path: Path) -> None:
    """Refuse an output that is the input: the same name, or another name (hard or symbolic
    link) for the same file."""
    same = out_path.resolve() == in_path.resolve()
    try:
        out_exists = out_path.exists()
    except OSError as exc:  # a name too long: the one-line error the write would give
        raise output_error(out_path, exc) from None
    if not same and out_exists and in_path.exists():
        try:
            same = os.path.samefile(in_path, out_path)
        except OSError:
            same = False
    if same:
        raise ConfigError(f"{out_path}: the output would overwrite the input")


def decompress_to_file(
    in_path: str | Path,
    out_path: str | Path,
    progress: Callable[[int, int], None] | None = None,
    *,
    chunk_events: int = CHUNK_EVENTS,
    from_us: int | None = None,
    to_us: int | None = None,
) -> Header:
    """Decode ``in_path`` (``.sfev``) into ``out_path`` (``.npz``, or N-MNIST ``.bin``/``.bs2``)
    in pieces of ``chunk_events`` events, so memory stays bounded by the input and a piece
    whatever the file holds; the output is written atomically (nothing on an error). Returns
    the header (``n_events``, sensor, ``meta``). Problems are one-line errors naming the file.
    ``from_us``/``to_us``: write only the events with ``from_us <= t < to_us`` (µs); in a
    version-2 (``ctx``) file only the blocks covering that range are decoded."""
    in_path, out_path = Path(in_path), Path(out_path)
    suffix = out_path.suffix.lower()
    if suffix not in (".npz", ".bin", ".bs2"):
        raise ConfigError(f"{out_path}: write .npz (x, y, p, t arrays) or .bin (N-MNIST)")
    _check_paths(in_path, out_path)
    data = read_file(in_path)
    try:
        span = {"from_us": from_us, "to_us": to_us}
        if suffix == ".npz":
            return _decode_to_npz(data, out_path, chunk_events, progress, span)
        return _decode_to_nmnist(data, out_path, chunk_events, progress, span)
    except DataError as exc:
        raise DataError(f"{in_path}: {exc}") from None


def _decode_to_nmnist(
    data: bytes,
    out_path: Path,
    chunk: int,
    progress: Callable[[int, int], None] | None,
    span: dict[str, int | None],
) -> Header:
    header, pieces = iter_events(data, chunk_events=chunk, progress=progress, **span)
    high = t_last = 0
    markers_left = header.n_events + _MAX_EXTRA_MARKERS
    with atomic_writer(out_path) as fh:
        for events in pieces:
            records, markers = _nmnist_records(events, high, markers_left, t_last)
            high += markers
            markers_left -= markers
            t_last = int(events["t"][-1]) if events.size else t_last
            fh.write(records)
    return header


_NPZ_COLUMNS = (
    ("x", np.dtype("<u2")),
    ("y", np.dtype("<u2")),
    ("p", np.dtype("u1")),
    ("t", np.dtype("<i8")),
)


def _decode_to_npz(
    data: bytes,
    out_path: Path,
    chunk: int,
    progress: Callable[[int, int], None] | None,
    span: dict[str, int | None],
) -> Header:
    """One pass over the file per array (x, y, p, t, as ``np.savez`` stores them), each
    written into its ``.npy`` member piece by piece (with a time range, a first pass over
    ``t`` counts the events, since each ``.npy`` header states its length)."""
    import zipfile

    header = read_header(data)
    count = header.n_events
    if span["from_us"] is not None or span["to_us"] is not None:
        _, pieces = iter_events(data, chunk_events=chunk, columns="t", **span)
        count = sum(piece.size for piece in pieces)
    with atomic_writer(out_path) as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as zf:
        for name, dtype in _NPZ_COLUMNS:
            header, pieces = iter_events(
                data, chunk_events=chunk, columns=name, progress=progress, **span
            )
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(
                    member,
                    {
                        "descr": np.lib.format.dtype_to_descr(dtype),
                        "fortran_order": False,
                        "shape": (count,),
                    },
                )
                for events in pieces:
                    member.write(np.ascontiguousarray(events[name], dtype=dtype).tobytes())
    return header


def decompress_file(
    in_path: str | Path, out_path: str | Path, progress: Progress | None = None
) -> tuple[np.ndarray, Header]:
    """Decode ``in_path`` (``.sfev``) and write ``out_path``: ``.npz``, or N-MNIST ``.bin``
    (also ``.bs2``). Returns ``(events, header)``, so it holds every event in memory;
    :func:`decompress_to_file` writes the same output in bounded memory."""
    out_path = Path(out_path)
    suffix = out_path.suffix.lower()
    if suffix not in (".npz", ".bin", ".bs2"):
        raise ConfigError(f"{out_path}: write .npz (x, y, p, t arrays) or .bin (N-MNIST)")
    _check_paths(Path(in_path), out_path)
    events, header = read_sfev(in_path, progress=progress)
    if suffix == ".npz":
        write_npz(out_path, events)
    else:
        write_nmnist(out_path, events)
    return events, header
