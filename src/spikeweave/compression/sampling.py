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

- ``"activity"`` (the default of ``--rate``, baseline): the ``k`` pixels with the most events
  in each window, ties to the lower pixel index. No learning; it keeps as many events as ``k``
  pixels can hold. At equal *rate* the trained spiking sampler does not beat it (it keeps more
  events, so its files are larger: benchmarks/results/compression.event_sampling.md). At equal
  *stored bits* the spiking sampler is ahead by fractions of a dB, so ``--size-budget``
  (:mod:`.budget`) defaults to ``"spiking"`` (DEFAULT_BUDGET_SAMPLER).
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
    "DEFAULT_BUDGET_SAMPLER",
    "DEFAULT_WINDOW_US",
    "window_index",
    "window_frames",
    "activity_mask",
    "random_mask",
    "resolve_sampler",
    "sample_events",
    "Ranker",
    "activity_ranks",
    "resolve_ranker",
    "event_ranks",
]

DEFAULT_WINDOW_US = 10_000
"""10 ms: N-MNIST's three saccades (~100 ms each) give ~30 windows."""

SAMPLER_NAMES = ("activity", "spiking", "random")
DEFAULT_SAMPLER = "activity"
"""``--rate``'s default: the better of the measured samplers at equal sampling rate."""
DEFAULT_BUDGET_SAMPLER = "spiking"
"""``--size-budget``'s default: the better of the measured samplers at equal stored bits
(benchmarks/results/compression.event_sampling.md; a margin of fractions of a dB)."""

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


Ranker = Callable[[np.ndarray], np.ndarray]
"""``(frames [n_windows, 2, H, W] counts) -> ranks [n_windows, H, W] int32``: each pixel's place
in its window's keep order (0 first). A sampler's mask at ``k`` is ``ranks < k``, so one
ranking gives every ``k`` (the masks are nested), which is what a size budget searches over."""


def _ranks_of(order: np.ndarray) -> np.ndarray:
    """Inverse permutations: ``order`` [n, hw] (pixel indices, best first) -> ranks [n, hw]."""
    ranks = np.empty(order.shape, dtype=np.int32)
    np.put_along_axis(ranks, order, np.arange(order.shape[1], dtype=np.int32)[None], axis=1)
    return ranks


def activity_ranks(frames: np.ndarray) -> np.ndarray:
    """The :func:`activity_mask` order as ranks: most events first, ties to the lower pixel
    index; ``activity_mask(frames, k) == (activity_ranks(frames) < k)`` for every ``k``."""
    counts = frames.sum(1)
    n_win = counts.shape[0]
    flat = counts.reshape(n_win, -1).astype(np.int64)
    hw = flat.shape[1]
    score = flat * hw + (hw - 1 - np.arange(hw))  # unique, as activity_mask's
    return _ranks_of(np.argsort(-score, axis=1)).reshape(counts.shape)


