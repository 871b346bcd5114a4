"""Sampled mode: keep only the events at the pixels a sampler picks, per time window.

The recording is cut into windows of ``window_us`` µs from its first event (the last window
closed on the right, as :mod:`spikeweave.data.binning` does). Each window becomes an event
frame (counts per polarity and pixel, ``[2, H, W]``); a sampler turns the frames
``[n_windows, 2, H, W]`` into a boolean mask ``[n_windows, H, W]`` with exactly
``k = round(rate · H · W)`` pixels set per window; an event is kept when its pixel is set in its
window. The kept events stay in their original order, so the stored file holds exactly a
subset of the recording.

``rate`` is the fraction of the sensor's pixels sampled per window (what methods.md §8 calls
the sampling rate); the fraction of *events* kept is reported separately (``event_fraction``).

Samplers (``sampler=``):

- ``"activity"`` (the default, baseline): the ``k`` pixels with the most events in each
  window, ties to the lower pixel index. No learning; it keeps as many events as ``k`` pixels
  can hold. It is the default because the trained spiking sampler does not beat it: not in
  the event benchmark (benchmarks/results/compression.event_sampling.md: lower PSNR and
  classifier accuracy at every rate) and not at equal stored bits on images (experiment
  ``sampling-vs-random``, where it is the better baseline on validation).
- ``"spiking"``: the trained spiking sampler of methods.md §8 applied to the event frames
  (:class:`~.event_sampler.EventFrameSampler`, the built-in one trained at the nearest rate).
- a path to a ``--method sampler`` run directory: that run's spiking sampler; or to a sampler
  file written by :func:`~.event_sampler.save_sampler` (as ``pretrain`` writes them).
- ``"random"`` (baseline): ``k`` pixels uniformly at random per window (``seed``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = [
    "SAMPLER_NAMES",
    "DEFAULT_SAMPLER",
    "DEFAULT_WINDOW_US",
    "window_index",
    "window_frames",
    "activity_mask",
    "random_mask",
    "resolve_sampler",
    "sample_events",
]

DEFAULT_WINDOW_US = 10_000
"""10 ms: N-MNIST's three saccades (~100 ms each) give ~30 windows."""

SAMPLER_NAMES = ("activity", "spiking", "random")
DEFAULT_SAMPLER = "activity"
"""Sampled mode's default: the better of the measured samplers (module doc)."""

Sampler = Callable[[np.ndarray, int], np.ndarray]
"""``(frames [n_windows, 2, H, W] counts, k) -> mask [n_windows, H, W] bool, k set per window``."""

_CHUNK_PIXELS = 1 << 22  # windows are processed in chunks of ~4 M pixels to bound memory
_WINDOW_PIXELS = 1 << 21
"""Pixels (windows × sensor pixels) per piece in :func:`sample_events`: frames of one piece
take 2 × 2 M × 8 bytes = 32 MB however long the recording is."""
MAX_SENSOR_PIXELS = 1 << 22
"""Largest sensor sampled mode takes (4 M pixels, e.g. 2048×2048; the largest DVS is 1 Mpx)."""
MAX_PIXEL_WINDOWS = 1 << 32
"""Most windows × sensor pixels sampled mode processes (e.g. 304×240 for 16 minutes in 10 ms
windows); the time is proportional to it, so more is refused with a hint."""


def window_index(t: np.ndarray, window_us: int) -> np.ndarray:
    """Window of each timestamp ``t`` [N] (µs): ``(t - t[0]) // window_us``, int64 [N]; an event
    exactly at the end of the last full window stays in it (closed on the right)."""
    if not t.size:
        return np.zeros(0, dtype=np.int64)
    rel = t - t[0]
    win = rel // window_us
    last = int(rel[-1]) // window_us
    if last and int(rel[-1]) % window_us == 0:
        win[win == last] = last - 1
    return win


