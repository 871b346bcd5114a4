"""Sampled mode under a size budget: the largest ``k`` whose sampled ``.sfev`` fits.

``spikeweave compress --size-budget F`` / ``compress_file(..., size_budget=F)``: the sampled
file (with its ``M`` metadata stream, exactly as written) may take at most
``floor(F · L)`` bytes, where ``L`` is the size of the recording's lossless ``.sfev`` with the
same codec. The number of pixels per window ``k`` (the same in every window, as ``--rate``
uses) is the largest that fits, found by bisection over ``0 .. H·W``.

Every sampler's masks are nested in ``k`` (top-k of a fixed score, or a fixed random order),
so the sampler ranks each window's pixels **once** (:func:`~.sampling.event_ranks`, windows in
pieces as :func:`~.sampling.sample_events` takes them) and the events kept at ``k`` are those
whose pixel ranks below ``k``; a trained sampler is never rerun per bisection step. The kept
events at the chosen ``k`` are exactly what ``sample_events`` keeps at rate ``k / (H·W)``.

Bisection assumes the file grows with ``k`` (more kept events: almost always a larger file);
what it guarantees whatever the codec does is the bracket: the file at ``k`` fits and the one
at ``k + 1`` does not (or ``k = H·W``). A budget that not even ``k = 0`` meets (the header and
``M`` stream of an empty file) is a one-line ``ConfigError``; ``k = 0`` is chosen when it is
the only ``k`` that fits (the file then holds no events, and ``--stats`` says so).

``M`` records, beside what ``--rate`` records (``rate`` is then the achieved ``k / (H·W)``):
``size_budget`` (F), ``lossless_bytes`` (L), ``budget_bytes`` (``floor(F · L)``) and
``size_fraction``: this file's size over L to 4 decimals. The file records its own size, so
the fraction is found as a fixed point (encode, measure, re-encode); in the rare case the
4-decimal text flips with the very byte it adds, it is the value one byte away.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .codec import encode_events
from .sampling import event_ranks, resolve_ranker

__all__ = ["check_size_budget", "sample_to_budget", "FRACTION_DIGITS"]

FRACTION_DIGITS = 4
"""``size_fraction`` is recorded to 4 decimals (a file's size to 1e-4 of the lossless one)."""
_FIXED_POINT_TRIES = 6

Progress = Callable[[int, int], None]


def check_size_budget(size_budget: object) -> float:
    """``size_budget`` as a float in (0, 1], or a one-line ``ConfigError``."""
    try:
        value = float(size_budget)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise ConfigError(
            f"--size-budget must be in (0, 1] (a fraction of the lossless .sfev size), "
            f"got {size_budget!r}"
        )
    return value


def sample_to_budget(
    events: np.ndarray,
    sensor_size: tuple[int, int],
    size_budget: float,
    *,
    codec: str,
    window_us: int | None = None,
    sampler: str | Path = "spiking",
    seed: int = 0,
    device: str = "cpu",
    progress: Progress | None = None,
) -> tuple[bytes, np.ndarray, dict[str, Any]]:
    """``(sfev bytes, kept events [M] in original order, meta)`` of the largest ``k`` pixels per
    window whose sampled file, coded with ``codec`` (a resolved name), takes at most
    ``size_budget`` × the lossless file's bytes.

    ``events`` [N] time-ordered; ``sensor_size`` ``(width, height)``; ``sampler``, ``seed``,
    ``window_us`` and ``device`` as :func:`~.sampling.sample_events` takes them. ``progress``
    gets ``(done, total)`` over all encodes (the lossless one and each bisection step).
    """
    fraction = check_size_budget(size_budget)
    ranker, about = resolve_ranker(sampler, seed, device)
    ranks, n_win, window_us = event_ranks(events, sensor_size, ranker, window_us=window_us)
    width, height = sensor_size
    hw = width * height
    steps = _Steps(progress, 2 * (3 + math.ceil(math.log2(hw + 1))))

    lossless = len(encode_events(events, sensor_size, codec=codec, progress=steps.tick()))
    budget = math.floor(fraction * lossless)

    def encode(k: int) -> tuple[bytes, np.ndarray, dict[str, Any]]:
        kept = events[ranks < k]
        meta = {
            **about,
            "rate": k / hw,
            "window_us": window_us,
            "pixels_per_window": k,
            "achieved_rate": k / hw if n_win else 0.0,
            "n_windows": n_win,
            "original_events": int(events.size),
            "kept_events": int(kept.size),
            "event_fraction": float(kept.size / events.size) if events.size else 0.0,
            "size_budget": fraction,
            "lossless_bytes": lossless,
            "budget_bytes": budget,
        }
        return _fixed_point(kept, sensor_size, codec, meta, lossless, steps), kept, meta

    lo = encode(0)
    if len(lo[0]) > budget:
        raise ConfigError(
            f"--size-budget {fraction} allows {budget} bytes ({fraction} x the {lossless}-byte "
            f"lossless file), less than the {len(lo[0])} bytes of a sampled file with no events"
        )
    lo_k, hi_k = 0, hw
    top = encode(hw)
    if len(top[0]) <= budget:
        lo, lo_k = top, hw
    while hi_k - lo_k > 1:  # invariant: the file at lo_k fits, the one at hi_k does not
        mid = (lo_k + hi_k) // 2
        trial = encode(mid)
        if len(trial[0]) <= budget:
            lo, lo_k = trial, mid
        else:
            hi_k = mid
    steps.finish()
    return lo


def _fixed_point(
    kept: np.ndarray,
    sensor_size: tuple[int, int],
    codec: str,
    meta: dict[str, Any],
    lossless: int,
    steps: _Steps,
) -> bytes:
    """The file of ``kept`` whose ``M`` stream's ``size_fraction`` is its own size over
    ``lossless`` (to FRACTION_DIGITS decimals); ``meta`` gets that value."""
    guess = 0.0
    data = b""
    for _ in range(_FIXED_POINT_TRIES):
        meta["size_fraction"] = guess
        data = encode_events(kept, sensor_size, codec=codec, meta=meta, progress=steps.tick())
        actual = round(len(data) / lossless, FRACTION_DIGITS)
        if actual == guess:
            return data
        guess = actual
    return data  # a flip-flop of one byte: the recorded value is the other state's (module doc)


class _Steps:
    """Progress over many encodes: encode ``i`` of about ``n`` maps its ``(done, total)`` to
    ``(i · U + done · U / total, n · U)`` with U = 1,000,000 units, never moving back (a search
    that needs more encodes than estimated waits at the end of the bar)."""

    _UNIT = 1_000_000

    def __init__(self, progress: Progress | None, n: int) -> None:
        self.progress, self.n, self.i, self.last = progress, n, 0, 0

    def tick(self) -> Callable[[int, int], None] | None:
        if self.progress is None:
            return None
        i = min(self.i, self.n - 1)
        self.i += 1

        def report(done: int, total: int) -> None:
            part = min(done / total, 1.0) if total else 1.0
            self.last = max(self.last, int((i + part) * self._UNIT))
            self.progress(self.last, self.n * self._UNIT)  # type: ignore[misc]

        return report

    def finish(self) -> None:
        if self.progress is not None:
            self.progress(self.n * self._UNIT, self.n * self._UNIT)
