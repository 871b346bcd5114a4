"""Sampled mode: keep only the events at the pixels a sampler picks, per time window.

The recording is cut into windows of ``window_us`` µs from its first event (the last window
closed on the right, as :mod:`spikeforge.data.binning` does). Each window becomes an event
frame (counts per pixel, both polarities summed, ``[H, W]``); a sampler turns the frames
``[n_windows, H, W]`` into a boolean mask of the same shape with ``round(rate · H · W)`` pixels
set per window; an event is kept when its pixel is set in its window. The kept events stay in
their original order, so the stored file holds exactly a subset of the recording.

``rate`` is the fraction of the sensor's pixels sampled per window (what methods.md §8 calls
the sampling rate); the fraction of *events* kept is larger, since samplers prefer active
pixels, and is reported separately (``event_fraction``).

Samplers:

- ``"topk-activity"`` (:func:`topk_activity`, the default): the ``k`` most active pixels of
  each window, ties broken by the lower pixel index. This is the interim, non-learned sampler;
  the trained spiking sampler of methods.md §8 is not wired in yet (see docs/compression.md).
- ``"random"``: ``k`` pixels uniformly at random per window (seeded): the baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = [
    "SAMPLERS",
    "DEFAULT_WINDOW_US",
    "window_index",
    "topk_activity",
    "random_mask",
    "sample_events",
]

DEFAULT_WINDOW_US = 10_000
"""10 ms: N-MNIST's three saccades (~100 ms each) give ~30 windows."""

Sampler = Callable[[np.ndarray, int], np.ndarray]
"""``(frames [n_windows, H, W] counts, k) -> mask [n_windows, H, W] bool, k set per window``."""

_CHUNK_PIXELS = 1 << 22  # windows are processed in chunks of ~4 M pixels to bound memory


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


def topk_activity(frames: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` pixels with the most events in each window; ties go to the lower index.

    ``frames``: [n_windows, H, W] event counts; returns bool [n_windows, H, W].
    """
    n_win = frames.shape[0]
    flat = frames.reshape(n_win, -1).astype(np.int64)
    hw = flat.shape[1]
    mask = np.zeros((n_win, hw), dtype=bool)
    if k <= 0:
        return mask.reshape(frames.shape)
    if k >= hw:
        mask[:] = True
        return mask.reshape(frames.shape)
    # A unique score (count, then lower pixel index first) makes the choice deterministic.
    score = flat * hw + (hw - 1 - np.arange(hw))
    step = max(1, _CHUNK_PIXELS // hw)
    for start in range(0, n_win, step):
        part = score[start : start + step]
        top = np.argpartition(-part, k - 1, axis=1)[:, :k]
        np.put_along_axis(mask[start : start + step], top, True, axis=1)
    return mask.reshape(frames.shape)


def random_mask(frames: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """``k`` uniformly random pixels per window (seeded); bool [n_windows, H, W]."""
    n_win = frames.shape[0]
    hw = int(np.prod(frames.shape[1:]))
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random((n_win, hw)), axis=1)[:, : max(0, min(k, hw))]
    mask = np.zeros((n_win, hw), dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask.reshape(frames.shape)


SAMPLERS: dict[str, Sampler] = {"topk-activity": topk_activity, "random": random_mask}


def sample_events(
    events: np.ndarray,
    sensor_size: tuple[int, int],
    rate: float,
    *,
    window_us: int | None = None,
    sampler: str = "topk-activity",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Keep the events at sampled pixels: ``(kept events [M] in original order, meta)``.

    ``rate`` in (0, 1] is the fraction of pixels sampled per window; ``meta`` records the
    sampler, rate, window, the achieved pixel rate (mean over windows) and the fraction of
    events kept.
    """
    if not 0.0 < float(rate) <= 1.0:
        raise ConfigError(f"--rate must be in (0, 1] (a fraction of pixels), got {rate}")
    if sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    window_us = int(window_us or DEFAULT_WINDOW_US)
    if window_us <= 0:
        raise ConfigError(f"the window must be a positive number of µs, got {window_us}")
    if events.size > 1 and bool((np.diff(events["t"]) < 0).any()):
        raise ConfigError("sampled mode needs time-ordered events (sort them by t first)")
    width, height = sensor_size
    hw = width * height
    k = int(round(rate * hw))
    win = window_index(events["t"], window_us)
    n_win = int(win[-1]) + 1 if win.size else 0
    pix = events["y"].astype(np.int64) * width + events["x"]
    frames = np.bincount(win * hw + pix, minlength=n_win * hw).reshape(n_win, height, width)
    mask = SAMPLERS[sampler](frames, k)
    keep = mask.reshape(-1)[win * hw + pix]
    kept = events[keep]
    meta = {
        "sampler": sampler,
        "rate": float(rate),
        "window_us": window_us,
        "pixels_per_window": k,
        "achieved_rate": float(mask.mean()) if n_win else 0.0,
        "n_windows": n_win,
        "original_events": int(events.size),
        "kept_events": int(kept.size),
        "event_fraction": float(kept.size / events.size) if events.size else 0.0,
    }
    return kept, meta