def window_frames(
    events: np.ndarray, sensor_size: tuple[int, int], window_us: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(frames [n_windows, 2, H, W] int64 counts per polarity, cell [N])`` where ``cell`` is
    each event's flat ``window · H · W + pixel`` index into a ``[n_windows, H, W]`` mask."""
    win = window_index(events["t"], window_us)
    n_win = int(win[-1]) + 1 if win.size else 0
    return _frames(events, win, n_win, sensor_size)


def _frames(
    events: np.ndarray, win: np.ndarray, n_win: int, sensor_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`window_frames` for events whose windows ``win`` (0 .. n_win - 1) are known."""
    width, height = sensor_size
    hw = width * height
    pix = events["y"].astype(np.int64) * width + events["x"]
    flat = (win * 2 + events["p"]) * hw + pix
    frames = np.bincount(flat, minlength=n_win * 2 * hw).reshape(n_win, 2, height, width)
    return frames, win * hw + pix


def activity_mask(frames: np.ndarray, k: int) -> np.ndarray:
    """Baseline ``activity``: the ``k`` pixels with the most events (both polarities) in each
    window; ties go to the lower index. ``frames`` [n, 2, H, W] counts -> bool [n, H, W]."""
    counts = frames.sum(1)
    n_win = counts.shape[0]
    flat = counts.reshape(n_win, -1).astype(np.int64)
    hw = flat.shape[1]
    mask = np.zeros((n_win, hw), dtype=bool)
    if k <= 0:
        return mask.reshape(counts.shape)
    if k >= hw:
        mask[:] = True
        return mask.reshape(counts.shape)
    # A unique score (count, then lower pixel index first) makes the choice deterministic.
    score = flat * hw + (hw - 1 - np.arange(hw))
    step = max(1, _CHUNK_PIXELS // hw)
    for start in range(0, n_win, step):
        part = score[start : start + step]
        top = np.argpartition(-part, k - 1, axis=1)[:, :k]
        np.put_along_axis(mask[start : start + step], top, True, axis=1)
    return mask.reshape(counts.shape)


def random_mask(
    frames: np.ndarray, k: int, seed: int = 0, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Baseline ``random``: ``k`` uniformly random pixels per window (seeded, or drawn from
    ``rng``: windows given in pieces to one generator get what one call would give them);
    ``frames`` [n, 2, H, W] -> bool [n, H, W]."""
    n_win = frames.shape[0]
    shape = (n_win, *frames.shape[2:])
    hw = int(np.prod(shape[1:]))
    rng = np.random.default_rng(seed) if rng is None else rng
    order = np.argsort(rng.random((n_win, hw)), axis=1)[:, : max(0, min(k, hw))]
    mask = np.zeros((n_win, hw), dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask.reshape(shape)


def resolve_sampler(
    sampler: str | Path, rate: float, seed: int = 0, device: str = "cpu"
) -> tuple[Sampler, dict[str, Any]]:
    """``(mask function, what to record about it)`` for a sampler name or run directory.

    Names win over paths: a run directory called ``random`` is given as ``./random``. A trained
    sampler runs on ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``; a GPU that is not
    there is a one-line ``ConfigError``); the baselines compute on the CPU.
    """
    from ..training.device import resolve_device

    where = resolve_device(device)  # refused before any sampler is loaded
    spec = str(sampler)
    if spec == "activity":
        return activity_mask, {"sampler": "activity"}
    if spec == "random":
        rng = np.random.default_rng(seed)  # one stream over all windows, however they are cut
        return (lambda frames, k: random_mask(frames, k, rng=rng)), {
            "sampler": "random",
            "seed": seed,
        }
    from .event_sampler import EventFrameSampler

    if spec == "spiking":
        trained = EventFrameSampler.builtin(rate)
    elif Path(spec).is_dir():
        trained = EventFrameSampler.from_run(spec)
    elif Path(spec).is_file():
        trained = EventFrameSampler.from_file(spec)
    else:
        raise ConfigError(
            f"unknown sampler {spec!r}: give {', '.join(SAMPLER_NAMES)}, the run directory of "
            "a --method sampler run, or a sampler .safetensors file"
        )
    return trained.to(where), {"sampler": "spiking", **trained.info}


def sample_events(
    events: np.ndarray,
    sensor_size: tuple[int, int],
    rate: float,
    *,
    window_us: int | None = None,
    sampler: str | Path = DEFAULT_SAMPLER,
    seed: int = 0,
    mask_fn: Sampler | None = None,
    device: str = "cpu",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Keep the events at sampled pixels: ``(kept events [M] in original order, meta)``.

    ``rate`` in (0, 1] is the fraction of pixels sampled per window; ``sampler`` a name of
    SAMPLER_NAMES, a ``--method sampler`` run directory or a sampler ``.safetensors`` file
    (``seed``: the random baseline's).
    ``mask_fn`` overrides ``sampler`` (an already loaded sampler, e.g. in a loop over files).
    ``device``: where a trained sampler runs (see :func:`resolve_sampler`).
    ``meta`` records the sampler (and which trained weights), rate, window, the achieved pixel
    rate (mean over windows) and the fraction of events kept.
    """
    if not 0.0 < float(rate) <= 1.0:
        raise ConfigError(f"--rate must be in (0, 1] (a fraction of pixels), got {rate}")
    window_us = DEFAULT_WINDOW_US if window_us is None else int(window_us)  # 0 is refused
    if window_us <= 0:
        raise ConfigError(f"the window must be a positive number of µs, got {window_us}")
    if events.size > 1 and bool((np.diff(events["t"]) < 0).any()):
        raise ConfigError("sampled mode needs time-ordered events (sort them by t first)")
    if mask_fn is None:
        mask_fn, about = resolve_sampler(sampler, rate, seed, device)
    else:
        about = dict(getattr(mask_fn, "info", {}))
        about.setdefault("sampler", str(sampler))
    width, height = sensor_size
    hw = width * height
    k = int(round(rate * hw))
    win = window_index(events["t"], window_us)
    n_win = int(win[-1]) + 1 if win.size else 0
    if hw > MAX_SENSOR_PIXELS:
        raise ConfigError(
            f"sampled mode takes sensors of up to {MAX_SENSOR_PIXELS} pixels; this one is "
            f"{width}x{height}"
        )
    if n_win * hw > MAX_PIXEL_WINDOWS:
        raise ConfigError(
            f"the recording spans {n_win} windows of {window_us} us on a {width}x{height} "
            f"sensor ({n_win * hw} pixel-windows, at most {MAX_PIXEL_WINDOWS}): give a longer "
            "--window-us"
        )
    # Windows go to the sampler in pieces, so memory does not grow with the duration.
    keep = np.zeros(events.size, dtype=bool)
    n_set = 0
    step = max(1, _WINDOW_PIXELS // hw)
    for w0 in range(0, n_win, step):
        w1 = min(w0 + step, n_win)
        lo, hi = np.searchsorted(win, [w0, w1])
        frames, cell = _frames(events[lo:hi], win[lo:hi] - w0, w1 - w0, sensor_size)
        mask = mask_fn(frames, k)
        if mask.shape != (w1 - w0, height, width) or bool((mask.sum((1, 2)) != k).any()):
            raise ConfigError(
                f"the sampler must set exactly {k} pixels of each {width}x{height} window"
            )
        keep[lo:hi] = mask.reshape(-1)[cell]
        n_set += int(np.count_nonzero(mask))
    kept = events[keep]
    meta = {
        **about,
        "rate": float(rate),
        "window_us": window_us,
        "pixels_per_window": k,
        "achieved_rate": n_set / (n_win * hw) if n_win else 0.0,
        "n_windows": n_win,
        "original_events": int(events.size),
        "kept_events": int(kept.size),
        "event_fraction": float(kept.size / events.size) if events.size else 0.0,
    }
    return kept, meta
