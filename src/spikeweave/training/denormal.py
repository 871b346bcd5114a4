"""Flushing subnormal floats to zero while training and timing training steps.

BPTT's gradients shrink by the leak at every step back through time, and surrogates far from
threshold are tiny; both fall into the subnormal range (|x| < 1.2e-38), where x86 arithmetic
is 10–30× slower. :func:`flush_denormal` turns ``torch.set_flush_denormal`` on inside a
``with`` block; the trainer uses it for ``TrainConfig.flush_denormal`` (default on), and the
experiments' step timing uses it so a timed step runs with the arithmetic training had.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["flush_denormal"]


@contextlib.contextmanager
def flush_denormal(on: bool = True) -> Iterator[None]:
    """Subnormals flushed to zero inside the block when ``on`` (on the calling thread and
    threads it starts inside). torch has no getter for the mode, so it goes back to torch's
    default, off, at the end."""
    if not on:
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
