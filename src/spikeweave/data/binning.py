"""Event → frame binning, and a background-activity denoise filter. Vectorised numpy throughout.

A frame tensor is ``[T, 2, H, W]`` float32 holding event *counts*: channel 0 counts OFF events
(``p == 0``), channel 1 ON events (``p == 1``); row ``y``, column ``x``.

Three ways to cut time, exactly one per call:

- ``n_frames=T``: the window ``[t_start, t_end]`` (default: first to last event) is split into
  ``T`` equal bins ``[t_start + k·d/T, t_start + (k+1)·d/T)``; the last bin is closed on the
  right, so an event exactly at ``t_end`` lands in frame ``T-1`` instead of being dropped.
  Bin indices are computed in integer µs arithmetic (``(t - t_start)·T // d``), so there is no
  floating-point rounding at bin edges.
- ``time_window=w`` (µs): bins ``[t_start + k·w, t_start + (k+1)·w)``, as many as needed to
  reach ``t_end`` (``ceil(d / w)``, at least one); the last bin is closed on the right. The
  number of frames varies with the recording's length.
- ``event_count=n``: consecutive runs of ``n`` events (in file order); the last frame holds the
  remainder (``ceil(N / n)`` frames, at least one).

Nothing inside the window is ever dropped: the frames' total equals the number of events in
``[t_start, t_end]`` (all events when no window is given). Events outside an explicitly given
window are not counted — that is cutting, not binning.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import ConfigError, InputError
from .events import EVENT_DTYPE

__all__ = ["to_frames", "ToFrames", "denoise", "Denoise", "BINNING_VERSION"]

BINNING_VERSION = 1
"""Bumped whenever binning output changes for the same parameters, so caches are not reused."""

MAX_ELEMENTS = 1 << 30
"""Largest frame tensor :func:`to_frames` builds (4 GiB of float32); more is a config mistake."""


def _check_events(events: np.ndarray, sensor_size: tuple[int, int]) -> None:
    if not isinstance(events, np.ndarray) or events.dtype.names is None:
        raise InputError("events must be a numpy structured array with fields t, x, y, p")
    missing = {"t", "x", "y", "p"} - set(events.dtype.names)
    if missing:
        raise InputError(f"events lack field(s) {', '.join(sorted(missing))}")
    width, height = sensor_size
    if len(events):
        if int(events["x"].max()) >= width or int(events["y"].max()) >= height:
            raise InputError(
                f"event coordinates up to x={events['x'].max()}, y={events['y'].max()} do not "
                f"fit the sensor size (width, height) = {sensor_size}"
            )
        if int(events["x"].min()) < 0 or int(events["y"].min()) < 0:
            raise InputError("event coordinates must be non-negative")
        if not np.isin(events["p"], (0, 1)).all():
            raise InputError("polarity p must be 0 (OFF) or 1 (ON)")


def _positive_int(name: str, value: object) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def to_frames(
    events: np.ndarray,
    sensor_size: tuple[int, int],
    *,
    n_frames: int | None = None,
    time_window: int | None = None,
    event_count: int | None = None,
    t_start: int | None = None,
    t_end: int | None = None,
    spatial_factor: int = 1,
) -> np.ndarray:
    """Bin ``events`` into ``[T, 2, H, W]`` float32 count frames (see the module docstring).

    ``sensor_size`` is ``(width, height)``. ``spatial_factor`` f > 1 pools f×f pixels into one
    (``H' = ceil(H / f)``). ``t_start``/``t_end`` (µs, inclusive) give the window explicitly.
    """
    modes = {"n_frames": n_frames, "time_window": time_window, "event_count": event_count}
    given = [k for k, v in modes.items() if v is not None]
    if len(given) != 1:
        raise ConfigError(
            f"give exactly one of n_frames, time_window, event_count (got {given or 'none'})"
        )
    mode = given[0]
    value = _positive_int(mode, modes[mode])
    factor = _positive_int("spatial_factor", spatial_factor)
    width, height = (
        _positive_int("sensor width", sensor_size[0]),
        _positive_int("sensor height", sensor_size[1]),
    )
    _check_events(events, (width, height))
    out_h, out_w = math.ceil(height / factor), math.ceil(width / factor)

    t = events["t"].astype(np.int64, copy=False)
    if t_start is not None or t_end is not None:
        lo = int(t_start) if t_start is not None else (int(t.min()) if t.size else 0)
        hi = int(t_end) if t_end is not None else (int(t.max()) if t.size else lo)
        if hi < lo:
            raise ConfigError(f"t_end ({hi}) is before t_start ({lo})")
        inside = (t >= lo) & (t <= hi)
        if not inside.all():
            events, t = events[inside], t[inside]
    else:
        lo = int(t.min()) if t.size else 0
        hi = int(t.max()) if t.size else 0
    duration = hi - lo
    n = t.size

    if mode == "n_frames":
        frames = value
        idx = (t - lo) * frames // duration if duration > 0 else np.zeros(n, dtype=np.int64)
    elif mode == "time_window":
        frames = max(1, -(-duration // value))
        idx = (t - lo) // value
    else:
        frames = max(1, -(-n // value))
        idx = np.arange(n, dtype=np.int64) // value
    idx = np.minimum(idx, frames - 1)
    size = frames * 2 * out_h * out_w
    if size > MAX_ELEMENTS:
        raise ConfigError(
            f"{mode}={value} over {duration} us and {n} events gives {frames} frames of "
            f"2x{out_h}x{out_w} ({size} values, more than {MAX_ELEMENTS}); use a larger "
            f"{mode} or n_frames"
        )

    x = events["x"].astype(np.int64) // factor
    y = events["y"].astype(np.int64) // factor
    p = events["p"].astype(np.int64)
    flat = ((idx * 2 + p) * out_h + y) * out_w + x
    counts = np.bincount(flat, minlength=size) if n else np.zeros(size, dtype=np.int64)
    return counts.astype(np.float32).reshape(frames, 2, out_h, out_w)


def denoise(events: np.ndarray, sensor_size: tuple[int, int], filter_time: int) -> np.ndarray:
    """Background-activity filter: keep an event only if one of its 8 neighbouring pixels had an
    event less than ``filter_time`` µs before it (earlier in the time-ordered stream).

    Same rule as Tonic's ``Denoise`` (the pixel's own history does not count), computed without
    a per-event loop: for each neighbour offset, a binary search over events sorted by
    ``(pixel, index)`` finds the latest earlier event at that neighbour.
    """
    filter_time = _positive_int("filter_time", filter_time)
    width, height = sensor_size
    _check_events(events, (width, height))
    n = len(events)
    if n == 0:
        return events.copy()
    t = events["t"].astype(np.int64)
    if (np.diff(t) < 0).any():
        raise InputError("denoise needs events sorted by time")
    # keys = pixel·n + index, sorted: events grouped by pixel, in time order within a pixel.
    keys = np.sort((events["y"].astype(np.int64) * width + events["x"]) * n + np.arange(n))
    pix, idx = np.divmod(keys, n)
    y, x = np.divmod(pix, width)
    t_idx = t[idx]
    keep = np.zeros(n, dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dx == 0 and dy == 0:
                continue
            # The neighbour's key for "same index" is keys + shift; it is sorted like keys, so
            # one binary search per event finds the neighbour's latest earlier event.
            shift = (dy * width + dx) * n
            pos = np.searchsorted(keys, keys + shift, side="left") - 1
            prev = keys[np.maximum(pos, 0)]
            ok = (pos >= 0) & (prev // n == pix + dy * width + dx)
            ok &= (x + dx >= 0) & (x + dx < width) & (y + dy >= 0) & (y + dy < height)
            ok &= t_idx - t[prev % n] < filter_time
            keep[idx[ok]] = True
    return events[keep]


@dataclass(frozen=True)
class Denoise:
    """Transform form of :func:`denoise`: ``Denoise((w, h), filter_time)(events)``."""

    sensor_size: tuple[int, int]
    filter_time: int

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return denoise(events, self.sensor_size, self.filter_time)


@dataclass(frozen=True)
class ToFrames:
    """Events → ``[T, 2, H, W]`` float32 frames; every parameter is part of :meth:`params`,
    which the frame cache keys on.

    >>> ToFrames((34, 34), n_frames=10)(events).shape
    (10, 2, 34, 34)
    """

    sensor_size: tuple[int, int]
    n_frames: int | None = None
    time_window: int | None = None
    event_count: int | None = None
    spatial_factor: int = 1
    denoise_us: int | None = None
    """Apply :func:`denoise` with this filter time (µs) before binning; ``None``: no filter."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "sensor_size", tuple(int(v) for v in self.sensor_size))
        modes = [self.n_frames, self.time_window, self.event_count]
        if sum(v is not None for v in modes) != 1:
            raise ConfigError("give exactly one of n_frames, time_window, event_count")
        for name in ("n_frames", "time_window", "event_count", "denoise_us"):
            value = getattr(self, name)
            if value is not None:
                _positive_int(name, value)
        _positive_int("spatial_factor", self.spatial_factor)

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """Per-step shape ``(2, H, W)`` after spatial pooling."""
        width, height = self.sensor_size
        f = self.spatial_factor
        return (2, math.ceil(height / f), math.ceil(width / f))

    def params(self) -> dict:
        """Every parameter that changes the output, for cache keys."""
        d = asdict(self)
        d["sensor_size"] = list(self.sensor_size)
        d["binning_version"] = BINNING_VERSION
        d["event_dtype"] = str(EVENT_DTYPE)
        return d

    def __call__(
        self, events: np.ndarray, t_start: int | None = None, t_end: int | None = None
    ) -> np.ndarray:
        if self.denoise_us is not None:
            events = denoise(events, self.sensor_size, self.denoise_us)
        return to_frames(
            events,
            self.sensor_size,
            n_frames=self.n_frames,
            time_window=self.time_window,
            event_count=self.event_count,
            t_start=t_start,
            t_end=t_end,
            spatial_factor=self.spatial_factor,
        )
