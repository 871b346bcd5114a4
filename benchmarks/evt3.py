"""A simple EVT 3.0-style encoder, written for the codec benchmark (size only).

Prophesee's EVT 3.0 stores a stream of 16-bit little-endian words; the top 4 bits give the
type. This encoder uses the word types of the public format description:

- ``0x8`` EVT_TIME_HIGH: bits 12..23 of the timestamp (µs); ``0x6`` EVT_TIME_LOW: bits 0..11;
- ``0x0`` EVT_ADDR_Y: y (11 bits);
- ``0x2`` EVT_ADDR_X: x (11 bits) and polarity (bit 11): one event at (x, current y);
- ``0x3`` VECT_BASE_X: base x and polarity; then ``0x4`` VECT_12 / ``0x5`` VECT_8: a 12 / 8-bit
  mask of events at base .. base+11 / +7 (the base then moves on by 12 / 8).

What it approximates: a camera's EVT 3.0 output for the same events. It writes a time word only
when the timestamp changes (TIME_HIGH when bits 12..23 change, else TIME_LOW), a y word only
when y changes, and vectorises runs of consecutive events with the same time, y and polarity
whose x increase within a 12-pixel window, in file order (so the stream decodes to the same
events in the same order). A sensor also emits TIME_HIGH words during silence (one per
4096 µs) and can vectorise more (its readout groups events of a row); neither is modelled,
so sizes can be a little off either way. Timestamps are taken relative to the first event;
x and y must fit 11 bits.
"""

from __future__ import annotations

import numpy as np

__all__ = ["evt3_words"]


def evt3_words(events: np.ndarray) -> int:
    """The number of 16-bit EVT 3.0 words that encode ``events`` (EVENT_DTYPE, time order)."""
    if not events.size:
        return 0
    t = (events["t"] - events["t"][0]).tolist()
    x = events["x"].tolist()
    y = events["y"].tolist()
    p = events["p"].tolist()
    if max(x) >= 2048 or max(y) >= 2048:
        raise ValueError("EVT 3.0 addresses are 11 bits")
    words = 0
    high = low = cur_y = None
    i, n = 0, len(t)
    while i < n:
        th, tl = (t[i] >> 12) & 0xFFF, t[i] & 0xFFF
        if th != high:
            words += 2  # TIME_HIGH, then TIME_LOW
            high, low = th, tl
        elif tl != low:
            words += 1
            low = tl
        if y[i] != cur_y:
            words += 1
            cur_y = y[i]
        # a run of events at the same time, row and polarity, x rising within 12 of the first
        j = i + 1
        while (
            j < n
            and t[j] == t[i]
            and y[j] == y[i]
            and p[j] == p[i]
            and x[i] <= x[j - 1] < x[j] < x[i] + 12
        ):
            j += 1
        words += 1 if j - i == 1 else 2  # ADDR_X, or VECT_BASE_X + VECT_12
        i = j
    return words
