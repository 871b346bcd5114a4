"""Which contexts would make ``ctx3`` smaller on N-MNIST? Ideal code lengths, bits per event.

Runs the ``ctx3`` model (adaptive binary decisions, 11-bit probabilities updated by 1/32,
direct bits at 1 bit each) as an estimator (-log2 of each decision's probability, no coder)
on the first four N-MNIST samples, with the shipped contexts (``{}``) and with each variant:

- ``pg``: polarity also given the previous event's polarity;
- ``b2``: delta bit length also given the one before the previous (quartered);
- ``yprev``: ``y`` given the previous event's ``y`` (shifted right by the value);
- ``xprev``: ``x`` given ``y`` and the previous event's ``x`` (shifted);
- ``age``: the delta bit length given how long the event's pixel has been silent (1), or that
  and the previous bit length (2); this codes the pixel before the time;
- ``m2``: the second bit below the leading one of the delta adaptive too.

``--activity`` also prices the pixel under a mixture over recent activity (not a binary
model): every pixel's probability is ``0.05 + A``, where ``A`` is a map of past events decayed
by 0.995 per event, each event adding 1 at its pixel and 1 on its 3x3 neighbourhood.

    PYTHONPATH=src python benchmarks/ctx3_context_study.py [--activity]
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from spikeweave.compression import load_events

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
LOG = [0.0] + [-math.log2(p / 2048) for p in range(1, 2048)]
VARIANTS = [{}, {"pg": 1}, {"b2": 1}, {"yprev": 2}, {"yprev": 3}, {"xprev": 3}]
VARIANTS += [{"age": 1}, {"age": 2}, {"m2": 1}]


class Estimate:
    """Sums the ideal code length of adaptive binary decisions (ctx3's update rule)."""

    def __init__(self) -> None:
        self.bits = 0.0

    def bit(self, probs: dict, key: object, bit: int) -> None:
        p = probs.get(key, 1024)
        if bit:
            self.bits += LOG[2048 - p]
            probs[key] = p - (p >> 5)
        else:
            self.bits += LOG[p]
            probs[key] = p + ((2048 - p) >> 5)

    def tree(self, probs: dict, ctx: object, nb: int, sym: int) -> None:
        m = 1
        for j in range(nb - 1, -1, -1):
            b = (sym >> j) & 1
            self.bit(probs, (ctx, m), b)
            m = (m << 1) | b


def cost(ev: np.ndarray, var: dict) -> list[float]:
    """Bits per event: [delta, y, x, polarity, total] on a 34x34 sensor."""
    t, x, y, p = (ev[c].tolist() for c in "txyp")
    eb, ey, ex, ep = Estimate(), Estimate(), Estimate(), Estimate()
    probs: dict[str, dict] = {k: {} for k in "bmyxp"}
    last: dict = {}
    pb = pb2 = py = px = pg = 0
    pt = t[0]
    for i in range(len(t)):
        d = t[i] - pt if i else 0
        b = d.bit_length()
        seen = last.get((x[i], y[i]))
        bc: object = min(pb, 15)
        if var.get("b2"):
            bc = (bc, min(pb2, 15) // 4)
        if var.get("age"):
            ab = 0 if seen is None else min(1 + (pt - seen[0]).bit_length(), 25)
            bc = ab if var["age"] == 1 else (ab // 2, min(pb, 15) // 2)
        eb.tree(probs["b"], bc, 7, b)
        if b >= 2:
            top = (d >> (b - 2)) & 1
            eb.bit(probs["m"], b, top)
            if var.get("m2") and b >= 3:
                eb.bit(probs["m"], (b, top), (d >> (b - 3)) & 1)
                eb.bits += b - 3
            else:
                eb.bits += b - 2
        ey.tree(probs["y"], py >> var["yprev"] if var.get("yprev") else 0, 6, y[i])
        ex.tree(probs["x"], (y[i], px >> var["xprev"]) if var.get("xprev") else y[i], 6, x[i])
        if seen is None:
            c, pp = 0, 0
        else:
            pp = seen[1]
            c = min(1 + (t[i] - seen[0]).bit_length(), 33)
        ep.bit(probs["p"], (c, pp, pg) if var.get("pg") else (c, pp), p[i] ^ pp)
        last[(x[i], y[i])] = (t[i], p[i])
        pb2, pb, pt, py, px, pg = pb, b, t[i], y[i], x[i], p[i]
    n = len(t)
    parts = [e.bits / n for e in (eb, ey, ex, ep)]
    return parts + [sum(parts)]


def activity_cost(ev: np.ndarray, decay: float = 0.995, floor: float = 0.05) -> float:
    """Bits per event of the pixel (x and y together) under the activity mixture."""
    x, y = ev["x"].astype(int), ev["y"].astype(int)
    a = np.zeros((34, 34))
    bits = 0.0
    for i in range(x.size):
        q = floor + a
        bits -= math.log2(q[y[i], x[i]] / q.sum())
        a *= decay
        a[y[i], x[i]] += 1
        a[max(0, y[i] - 1) : y[i] + 2, max(0, x[i] - 1) : x[i] + 2] += 1
    return bits / x.size


def main() -> None:
    files = sorted((REAL / "nmnist").glob("*/*.bs2"))[:4]
    if not files:
        sys.exit(f"no N-MNIST samples under {REAL}")
    events = [load_events(f)[0] for f in files]
    print("variant: bits/event [delta, y, x, polarity, total], mean of", len(files), "files")
    for var in VARIANTS:
        mean = np.mean([cost(ev, var) for ev in events], axis=0)
        print(var, np.round(mean, 3))
    if "--activity" in sys.argv[1:]:
        mean = np.mean([activity_cost(ev) for ev in events])
        print(f"pixel under the activity mixture: {mean:.3f} bits/event")


if __name__ == "__main__":
    main()