def _random_ranks(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The :func:`random_mask` order as ranks (the same draws from ``rng``, the same sort)."""
    n_win = frames.shape[0]
    shape = (n_win, *frames.shape[2:])
    hw = int(np.prod(shape[1:]))
    return _ranks_of(np.argsort(rng.random((n_win, hw)), axis=1)).reshape(shape)


def _score_ranks(score: np.ndarray) -> np.ndarray:
    """The :func:`~.event_sampler.topk_by_score` order of ``score`` [n, H, W] as ranks (a stable
    sort: equal scores to the lower pixel index)."""
    n = score.shape[0]
    return _ranks_of(np.argsort(-score.reshape(n, -1), axis=1, kind="stable")).reshape(score.shape)


def resolve_ranker(
    sampler: str | Path, seed: int = 0, device: str = "cpu"
) -> tuple[Ranker, dict[str, Any]]:
    """``(ranker, what to record)`` for a sampler, as :func:`resolve_sampler` resolves it. With
    no rate known in advance, ``"spiking"`` is the built-in sampler trained at 10 % (the only
    one shipped; every rate uses it, so its masks equal ``sample_events``' at any rate)."""
    where = _device(device)
    spec = str(sampler)
    if spec == "activity":
        return activity_ranks, {"sampler": "activity"}
    if spec == "random":
        rng = np.random.default_rng(seed)  # one stream over all windows, as resolve_sampler's
        return (lambda frames: _random_ranks(frames, rng)), {"sampler": "random", "seed": seed}
    trained = _trained(spec, 0.10)
    trained.to(where)
    return (lambda frames: _score_ranks(trained.scores(frames))), {
        "sampler": "spiking",
        **trained.info,
    }


def _device(device: str) -> Any:
    from ..training.device import resolve_device

    return resolve_device(device)  # refused before any sampler is loaded


def _trained(spec: str, rate: float) -> Any:
    """The trained :class:`~.event_sampler.EventFrameSampler` a sampler spec names."""
    from .event_sampler import EventFrameSampler

    if spec == "spiking":
        return EventFrameSampler.builtin(rate)
    if Path(spec).is_dir():
        return EventFrameSampler.from_run(spec)
    if Path(spec).is_file():
        return EventFrameSampler.from_file(spec)
    raise ConfigError(
        f"unknown sampler {spec!r}: give {', '.join(SAMPLER_NAMES)}, the run directory of "
        "a --method sampler run, or a sampler .safetensors file"
    )


def resolve_sampler(
    sampler: str | Path, rate: float, seed: int = 0, device: str = "cpu"
) -> tuple[Sampler, dict[str, Any]]:
    """``(mask function, what to record about it)`` for a sampler name or run directory.

    Names win over paths: a run directory called ``random`` is given as ``./random``. A trained
    sampler runs on ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``; a GPU that is not
    there is a one-line ``ConfigError``); the baselines compute on the CPU.
    """
    where = _device(device)
    spec = str(sampler)
    if spec == "activity":
        return activity_mask, {"sampler": "activity"}
    if spec == "random":
        rng = np.random.default_rng(seed)  # one stream over all windows, however they are cut
        return (lambda frames, k: random_mask(frames, k, rng=rng)), {
            "sampler": "random",
            "seed": seed,
        }
    trained = _trained(spec, rate)
    return trained.to(where), {"sampler": "spiking", **trained.info}


def _check_window(window_us: int | None, events: np.ndarray) -> int:
    """The window (default DEFAULT_WINDOW_US; 0 and less refused) of time-ordered ``events``."""
    window_us = DEFAULT_WINDOW_US if window_us is None else int(window_us)  # 0 is refused
    if window_us <= 0:
        raise ConfigError(f"the window must be a positive number of µs, got {window_us}")
    if events.size > 1 and bool((np.diff(events["t"]) < 0).any()):
        raise ConfigError("sampled mode needs time-ordered events (sort them by t first)")
    return window_us


def _windows(
    events: np.ndarray, sensor_size: tuple[int, int], window_us: int
) -> tuple[np.ndarray, int]:
    """``(window of each event [N], n_windows)``, refusing sensors and spans over the limits."""
    width, height = sensor_size
    hw = width * height
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
    return win, n_win


def event_ranks(
    events: np.ndarray,
    sensor_size: tuple[int, int],
    ranker: Ranker,
    *,
    window_us: int | None = None,
) -> tuple[np.ndarray, int, int]:
    """``(ranks [N] int32, n_windows, window_us)``: each event's pixel's place in its window's
    keep order, so ``events[ranks < k]`` is what :func:`sample_events` keeps at
    ``k = round(rate · H · W)`` with the same sampler. The ranker runs once, on windows in
    pieces (memory bounded as in :func:`sample_events`, plus 4 bytes per event)."""
    window_us = _check_window(window_us, events)
    width, height = sensor_size
    hw = width * height
    win, n_win = _windows(events, sensor_size, window_us)
    ranks = np.zeros(events.size, dtype=np.int32)
    step = max(1, _WINDOW_PIXELS // hw)
    for w0 in range(0, n_win, step):
        w1 = min(w0 + step, n_win)
        lo, hi = np.searchsorted(win, [w0, w1])
        frames, cell = _frames(events[lo:hi], win[lo:hi] - w0, w1 - w0, sensor_size)
        rank = ranker(frames)
        if rank.shape != (w1 - w0, height, width):
            raise ConfigError(f"the sampler must rank each {width}x{height} window's pixels")
        ranks[lo:hi] = rank.reshape(-1)[cell]
    return ranks, n_win, window_us


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
    window_us = _check_window(window_us, events)
    if mask_fn is None:
        mask_fn, about = resolve_sampler(sampler, rate, seed, device)
    else:
        about = dict(getattr(mask_fn, "info", {}))
        about.setdefault("sampler", str(sampler))
    width, height = sensor_size
    hw = width * height
    k = int(round(rate * hw))
    win, n_win = _windows(events, sensor_size, window_us)
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
